#include "worker/bound_weights.h"

#include <string>
#include <vector>

#include "common/logging.h"
#include "comms/collectives.h"
#include "parallelism/exec/moe_layer.h"
#include "proto/plan.pb.h"
#include "worker/flat_order.h"
#include "worker/optimizer_factory.h"
#include "worker/tied_embeddings.h"

namespace rondo {

namespace {

// The stages of the plan this rank holds.
std::vector<StageLayers> local_stages(const plan::Plan& plan, int rank) {
  std::vector<StageLayers> out;
  for (uint32_t index : plan.ranks(rank).stages()) {
    const auto& st = plan.stages(static_cast<int>(index));
    out.push_back({static_cast<int>(st.index()), static_cast<int>(st.first_layer()),
                   static_cast<int>(st.num_layers()), st.has_embedding(), st.has_lm_head()});
  }
  return out;
}

// Makes each parameter's gradient a view into `grads` (flat, in flat_order()).
void view_gradients(StagedModel& model, const torch::Tensor& grads) {
  int64_t offset = 0;
  for (auto& [name, p] : flat_order(*model)) {
    p.mutable_grad() = grads.narrow(0, offset, p.numel()).view_as(p);
    offset += p.numel();
  }
}

}  // namespace

BoundWeights::BoundWeights(const RankWeightsContext& c) : RankWeights(c.plan), context_(c) {
  const auto& t = c.plan.training();
  const auto& family = model_family(c.plan.model().family());
  const auto shape = model_shape(c.plan, c.moe);
  const auto local = local_stages(c.plan, c.rank);
  model_ = StagedModel(family, shape, local, t.seed());
  model_->to(c.device);
  tied_ = TiedEmbeddings::make(c.plan, c.rank, c.world, c.recorder);  // collective
  // Gradients live in one flat buffer so that a step needs one allreduce (two with expert
  // parallelism) and no copies.
  int64_t elements = 0;
  for (const auto& [name, p] : flat_order(*model_)) {
    elements += p.numel();
    if (!is_expert_parameter(name)) dense_elements_ = elements;
  }
  flat_ = torch::zeros({elements}, torch::TensorOptions().dtype(torch::kFloat32).device(c.device));
  view_gradients(model_, flat_);
  OptimizerParameters over{.grads = flat_};
  for (const auto& [name, p] : flat_order(*model_)) {
    over.params.push_back(p);
    over.named.emplace_back(name, p);
  }
  over.stacked_matrices = family.stacked_matrices;
  const auto params = over.params;
  optimizer_ = make_optimizer(t, std::move(over));
  if (!c.plan.asynchronous()) return;

  std::array<std::vector<torch::Tensor>, 2> version_params;
  for (size_t k = 0; k < versions_.size(); ++k) {
    versions_[k] = StagedModel(family, shape, local, t.seed());
    versions_[k]->to(c.device);
    version_grads_[k] = torch::zeros_like(flat_);
    view_gradients(versions_[k], version_grads_[k]);
    for (const auto& [name, p] : flat_order(*versions_[k])) version_params[k].push_back(p);
  }
  delayed_ = std::make_unique<DelayedUpdate>(*optimizer_, params, std::move(version_params),
                                             delay_correction(c.plan));
  if (c.rank == 0) log_asynchronous_mode(c.plan);
}

BoundWeights::~BoundWeights() = default;

torch::optim::Optimizer& BoundWeights::checkpointed_optimizer() {
  return delayed_ ? static_cast<torch::optim::Optimizer&>(*delayed_) : *optimizer_;
}

void BoundWeights::before_first_step(bool loaded) {
  // An asynchronous run computes on its versions: the frozen weights (LoRA's base) a load brought
  // go there too; the delayed update keeps the trained ones.
  if (delayed_ && loaded) {
    torch::NoGradGuard no_grad;
    const auto master = model_->named_parameters();
    for (auto& version : versions_) {
      for (auto& item : version->named_parameters()) {
        if (!item.value().requires_grad()) item.value().copy_(master[item.key()]);
      }
    }
  }
  // The models whose backwards produce the gradients, with their buffers: the model, or the two
  // weight versions of an asynchronous run. Built now: a load replaced the gradient accumulators
  // the hooks attach to.
  std::vector<GradientReduction::Source> sources;
  if (delayed_) {
    for (size_t k = 0; k < versions_.size(); ++k) sources.push_back({versions_[k], version_grads_[k]});
  } else {
    sources.push_back({model_, flat_});
  }
  // With expert parallelism the experts' gradients (the buffer's end) have a reduction of their own.
  const bool split = context_.expert_dp != nullptr && dense_elements_ < flat_.numel();
  const auto part = [&](int64_t from, int64_t count) {
    auto out = sources;
    for (auto& s : out) s.grads = s.grads.narrow(0, from, count);
    return out;
  };
  const auto dense = [](const std::string& name) { return !is_expert_parameter(name); };
  reduction_ = std::make_unique<GradientReduction>(
      plan_.comms(), context_.dp, context_.recorder, context_.world.host_buffers(),
      split ? part(0, dense_elements_) : sources, split ? dense : GradientReduction::Include{});
  // FSMoE's gradient partitioning: the buckets in flight advance in the gaps of the MoE backward.
  if (context_.moe && reduction_->overlapped() && plan_.model().moe().gradient_partitioning()) {
    context_.moe->set_backward_gap([this] {
      reduction_->progress();
      if (expert_reduction_) expert_reduction_->progress();
    });
  }
  if (split) {
    expert_reduction_ = std::make_unique<GradientReduction>(
        plan_.comms(), *context_.expert_dp, context_.recorder, context_.world.host_buffers(),
        part(dense_elements_, flat_.numel() - dense_elements_), is_expert_parameter);
  }
  if (context_.rank == 0 && reduction_->overlapped())
    logging::get("worker")->info("gradient reduction overlapped with the backward: {}",
                                 reduction_->describe());
}

StagedModel& BoundWeights::compute_model(int64_t at, int64_t now) {
  if (!delayed_) return model_;
  if (at > now) delayed_->wait();  // the next step's version is the update in flight's
  return versions_[static_cast<size_t>(DelayedUpdate::version(at))];
}

torch::Tensor BoundWeights::step_grads(int64_t now) const {
  return delayed_ ? version_grads_[static_cast<size_t>(DelayedUpdate::version(now))] : flat_;
}

void BoundWeights::before_backward(int64_t now, int stage, bool last) {
  reduction_->before_backward(version(now), stage, last);
  if (expert_reduction_) expert_reduction_->before_backward(version(now), stage, last);
}

void BoundWeights::after_backward(int64_t now, int stage, bool last) {
  reduction_->after_backward(version(now), stage, last);
  if (expert_reduction_) expert_reduction_->after_backward(version(now), stage, last);
}

void BoundWeights::reduce_gradients(int64_t now) {
  const auto grads = step_grads(now);
  if (!expert_reduction_) {
    reduction_->reduce(version(now), grads);
  } else {
    reduction_->reduce(version(now), grads.narrow(0, 0, dense_elements_));
    expert_reduction_->reduce(version(now),
                              grads.narrow(0, dense_elements_, grads.numel() - dense_elements_));
  }
  if (tied_) tied_->reduce(model_);  // the embedding's and the head copy's gradients, summed
}

std::optional<double> BoundWeights::gradient_norm_squared(int64_t now) {
  // The dense gradients are counted by data-parallel index 0, the experts' by each expert group's
  // first replica (data-parallel index < ep).
  const auto& c = plan_.ranks(context_.rank).coords();
  if (c.cp() != 0 || c.tp() != 0) return 0.0;
  const auto grads = step_grads(now);
  const auto squared = [](const torch::Tensor& g) {
    const double norm = g.numel() ? g.norm(2).item<double>() : 0.0;
    return norm * norm;
  };
  double sum = 0;
  if (c.dp() == 0) sum += squared(grads.narrow(0, 0, dense_elements_));
  // Tied embeddings: the head's copy is the embedding's matrix, counted on the embedding's rank.
  if (c.dp() == 0 && tied_) {
    if (const auto copy = tied_->copy_gradient(model_); copy.defined()) sum -= squared(copy);
  }
  if (c.dp() < plan_.mesh().ep())
    sum += squared(grads.narrow(0, dense_elements_, grads.numel() - dense_elements_));
  return sum;
}

void BoundWeights::update(double lr, double norm) { step_optimizer(*optimizer_, flat_, lr, norm); }

std::optional<double> BoundWeights::collect_delayed_gradients(int64_t, int64_t) {
  return std::nullopt;  // reduced in the step, their norm summed with its statistics
}

void BoundWeights::update_delayed(int64_t now, double lr, double norm) {
  const auto grads = step_grads(now);
  flat_.copy_(grads);
  grads.zero_();
  step_optimizer(*optimizer_, flat_, lr, norm);
}

std::string BoundWeights::describe() const {
  std::string held;
  int64_t elements = 0;
  for (const auto& st : model_->stages()) held += (held.empty() ? "" : ", ") + std::to_string(st.index);
  int64_t trained = 0;
  for (const auto& p : model_->parameters()) {
    elements += p.numel();
    if (p.requires_grad()) trained += p.numel();
  }
  return "this rank holds " + std::to_string(elements) + " parameters" +
         (trained < elements ? " (" + std::to_string(trained) + " trained: LoRA's adapters)" : "") +
         ": stage(s) " + held;
}

void BoundWeights::add_metrics(MetricsWriter& metrics) {
  reduction_->add_metrics(metrics,
                          [this](int64_t at) { return delayed_ ? DelayedUpdate::version(at - 1) : 0; });
}

bool BoundWeights::set_ring_order(const std::vector<int>& order) {
  if (!reduction_) return false;
  reduction_->set_ring_order(order);
  return true;
}

}  // namespace rondo
