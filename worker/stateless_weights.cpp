#include "worker/stateless_weights.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <string>

#include "common/errors.h"
#include "comms/collectives.h"
#include "pipeline/exec/stage_executor.h"
#include "proto/plan.pb.h"
#include "worker/optimizer_factory.h"

namespace rondo {

namespace {

// This rank's pipeline group, in pipeline order (a collective split of the world).
std::unique_ptr<Communicator> pipeline_replica(const plan::Plan& plan, Communicator& world, int rank) {
  std::unique_ptr<Communicator> replica;
  for (const auto& g : plan.mesh().groups()) {
    if (g.kind() != plan::GROUP_PP) continue;
    std::vector<int> ranks(g.ranks().begin(), g.ranks().end());
    std::sort(ranks.begin(), ranks.end(),
              [&](int a, int b) { return plan.ranks(a).coords().pp() < plan.ranks(b).coords().pp(); });
    auto sub = world.split(ranks);
    if (sub) replica = std::move(sub);
  }
  if (!replica) throw PlanError("rank " + std::to_string(rank) + " is in no pipeline group of the plan");
  return replica;
}

std::chrono::duration<double> timeout_of(const plan::Plan& plan) {
  return std::chrono::duration<double>(plan.comms().timeout_s());
}

}  // namespace

StatelessWeights::StatelessWeights(const RankWeightsContext& c) : RankWeights(c.plan), context_(c) {
  const auto& t = c.plan.training();
  if (c.device.is_cuda())
    throw ConfigError("training.device", "roundpipe's stateless workers run on the CPU only so far");
  auto replica = pipeline_replica(c.plan, c.world, c.rank);
  const int p = replica->size();
  if (c.plan.backward_stages_size() < p) {
    throw PlanError("stateless workers: " + std::to_string(c.plan.backward_stages_size()) +
                    " backward stages cannot give each of " + std::to_string(p) + " workers one to update");
  }

  model_ = StagedModel(model_family(c.plan.model().family()), model_shape(c.plan),
                       stateless_model_layers(c.plan), t.seed());
  // Backward stage k's parameters: those of its atoms, in model order.
  std::vector<std::vector<torch::Tensor>> stage_params;
  std::vector<int64_t> elements;
  for (const auto& st : c.plan.backward_stages()) {
    const auto [first, end] = stateless_stage_atoms(c.plan, st);
    auto& ps = stage_params.emplace_back();
    for (int atom = first; atom < end; ++atom) {
      for (const auto& param : model_->stage_parameters(atom)) ps.push_back(param);
    }
    int64_t n = 0;
    for (const auto& param : ps) n += param.numel();
    elements.push_back(n);
  }
  shared_ = std::make_unique<SharedReplicaState>(
      std::move(replica), elements, static_cast<int>(t.num_microbatches()),
      std::vector<int64_t>{static_cast<int64_t>(t.micro_batch_size()), c.plan.model().seq_length(),
                           c.plan.model().hidden_size()},
      c.plan.asynchronous() ? 2 : 1);
  flat_ = torch::zeros({shared_->elements()}, torch::kFloat32);
  // Private gradients in the shared order. Every worker initialised the same weights: the owners
  // copy theirs in, all view them.
  std::map<const void*, std::string> name_of;
  for (const auto& item : model_->named_parameters())
    name_of[item.value().unsafeGetTensorImpl()] = item.key();
  Named owned;
  for (int k = 0; k < shared_->stage_count(); ++k) {
    int64_t offset = shared_->stage(k).offset;
    for (auto& param : stage_params[static_cast<size_t>(k)]) {
      param.mutable_grad() = flat_.narrow(0, offset, param.numel()).view_as(param);
      if (shared_->owns(k)) owned.emplace_back(name_of.at(param.unsafeGetTensorImpl()), param);
      shared_params_.push_back({param, offset});
      offset += param.numel();
    }
  }
  rebind();
  if (c.plan.asynchronous()) {
    setup_asynchronous(owned);
  } else {
    setup_synchronous(owned);
  }
}

StatelessWeights::~StatelessWeights() = default;

void StatelessWeights::setup_synchronous(const Named& owned) {
  // The owned parameters view the shared weights and their gradients `flat_`: AdamW keeps its
  // moments in node memory too; Muon's state (whole matrices, each owned by one worker) is private.
  const auto range = shared_->owned();
  OptimizerParameters over{.grads = flat_.narrow(0, range.offset, range.count),
                           .flat_params = shared_->parameters().narrow(0, range.offset, range.count),
                           .moments = shared_->optimizer_state().narrow(1, range.offset, range.count),
                           .named = owned,
                           .stacked_matrices = model_family(plan_.model().family()).stacked_matrices};
  for (const auto& [name, param] : owned) {
    over.params.push_back(param);
    over.trained.push_back(param.requires_grad());  // LoRA's frozen base stays in the range
  }
  optimizer_ = make_optimizer(plan_.training(), std::move(over));
}

void StatelessWeights::setup_asynchronous(const Named& owned) {
  // The owner's optimizer updates a private copy of its stages (the newest weights: `master`,
  // each parameter a view of it, its gradient a view of `owned_grads_`) from their summed
  // gradients; both shared versions start from it (W(-1) = W(0)).
  const auto range = shared_->owned();
  owned_grads_ = torch::zeros({range.count}, torch::kFloat32);
  auto master = torch::zeros({range.count}, torch::kFloat32);
  OptimizerParameters over{.grads = owned_grads_,
                           .flat_params = master,
                           .moments = shared_->optimizer_state().narrow(1, range.offset, range.count),
                           .stacked_matrices = model_family(plan_.model().family()).stacked_matrices};
  int64_t offset = 0;
  for (const auto& [name, param] : owned) {
    auto copy = master.narrow(0, offset, param.numel()).view_as(param);
    copy.copy_(param.detach());
    copy.mutable_grad() = owned_grads_.narrow(0, offset, param.numel()).view_as(param);
    over.params.push_back(copy);
    over.named.emplace_back(name, copy);
    over.trained.push_back(param.requires_grad());
    offset += param.numel();
  }
  optimizer_ = make_optimizer(plan_.training(), std::move(over));
  std::array<std::vector<torch::Tensor>, 2> params;
  for (int k = 0; k < 2; ++k)
    params[static_cast<size_t>(k)] = {shared_->parameters(k).narrow(0, range.offset, range.count)};
  delayed_ = std::make_unique<DelayedUpdate>(*optimizer_, std::vector<torch::Tensor>{master},
                                             std::move(params), delay_correction(plan_));
  if (context_.dp.comm().size() > 1) {
    async_dp_ = std::make_unique<Collectives>(context_.dp.comm(), context_.recorder);
    async_dp_->set_group("async_" + context_.dp.group().name, context_.dp.group().world_ranks);
    async_dp_->set_ring_order(context_.dp.ring_order());
  }
  shared_->replica().native_barrier();  // every owner's versions are in place
  if (context_.rank == 0) log_asynchronous_mode(plan_);
}

torch::optim::Optimizer& StatelessWeights::checkpointed_optimizer() {
  return delayed_ ? static_cast<torch::optim::Optimizer&>(*delayed_) : *optimizer_;
}

void StatelessWeights::before_first_step(bool loaded) {
  if (loaded) rebind();
}

void StatelessWeights::rebind() {
  torch::NoGradGuard no_grad;
  // Owners first write what they hold (after a load: the restored values; asynchronous runs
  // restore both versions with the optimizer's state instead) ...
  const auto owned = shared_->owned();
  for (int v = 0; v < shared_->versions() && !delayed_; ++v) {
    for (auto& [param, at] : shared_params_) {
      if (at < owned.offset || at >= owned.offset + owned.count) continue;
      auto view = shared_->parameters(v).narrow(0, at, param.numel()).view_as(param);
      if (view.data_ptr() != param.data_ptr()) view.copy_(param);
    }
  }
  // ... then every worker views the shared values.
  shared_->replica().native_barrier();
  bound_version_ = -1;
  bind_version(0);
}

void StatelessWeights::bind_version(int version) {
  if (version == bound_version_) return;
  torch::NoGradGuard no_grad;
  for (auto& [param, at] : shared_params_) {
    param.set_data(shared_->parameters(version).narrow(0, at, param.numel()).view_as(param));
  }
  bound_version_ = version;
}

StagedModel& StatelessWeights::compute_model(int64_t at, int64_t) {
  // The owners put each stage's version in place (the executor waited for it).
  if (delayed_) bind_version(DelayedUpdate::version(at));
  return model_;
}

torch::Tensor StatelessWeights::stage_gradients(int stage) {
  const auto r = shared_->stage(stage);
  return flat_.narrow(0, r.offset, r.count);
}

void StatelessWeights::reduce_gradients(int64_t) {
  if (delayed_) return;  // the update's thread takes them (collect_delayed_gradients())
  // The stages this worker owns: their summed gradients, from the shared memory, then over the
  // data-parallel replicas (the other gradients here are zero).
  const auto r = shared_->owned();
  auto mine = flat_.narrow(0, r.offset, r.count);
  mine.copy_(shared_->gradients().narrow(0, r.offset, r.count));
  if (context_.dp.comm().size() > 1) {
    context_.dp.allreduce(mine.data_ptr(), static_cast<size_t>(r.count), DType::kFloat32, ReduceOp::kSum);
  }
}

std::optional<double> StatelessWeights::gradient_norm_squared(int64_t) {
  if (delayed_) return std::nullopt;  // the update's thread adds it once it has the gradients
  const auto& c = plan_.ranks(context_.rank).coords();
  if (c.dp() != 0 || c.cp() != 0 || c.tp() != 0) return 0.0;  // replica 0 counts the owned stages
  const double norm = flat_.norm(2).item<double>();
  return norm * norm;
}

void StatelessWeights::update(double lr, double norm) { step_optimizer(*optimizer_, flat_, lr, norm); }

std::optional<double> StatelessWeights::collect_delayed_gradients(int64_t, int64_t run_step) {
  // The owned stages' sums over the pipeline replica, then over the data-parallel replicas; this
  // step's turns then close and the next step's open.
  const auto r = shared_->owned();
  shared_->wait_owned(run_step, timeout_of(plan_));
  owned_grads_.copy_(shared_->gradients().narrow(0, r.offset, r.count));
  shared_->finish_step(run_step);
  if (async_dp_) {
    async_dp_->allreduce(owned_grads_.data_ptr(), static_cast<size_t>(r.count), DType::kFloat32,
                         ReduceOp::kSum);
  }
  const double norm = owned_grads_.norm(2).item<double>();
  return norm * norm;
}

void StatelessWeights::update_delayed(int64_t, double lr, double norm) {
  step_optimizer(*optimizer_, owned_grads_, lr, norm);  // the optimizer reads owned_grads_ itself
}

std::function<void()> StatelessWeights::on_version_written(int64_t run_step) {
  // The other workers may compute on the owned stages' new version once it is written.
  return [this, run_step] { shared_->mark_updated(run_step); };
}

void StatelessWeights::before_wait(int64_t run_step) { shared_->flush_own(run_step, timeout_of(plan_)); }

std::string StatelessWeights::describe() const {
  std::string held;
  for (int k = 0; k < shared_->stage_count(); ++k) {
    if (shared_->owns(k)) held += (held.empty() ? "" : ", ") + std::to_string(k);
  }
  return "this rank holds " + std::to_string(shared_->owned().count) + " parameters: backward stage(s) " +
         held + " (stateless worker: it updates these, and runs any stage's task on the " +
         std::to_string(shared_->elements()) + " parameters its pipeline replica shares in node memory)";
}

}  // namespace rondo
