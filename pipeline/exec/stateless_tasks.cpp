// The stage executor's RoundPipe side (plan.stateless_workers): the plan's forward and backward
// partitions checked against the model's atoms, and a stateless worker's forward and backward
// tasks -- on the replica's node-shared weights, boundaries and gradients (SharedReplicaState).
// A forward task runs without a graph and leaves the boundary each backward stage starts from; a
// backward task recomputes its stage from that boundary (overlapping the wait for its gradient),
// then differentiates it and adds its gradients to the shared ones.
#include <chrono>
#include <string>

#include "common/errors.h"
#include "common/stopwatch.h"
#include "pipeline/exec/stage_executor.h"
#include "pipeline/exec/stage_executor_records.h"
#include "proto/plan_names.h"

namespace rondo {

using Clock = std::chrono::steady_clock;

std::pair<int, int> stateless_stage_atoms(const plan::Plan& plan, const plan::Stage& st) {
  return atoms_of({static_cast<int>(st.index()), static_cast<int>(st.first_layer()),
                   static_cast<int>(st.num_layers()), st.has_embedding(), st.has_lm_head()},
                  static_cast<int>(plan.model().num_layers()));
}

std::vector<StageLayers> stateless_model_layers(const plan::Plan& plan) {
  return model_atoms(static_cast<int>(plan.model().num_layers()));
}

void StageExecutor::init_stateless() {
  const auto fail = [&](const std::string& why) {
    throw PlanError("rank " + std::to_string(rank_) + ": stateless workers (" + name_of(plan_.schedule()) +
                    "): " + why);
  };
  if (!shared_) fail("the worker gave the executor no shared replica state");
  if (recompute_)
    fail("the backward recomputes every stage already; model.recompute_granularity must not be full");
  for (const auto& a : me_.actions()) {
    if (a.kind() == plan::ACTION_I || a.kind() == plan::ACTION_W)
      fail("a split backward (I, W) is not supported");
  }
  const int layers = static_cast<int>(plan_.model().num_layers());
  const int atoms = layers + 2;
  // The forward runs the embedding and the blocks in order, from atom 0 on ...
  int next = 0;
  for (const auto& st : plan_.stages()) {
    const auto range = stateless_stage_atoms(plan_, st);
    if (range.first != next || range.second < range.first)
      fail("the forward stages do not run the model in order");
    forward_atoms_.push_back(range);
    next = range.second;
  }
  // ... and the backward stages cover the whole model from the LM head down, each starting where
  // a forward leaves its input (or at the embedding, from the tokens).
  const auto& bw = plan_.backward_stages();
  if (bw.empty()) fail("the plan has no backward partition");
  backward_stage_at_.assign(static_cast<size_t>(atoms + 1), -1);
  int end = atoms;
  for (int k = 0; k < bw.size(); ++k) {
    const auto range = stateless_stage_atoms(plan_, bw[k]);
    if (range.second != end || range.first >= range.second) {
      fail("backward stage " + std::to_string(k) + " does not continue the backward from atom " +
           std::to_string(end));
    }
    if (range.first > next) {
      fail("backward stage " + std::to_string(k) + " starts at atom " + std::to_string(range.first) +
           ", after the forward's last (" + std::to_string(next) + ")");
    }
    backward_atoms_.push_back(range);
    backward_stage_at_[static_cast<size_t>(range.first)] = k;
    end = range.first;
  }
  if (end != 0) fail("the backward stages stop at atom " + std::to_string(end) + ", above the embedding");
  // The backward stages whose weights each forward stage's atoms are (asynchronous plans wait
  // for their owners' updates).
  for (const auto& [first, last] : forward_atoms_) {
    auto& owners = forward_weight_stages_.emplace_back();
    for (int k = 0; k < static_cast<int>(backward_atoms_.size()); ++k) {
      const auto [b0, b1] = backward_atoms_[static_cast<size_t>(k)];
      if (b0 < last && first < b1) owners.push_back(k);
    }
  }
  if (shared_->stage_count() != bw.size()) {
    fail("the shared state has " + std::to_string(shared_->stage_count()) + " backward stages, the plan " +
         std::to_string(bw.size()));
  }
}

void StageExecutor::stateless_forward(StepModel& model, const plan::Action& a, int mbi, StepTimes& times) {
  const int stage = static_cast<int>(a.stage());
  const int64_t step = step_ + mbi / schedule_microbatches_;
  const int number = mbi % schedule_microbatches_;
  const auto [first, end] = forward_atoms_[static_cast<size_t>(stage)];
  torch::Tensor x;
  if (first == 0) {
    if (!emulate_) {
      const auto tokens = data(model, mbi, times);
      x = tokens.slice(1, 0, tokens.size(1) - 1);
    }
  } else {
    const Key from{0, stage - 1, mbi};
    x = receives_.count(from) ? wait_receive(from, times) : microbatches_.at({stage - 1, mbi}).output;
  }
  if (async_) {
    const auto w0 = Clock::now();
    for (int k : forward_weight_stages_[static_cast<size_t>(stage)])
      shared_->wait_updated(k, step, p2p_.timeout());
    times.recv_wait_s += seconds_since(w0);
  }
  const auto f0 = Clock::now();
  const int64_t f0_ns = TimingRecorder::wall_ns();
  if (emulate_) {
    emulate(f0, plan_.prediction().stage_forward_s(stage));
    x = emulated_boundary_;
  } else {
    // No graph: every backward stage recomputes from the boundary left here.
    torch::NoGradGuard no_graph;
    for (int atom = first; atom < end; ++atom) {
      x = model.forward(atom, mbi, x);
      const int k = backward_stage_at_[static_cast<size_t>(atom) + 1];
      if (k >= 0) shared_->boundary(k, number, step).copy_(x);
    }
  }
  for (int atom = first; atom < end; ++atom) {
    const int k = backward_stage_at_[static_cast<size_t>(atom) + 1];
    if (k >= 0) shared_->mark_boundary(k, number, step);
  }
  times.forward_s += seconds_since(f0);
  count_compute(times.stage_f, stage, f0_ns, times);
  microbatches_[{stage, mbi}].output = std::move(x);
}

void StageExecutor::stateless_backward(StepModel& model, const plan::Action& a, int mbi, StepTimes& times) {
  const int stage = static_cast<int>(a.stage());
  const int64_t step = step_ + mbi / schedule_microbatches_;
  const int number = mbi % schedule_microbatches_;
  const auto [first, end] = backward_atoms_[static_cast<size_t>(stage)];
  const bool head = stage == 0;
  if (head) {
    // The last forward's output: the boundary already holds it; the message says it is there.
    const Key from{0, plan_.stages_size() - 1, mbi};
    if (receives_.count(from)) wait_receive(from, times);
  }
  // The recomputation runs first: it needs only the boundary the forward left, so it overlaps
  // the wait for the gradient (RoundPipe's lead; the prediction aligns it the same way).
  if (first > 0 || async_) {
    const auto w0 = Clock::now();
    if (first > 0) shared_->wait_boundary(stage, number, step, p2p_.timeout());
    if (async_) shared_->wait_updated(stage, step, p2p_.timeout());
    times.recv_wait_s += seconds_since(w0);
  }
  const auto b0 = Clock::now();
  const int64_t b0_ns = TimingRecorder::wall_ns();
  const auto& pred = plan_.prediction();
  torch::Tensor tokens, input, out;
  if (emulate_) {
    emulate(b0, head ? 0.0 : pred.stage_backward_lead_s(stage));
  } else {
    if (first == 0 || head) tokens = data(model, mbi, times);
    input = first == 0 ? tokens.slice(1, 0, tokens.size(1) - 1)
                       : shared_->boundary(stage, number, step).detach().requires_grad_(true);
    out = input;
    for (int atom = first; atom < end; ++atom) out = model.forward(atom, mbi, out);
  }
  if (!head) {
    times.stage_b_lead[static_cast<size_t>(stage)] += seconds_since(b0);
    times.backward_s += seconds_since(b0);
    count_compute(times.stage_b, stage, b0_ns, times);
  }
  torch::Tensor grad;
  if (!head) {
    const Key from{1, stage - 1, mbi};
    if (receives_.count(from)) {
      grad = wait_receive(from, times);
    } else {
      auto it = backward_grads_.find({stage - 1, mbi});
      if (it == backward_grads_.end()) {
        throw PlanError("rank " + std::to_string(rank_) + ": backward stage " + std::to_string(stage) +
                        " microbatch " + std::to_string(mbi) + " before backward stage " +
                        std::to_string(stage - 1) + " handed it a gradient");
      }
      grad = std::move(it->second);
      backward_grads_.erase(it);
    }
  }
  const auto b1 = head ? b0 : Clock::now();
  const int64_t b1_ns = head ? b0_ns : TimingRecorder::wall_ns();
  if (emulate_) {
    emulate(b1, pred.stage_backward_s(stage) - (head ? 0.0 : pred.stage_backward_lead_s(stage)));
    if (first > 0) backward_grads_[{stage, mbi}] = emulated_boundary_;
  } else {
    if (head) {
      const auto loss = model.loss(mbi, out, tokens.slice(1, 1, tokens.size(1)));
      times.loss_sum += loss.item<double>();
      ++times.losses;
      (loss * loss_scale_).backward();
    } else if (out.requires_grad()) {  // else only frozen atoms from the embedding on (LoRA)
      torch::autograd::backward({out}, {grad});
    }
    if (first > 0) backward_grads_[{stage, mbi}] = input.grad();
  }
  shared_->accumulate(stage, number, step, model.stage_gradients(stage));
  times.backward_s += seconds_since(b1);
  count_compute(times.stage_b, stage, b1_ns, times);
}

}  // namespace rondo
