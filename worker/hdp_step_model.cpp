#include "worker/hdp_step_model.h"

#include <algorithm>
#include <numeric>
#include <string>
#include <utility>

#include "common/errors.h"
#include "pipeline/exec/step_schedule.h"
#include "proto/plan_names.h"
#include "worker/hdp_step.h"

namespace rondo {

namespace {

const auto kLong = torch::TensorOptions().dtype(torch::kInt64);
// A group's meeting before its forward (one byte round its ring), apart from ring attention's tags.
constexpr int kMeetingTag = 7190;

}  // namespace

HdpOptions hdp_options_of(const plan::Plan& plan, int64_t ranks) {
  if (!plan.hdp().enabled()) throw PlanError("plan: no HDP (plan.hdp.enabled is false)");
  HdpOptions o(ranks, plan.hdp().max_tokens_per_rank());
  hdp_set_hosts(o, {plan.hdp().rank_hosts().begin(), plan.hdp().rank_hosts().end()});
  return o;
}

ContextParallelCost hdp_cost_of(const plan::Plan& plan) {
  const auto& m = plan.model();
  const auto& h = plan.hdp();
  return ContextParallelCost(
      {.dims = {m.num_layers(), m.hidden_size(), m.ffn_hidden_size(), m.vocab_size(), m.seq_length()},
       .device_flops = h.device_flops(),
       .link_bytes_per_s = h.link_bytes_per_s(),
       .link_latency_s = h.link_latency_s(),
       .cross_host_bytes_per_s = h.cross_host_bytes_per_s()});
}

HdpStepModel::HdpStepModel(const plan::Plan& plan, StepModel& inner, const TokenCorpus& corpus,
                           const StepBatches& batches, StagedModel model, Communicator& world,
                           TimingRecorder* recorder)
    : plan_(plan),
      inner_(inner),
      corpus_(corpus),
      batches_(batches),
      model_(std::move(model)),
      ring_channel_(RecordedTransfers::channel(recorder, "ring")),
      rank_(world.rank()),
      pipeline_(plan.ranks(world.rank()).coords().dp()),
      stage_(plan.ranks(world.rank()).coords().pp()),
      stages_(plan.mesh().pp()),
      policy_(hdp_policy_from_name(name_of(plan.hdp().policy()))),
      options_(hdp_options_of(plan, plan.mesh().dp())),
      cost_(hdp_cost_of(plan)),
      document_lengths_(corpus.document_lengths()) {
  const auto& mesh = plan.mesh();
  if (plan.stages_size() != static_cast<int>(stages_) || mesh.tp() != 1 || mesh.cp() != 1 ||
      mesh.dp() * mesh.pp() != static_cast<uint32_t>(world.size())) {
    throw PlanError("plan: HDP runs pipelines of one stage per rank, data-parallel over the pipelines (got " +
                    std::to_string(plan.stages_size()) + " stages on pp " + std::to_string(mesh.pp()) +
                    ", dp " + std::to_string(mesh.dp()) + ", tp " + std::to_string(mesh.tp()) + ", cp " +
                    std::to_string(mesh.cp()) + " for " + std::to_string(world.size()) + " ranks)");
  }
  try {
    hdp_wave_schedule(stages_, name_of(plan.schedule()));
  } catch (const ConfigError& e) {
    throw PlanError(std::string("plan: HDP's pipelines: ") + e.what());
  }
  if (plan.data().chunk_size() > 0 || plan.asynchronous() || plan.stateless_workers())
    throw PlanError(
        "plan: HDP runs neither chunked training, an asynchronous pipeline nor stateless workers");
  if (options_.max_tokens_per_rank < 1 || plan.hdp().tokens_per_step() < 1)
    throw PlanError("plan: HDP needs max_tokens_per_rank and tokens_per_step >= 1");
  world_rank_.assign(mesh.dp(), std::vector<int>(mesh.pp(), -1));
  for (const auto& r : plan.ranks())
    world_rank_.at(r.coords().dp()).at(r.coords().pp()) = static_cast<int>(r.rank());
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
  plan_of_step_ = plan_hdp_pipelines(lengths, policy_, options_, stages_, name_of(plan_.schedule()), cost_);
  sequences_ = read_sequences(batch);
  step_targets_ = hdp_step_targets(sequences_);
  step_tokens_ = std::accumulate(lengths.begin(), lengths.end(), int64_t{0});
  make_schedule();
  return &schedule_;
}

void HdpStepModel::make_schedule() {
  rows_.clear();
  groups_.clear();
  schedule_ = StepSchedule{};
  schedule_.loss_scale = 1.0;  // each loss is already this rank's share of the step's mean
  rank_targets_ = 0;
  const int waves = static_cast<int>(plan_of_step_.waves);
  // The template over the waves, less those this pipeline has nothing in.
  schedule_.actions =
      pipeline_step_actions(plan_, rank_, {plan_of_step_.schedule, static_cast<int>(stages_), waves, 1, {}},
                            [&](int w) { return plan_of_step_.sub_batch_in(pipeline_, w) >= 0; });
  const bool emulate = plan_.training().emulate_compute();
  const bool last_stage = stage_ == stages_ - 1;
  for (int w = 0; w < waves; ++w) {
    schedule_.recompute.push_back(false);
    if (plan_of_step_.sub_batch_in(pipeline_, w) < 0) {  // no actions: a place holder
      schedule_.tokens.push_back(1);
      if (emulate) schedule_.forward_s.push_back(0), schedule_.backward_s.push_back(0);
      continue;
    }
    const auto& sb = sub_batch(w);
    schedule_.tokens.push_back(row(w).input.size(1));
    // The cost model's split: the backward computes twice the forward; each stage its share.
    const double seconds = hdp_sub_batch_seconds(plan_of_step_.hdp, sb) / static_cast<double>(stages_);
    if (emulate) schedule_.forward_s.push_back(seconds / 3), schedule_.backward_s.push_back(seconds * 2 / 3);
    // A group's sequence counted once, by its first pipeline: the sums over the ranks are the step's.
    if (!last_stage || sb.group.front() != pipeline_) continue;
    for (int64_t s : sb.sequences)
      rank_targets_ += static_cast<double>(
          sequences_.at(static_cast<size_t>(s)).slice(0, 1).ne(-100).sum().item<int64_t>());
  }
}

const HdpSubBatch& HdpStepModel::sub_batch(int microbatch) const {
  const int64_t i = plan_of_step_.sub_batch_in(pipeline_, microbatch);
  if (i < 0)
    throw PlanError("HDP: rank " + std::to_string(rank_) + " has nothing in wave " +
                    std::to_string(microbatch));
  return plan_of_step_.hdp.sub_batches.at(static_cast<size_t>(pipeline_)).at(static_cast<size_t>(i));
}

const HdpRow& HdpStepModel::row(int microbatch) {
  auto it = rows_.find(microbatch);
  if (it != rows_.end()) return it->second;
  const auto& sb = sub_batch(microbatch);
  const auto member = std::find(sb.group.begin(), sb.group.end(), pipeline_) - sb.group.begin();
  return rows_.emplace(microbatch, hdp_row(sequences_, sb, member)).first->second;
}

Communicator& HdpStepModel::group(int microbatch) {
  auto& g = groups_[microbatch];  // kept for the step: the backward's ring needs it
  if (!g.view) {
    std::vector<int> members;  // world ranks: rings_ numbers its ranks as the world does
    for (int64_t p : sub_batch(microbatch).group)
      members.push_back(world_rank_.at(static_cast<size_t>(p)).at(static_cast<size_t>(stage_)));
    g.view = std::make_unique<GroupView>(*rings_, members);
    g.recorded = std::make_unique<RecordedTransfers>(*g.view, std::move(members), ring_channel_);
  }
  return *g.recorded;
}

torch::Tensor HdpStepModel::tokens(int microbatch) {
  // The executor's input and target columns; forward and loss read the row's own.
  return torch::zeros({1, row(microbatch).input.size(1) + 1}, kLong);
}

torch::Tensor HdpStepModel::forward(int stage, int microbatch, const torch::Tensor& input) {
  const auto& r = row(microbatch);
  const auto& x = plan_.stages(stage).has_embedding() ? r.input : input;
  if (sub_batch(microbatch).group.size() == 1) return model_->forward_stage(stage, x, r.documents);
  const ContextParallel context{r.held, &group(microbatch)};
  return model_->forward_stage(stage, x, r.documents, &context);
}

torch::Tensor HdpStepModel::loss(int microbatch, const torch::Tensor& logits,
                                 const torch::Tensor& /*targets*/) {
  return model_->loss(logits, row(microbatch).targets, std::max<int64_t>(step_targets_, 1));
}

torch::Tensor HdpStepModel::forward_loss(int stage, int microbatch, const torch::Tensor& input,
                                         const torch::Tensor& targets) {
  return loss(microbatch, forward(stage, microbatch, input), targets);
}

void HdpStepModel::before_forward(int /*stage*/, int microbatch) {
  if (sub_batch(microbatch).group.size() < 2) return;
  auto& g = group(microbatch);
  const int d = g.size(), r = g.rank();
  char out = 1, in = 0;
  g.sendrecv(&out, 1, (r + 1) % d, &in, 1, (r + d - 1) % d, kMeetingTag);
}

report::HdpStepReport HdpStepModel::step_report(double busiest_compute_s, double mean_compute_s,
                                                bool timeline) const {
  const auto& p = plan_of_step_.hdp;
  report::HdpStepReport out;
  out.set_policy(hdp_policy_name(policy_));
  out.set_sequences(static_cast<int32_t>(p.placements.size()));
  out.set_stages(static_cast<int32_t>(stages_));
  for (const auto& [d, n] : p.degree_histogram())
    (*out.mutable_degrees())[static_cast<int32_t>(d)] = static_cast<int32_t>(n);
  for (const auto& placement : p.placements)
    out.set_groups_across_hosts(out.groups_across_hosts() + hdp_spans_hosts(placement.ranks, options_));
  size_t slots = 0;
  for (const auto& rank : p.sub_batches) {
    out.set_idle_ranks(out.idle_ranks() + (rank.empty() ? static_cast<int32_t>(stages_) : 0));
    slots += rank.size();
  }
  out.set_step_predicted_s(plan_of_step_.step_s);
  out.set_busy_max_over_mean_predicted(plan_of_step_.busy_max_over_mean());
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
      slot->set_seconds(hdp_sub_batch_seconds(p, sb));
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
  row["hdp_groups_across_hosts"] = r.groups_across_hosts();
  row["hdp_step_predicted_s"] = r.step_predicted_s();
  row["hdp_busy_max_over_mean_predicted"] = r.busy_max_over_mean_predicted();
  if (mean_compute_s > 0) row["hdp_busy_max_over_mean"] = r.busy_max_over_mean();
}

}  // namespace rondo
