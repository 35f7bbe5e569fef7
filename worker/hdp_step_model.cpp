#include "worker/hdp_step_model.h"

#include <numeric>
#include <string>
#include <utility>

#include "common/errors.h"
#include "proto/plan_names.h"
#include "worker/hdp_step.h"

namespace rondo {

namespace {

const auto kLong = torch::TensorOptions().dtype(torch::kInt64);
// A group's meeting before its forward (one byte round its ring), apart from ring attention's tags.
constexpr int kMeetingTag = 7190;

plan::Action action(plan::ActionKind kind, int microbatch) {
  plan::Action a;
  a.set_kind(kind);
  a.set_stage(0);
  a.set_microbatch(static_cast<uint32_t>(microbatch));
  a.set_peer(-1);
  return a;
}

}  // namespace

HdpOptions hdp_options_of(const plan::Plan& plan, int64_t ranks) {
  if (!plan.hdp().enabled()) throw PlanError("plan: no HDP (plan.hdp.enabled is false)");
  return {ranks, plan.hdp().max_tokens_per_rank()};
}

ContextParallelCost hdp_cost_of(const plan::Plan& plan) {
  const auto& m = plan.model();
  const auto& h = plan.hdp();
  return ContextParallelCost(
      {.dims = {m.num_layers(), m.hidden_size(), m.ffn_hidden_size(), m.vocab_size(), m.seq_length()},
       .device_flops = h.device_flops(),
       .link_bytes_per_s = h.link_bytes_per_s(),
       .link_latency_s = h.link_latency_s()});
}

HdpStepModel::HdpStepModel(const plan::Plan& plan, StepModel& inner, const TokenCorpus& corpus,
                           const StepBatches& batches, StagedModel model, Communicator& world)
    : plan_(plan),
      inner_(inner),
      corpus_(corpus),
      batches_(batches),
      model_(std::move(model)),
      rank_(world.rank()),
      policy_(hdp_policy_from_name(name_of(plan.hdp().policy()))),
      options_(hdp_options_of(plan, world.size())),
      cost_(hdp_cost_of(plan)),
      document_lengths_(corpus.document_lengths()) {
  if (plan.stages_size() != 1 || !plan.stages(0).has_embedding() || !plan.stages(0).has_lm_head() ||
      plan.mesh().dp() != static_cast<uint32_t>(world.size())) {
    throw PlanError(
        "plan: HDP runs one stage holding the whole model on every rank, data-parallel over all " +
        std::to_string(world.size()) + " (got " + std::to_string(plan.stages_size()) + " stages, dp " +
        std::to_string(plan.mesh().dp()) + ")");
  }
  if (plan.data().chunk_size() > 0 || plan.asynchronous() || plan.stateless_workers())
    throw PlanError(
        "plan: HDP runs neither chunked training, an asynchronous pipeline nor stateless workers");
  if (options_.max_tokens_per_rank < 1 || plan.hdp().tokens_per_step() < 1)
    throw PlanError("plan: HDP needs max_tokens_per_rank and tokens_per_step >= 1");
  std::vector<int> everyone(static_cast<size_t>(world.size()));
  std::iota(everyone.begin(), everyone.end(), 0);
  rings_ = world.split(everyone);  // collective: every rank constructs this
  rings_->set_timeout(world.timeout());
}

HdpStepModel::~HdpStepModel() = default;

void HdpStepModel::draw_to(int64_t step) {
  if (!draws_ || drawn_ >= step) {
    draws_ = std::make_unique<HdpBatches>(document_lengths_, plan_.hdp().tokens_per_step(),
                                          plan_.model().seq_length(), plan_.training().seed());
    drawn_ = 0;
  }
  while (drawn_ < step - 1) {
    draws_->next_sequences();
    ++drawn_;
  }
}

std::vector<torch::Tensor> HdpStepModel::read_sequences(const std::vector<HdpSequence>& batch) const {
  // A sequence's tokens from its document's start, and the token after them as its last target,
  // unless the document ends there (-100: no target).
  std::vector<torch::Tensor> out;
  out.reserve(batch.size());
  for (const auto& s : batch) {
    auto t = torch::empty({s.length + 1}, kLong);
    const uint64_t start = corpus_.document_start(s.document);
    corpus_.read(start, static_cast<size_t>(s.length), t.data_ptr<int64_t>());
    if (s.length < document_lengths_.at(s.document))
      corpus_.read(start + static_cast<uint64_t>(s.length), 1, t.data_ptr<int64_t>() + s.length);
    else
      t[s.length] = -100;
    out.push_back(std::move(t));
  }
  return out;
}

const StepSchedule* HdpStepModel::step_schedule() {
  draw_to(batches_.step());
  const auto batch = draws_->next_sequences();
  ++drawn_;
  std::vector<int64_t> lengths;
  for (const auto& s : batch) lengths.push_back(s.length);
  plan_of_step_ = plan_hdp(lengths, policy_, options_, cost_);
  sequences_ = read_sequences(batch);
  step_targets_ = hdp_step_targets(sequences_);
  step_tokens_ = std::accumulate(lengths.begin(), lengths.end(), int64_t{0});
  groups_.clear();

  schedule_ = StepSchedule{};
  schedule_.loss_scale = 1.0;  // each loss is already this rank's share of the step's mean
  rank_targets_ = 0;
  const bool emulate = plan_.training().emulate_compute();
  const auto& mine = plan_of_step_.sub_batches.at(static_cast<size_t>(rank_));
  for (size_t k = 0; k < mine.size(); ++k) {
    const auto& sb = mine[k];
    *schedule_.actions.Add() = action(plan::ACTION_F, static_cast<int>(k));
    *schedule_.actions.Add() = action(plan::ACTION_B, static_cast<int>(k));
    schedule_.tokens.push_back(sb.tokens_per_rank);
    schedule_.recompute.push_back(false);
    const double seconds = seconds_of(sb);
    if (emulate) {  // the cost model's split: the backward computes twice the forward
      schedule_.forward_s.push_back(seconds / 3);
      schedule_.backward_s.push_back(seconds * 2 / 3);
    }
    // A group's sequence counted once, by its first rank: the sums over the ranks are the step's.
    if (sb.group.front() != rank_) continue;
    for (int64_t s : sb.sequences)
      rank_targets_ += static_cast<double>(
          sequences_.at(static_cast<size_t>(s)).slice(0, 1).ne(-100).sum().item<int64_t>());
  }
  for (const auto& a : plan_.ranks(rank_).actions()) {
    if (a.kind() == plan::ACTION_ALLREDUCE || a.kind() == plan::ACTION_OPTIM) *schedule_.actions.Add() = a;
  }
  return &schedule_;
}

double HdpStepModel::seconds_of(const HdpSubBatch& sb) const {
  double seconds = 0;
  for (int64_t s : sb.sequences) seconds += plan_of_step_.placements.at(static_cast<size_t>(s)).seconds;
  return seconds;
}

const HdpSubBatch& HdpStepModel::sub_batch(int microbatch) const {
  return plan_of_step_.sub_batches.at(static_cast<size_t>(rank_)).at(static_cast<size_t>(microbatch));
}

torch::Tensor HdpStepModel::tokens(int /*microbatch*/) {
  // The executor's input and target columns; forward_loss reads the sub-batch's own.
  return torch::zeros({1, 2}, kLong);
}

torch::Tensor HdpStepModel::forward(int stage, int microbatch, const torch::Tensor& /*input*/) {
  throw PlanError("HDP: stage " + std::to_string(stage) + " microbatch " + std::to_string(microbatch) +
                  ": one stage computes the whole model and its loss (forward_loss)");
}

torch::Tensor HdpStepModel::loss(int microbatch, const torch::Tensor& /*logits*/,
                                 const torch::Tensor& /*targets*/) {
  throw PlanError("HDP: microbatch " + std::to_string(microbatch) +
                  ": the loss is computed with the forward (forward_loss)");
}

torch::Tensor HdpStepModel::forward_loss(int /*stage*/, int microbatch, const torch::Tensor& /*input*/,
                                         const torch::Tensor& /*targets*/) {
  return hdp_sub_batch_loss(model_, sequences_, sub_batch(microbatch), *rings_, step_targets_,
                            groups_[microbatch]);
}

void HdpStepModel::before_forward(int /*stage*/, int microbatch) {
  const auto& sb = sub_batch(microbatch);
  if (sb.group.size() < 2) return;
  GroupView group(*rings_, std::vector<int>(sb.group.begin(), sb.group.end()));
  const int d = group.size(), r = group.rank();
  char out = 1, in = 0;
  group.sendrecv(&out, 1, (r + 1) % d, &in, 1, (r + d - 1) % d, kMeetingTag);
}

report::HdpStepReport HdpStepModel::step_report(double busiest_compute_s, double mean_compute_s,
                                                bool timeline) const {
  const auto& p = plan_of_step_;
  report::HdpStepReport out;
  out.set_policy(hdp_policy_name(policy_));
  out.set_sequences(static_cast<int32_t>(p.placements.size()));
  for (const auto& [d, n] : p.degree_histogram())
    (*out.mutable_degrees())[static_cast<int32_t>(d)] = static_cast<int32_t>(n);
  size_t slots = 0;
  for (const auto& rank : p.sub_batches) {
    out.set_idle_ranks(out.idle_ranks() + (rank.empty() ? 1 : 0));
    slots += rank.size();
  }
  out.set_step_predicted_s(p.step_s);
  out.set_busy_max_over_mean_predicted(p.busy_max_over_mean());
  if (mean_compute_s > 0) out.set_busy_max_over_mean(busiest_compute_s / mean_compute_s);
  if (!timeline || slots > static_cast<size_t>(kTimelineSlots)) return out;
  for (size_t r = 0; r < p.sub_batches.size(); ++r) {
    for (const auto& sb : p.sub_batches[r]) {
      auto* slot = out.add_slots();
      slot->set_rank(static_cast<int32_t>(r));
      slot->set_degree(static_cast<int32_t>(sb.group.size()));
      slot->set_sequence(sb.group.size() > 1 ? static_cast<int32_t>(sb.sequences.at(0)) : -1);
      slot->set_sequences(static_cast<int32_t>(sb.sequences.size()));
      slot->set_tokens(static_cast<int32_t>(sb.tokens_per_rank));
      slot->set_start_s(sb.start_s);
      slot->set_seconds(seconds_of(sb));
    }
  }
  return out;
}

void HdpStepModel::metrics_fields(double busiest_compute_s, double mean_compute_s,
                                  nlohmann::json& row) const {
  const auto r = step_report(busiest_compute_s, mean_compute_s, false);
  nlohmann::json degrees = nlohmann::json::object();
  for (const auto& [d, n] : r.degrees()) degrees[std::to_string(d)] = n;
  row["hdp_policy"] = r.policy();
  row["hdp_sequences"] = r.sequences();
  row["hdp_degrees"] = std::move(degrees);
  row["hdp_idle_ranks"] = r.idle_ranks();
  row["hdp_step_predicted_s"] = r.step_predicted_s();
  row["hdp_busy_max_over_mean_predicted"] = r.busy_max_over_mean_predicted();
  if (mean_compute_s > 0) row["hdp_busy_max_over_mean"] = r.busy_max_over_mean();
}

}  // namespace rondo
