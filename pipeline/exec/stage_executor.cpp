#include "pipeline/exec/stage_executor.h"
#include "pipeline/exec/stage_executor_records.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>

#include "common/errors.h"
#include "common/stopwatch.h"
#include "proto/plan_names.h"

namespace rondo {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::microseconds kEmulationSpin{300};

bool is_recv(plan::ActionKind k) { return k == plan::ACTION_RECV_F || k == plan::ACTION_RECV_B; }

const char* transfer_name(int kind) { return kind == 0 ? "activations" : "gradients"; }

}  // namespace

StageExecutor::StageExecutor(const plan::Plan& plan, int rank, Communicator& p2p, TimingRecorder* recorder,
                             SharedReplicaState* shared, bool forward_only)
    : plan_(plan), me_(plan.ranks(rank)), rank_(rank), p2p_(p2p), recorder_(recorder), shared_(shared) {
  forward_only_ = forward_only;
  const auto& t = plan.training();
  chunked_ = plan.data().pipeline_chunk_lengths_size() > 0;
  step_schedules_ = chunked_ || plan.hdp().enabled();
  actions_ = plan_actions_ = &me_.actions();
  schedule_microbatches_ =
      static_cast<int>(t.num_microbatches()) * std::max(1, plan.data().pipeline_chunk_lengths_size());
  loss_scale_ = 1.0 / (static_cast<double>(schedule_microbatches_) * plan.mesh().dp());
  recompute_ = plan.model().recompute_granularity() == plan::RECOMPUTE_FULL;
  emulate_ = t.emulate_compute();
  async_ = plan.asynchronous();
  // With context parallelism a stage boundary carries this rank's share of each row's tokens.
  boundary_shape_ = {static_cast<int64_t>(t.micro_batch_size()),
                     static_cast<int64_t>(plan.model().seq_length() / std::max(1u, plan.mesh().cp())),
                     static_cast<int64_t>(plan.model().hidden_size())};
  check_modes();
  if (emulate_) emulated_boundary_ = torch::zeros(boundary_shape_, torch::kFloat32);
  if (plan.stateless_workers()) init_stateless();
  if (plan.backward_stages_size() > 0 && !plan.stateless_workers()) {
    throw PlanError(
        "plan for schedule " + name_of(plan.schedule()) +
        " has its own backward partition but binds stages to ranks, which this executor cannot run");
  }
  if (forward_only_) keep_forward_actions();
  check_actions(*plan_actions_);
}

void StageExecutor::keep_forward_actions() {
  if (plan_.stateless_workers() || step_schedules_ || emulate_ || shared_) {
    throw PlanError(
        "plan: a forward-only executor runs workers bound to their stages, the plan's own actions and real "
        "compute");
  }
  const auto is_forward = [](const plan::Action& a) {
    return a.kind() == plan::ACTION_F || a.kind() == plan::ACTION_SEND_F || a.kind() == plan::ACTION_RECV_F;
  };
  for (const bool ahead : {true, false}) {
    for (const auto& a : me_.actions()) {
      if (!is_forward(a) || a.ahead() != ahead) continue;
      auto* kept = forward_actions_.Add();
      *kept = a;
      kept->set_ahead(false);
    }
  }
  async_ = false;
  recompute_ = false;
  plan_actions_ = actions_ = &forward_actions_;
}

void StageExecutor::check_modes() const {
  const auto& plan = plan_;
  if (async_ && chunked_) throw PlanError("plan: an asynchronous pipeline has no chunked microbatches");
  if (chunked_ && (emulate_ || plan.stateless_workers() || plan.data().chunks_in_memory() < 1)) {
    throw PlanError(
        "plan: chunked pipeline microbatches need real compute, workers bound to stages and "
        "data.chunks_in_memory >= 1");
  }
  if (emulate_) {
    const auto& pred = plan.prediction();
    const int n = plan.stages_size(), nb = backward_stage_count();
    if (pred.stage_forward_s_size() != n || pred.stage_backward_s_size() != nb ||
        (!plan.stateless_workers() && pred.stage_weight_s_size() != nb) ||
        (plan.stateless_workers() && pred.stage_backward_lead_s_size() != nb)) {
      throw PlanError("training.emulate_compute: the plan predicts op durations for " +
                      std::to_string(pred.stage_forward_s_size()) + " forward and " +
                      std::to_string(pred.stage_backward_s_size()) + " backward stages, it has " +
                      std::to_string(n) + " and " + std::to_string(nb));
    }
  }
  for (int64_t len : plan.data().pipeline_chunk_lengths()) {
    if (len < 1)
      throw PlanError("plan: data.pipeline_chunk_lengths holds a chunk of " + std::to_string(len) +
                      " tokens");
  }
}

void StageExecutor::check_actions(const google::protobuf::RepeatedPtrField<plan::Action>& actions) {
  const auto& plan = plan_;
  const int rank = rank_;
  const auto where = [&](int i, const plan::Action& a) {
    return "rank " + std::to_string(rank) + " action " + std::to_string(i) + " (" +
           plan::ActionKind_Name(a.kind()) + " stage " + std::to_string(a.stage()) + " microbatch " +
           std::to_string(a.microbatch()) + ")";
  };
  const int n = actions.size();
  last_backward_.assign(static_cast<size_t>(n), false);
  last_gradient_.assign(static_cast<size_t>(n), false);
  std::map<int, int> last_b_or_i, last_b_or_w;
  for (int i = 0; i < n; ++i) {
    const auto& a = actions[i];
    const int stage = static_cast<int>(a.stage());
    switch (a.kind()) {
      case plan::ACTION_F:
      case plan::ACTION_B:
      case plan::ACTION_I:
      case plan::ACTION_W: {
        if (stage >= (a.kind() == plan::ACTION_F ? plan.stages_size() : backward_stage_count())) {
          throw PlanError(where(i, a) + ": the plan has no such stage");
        }
        if (!plan.stateless_workers() &&
            std::find(me_.stages().begin(), me_.stages().end(), a.stage()) == me_.stages().end()) {
          throw PlanError(where(i, a) + ": the rank does not hold this stage");
        }
        if (static_cast<int>(a.microbatch()) >= schedule_microbatches_)
          throw PlanError(where(i, a) + ": no such microbatch");
        if (a.ahead() &&
            (a.kind() != plan::ACTION_F || (!plan.stateless_workers() && plan.stages(stage).has_lm_head()))) {
          throw PlanError(where(i, a) + ": only forwards of stages before the LM head run ahead");
        }
        if (a.kind() == plan::ACTION_B || a.kind() == plan::ACTION_I) last_b_or_i[stage] = i;
        if (a.kind() == plan::ACTION_B || a.kind() == plan::ACTION_W) last_b_or_w[stage] = i;
        break;
      }
      case plan::ACTION_SEND_F:
      case plan::ACTION_SEND_B:
      case plan::ACTION_RECV_F:
      case plan::ACTION_RECV_B:
        if (a.peer() < 0 || a.peer() >= p2p_.size() || a.peer() == rank) {
          throw PlanError(where(i, a) + ": bad peer " + std::to_string(a.peer()));
        }
        if (a.ahead() && a.kind() != plan::ACTION_SEND_F && a.kind() != plan::ACTION_RECV_F)
          throw PlanError(where(i, a) + ": only activations of forwards run ahead");
        break;
      case plan::ACTION_ALLREDUCE:
      case plan::ACTION_OPTIM:
        if (a.ahead()) throw PlanError(where(i, a) + ": runs ahead");
        break;
      default:
        throw PlanError(where(i, a) + ": an action kind this worker cannot execute (plan version " +
                        std::to_string(plan.version()) + ")");
    }
  }
  if (!async_) {
    for (const auto& a : actions) {
      if (a.ahead())
        throw PlanError("plan: rank " + std::to_string(rank) + " runs ahead in a synchronous plan");
    }
  }
  for (const auto& [stage, i] : last_b_or_i) last_backward_[static_cast<size_t>(i)] = true;
  for (const auto& [stage, i] : last_b_or_w) last_gradient_[static_cast<size_t>(i)] = true;
}

StageExecutor::~StageExecutor() = default;

int StageExecutor::tag(const Key& key) const {
  // A forward run ahead is sent and received under its own microbatch's number: the sender may
  // run it ahead and the receiver not (or the other way round); per tag, the messages of
  // successive steps match in order.
  const auto& [kind, stage, id] = key;
  const int mb = id % schedule_microbatches_;
  return (mb * std::max(plan_.stages_size(), backward_stage_count()) + stage) * 2 + kind;
}

bool StageExecutor::runs(const plan::Action& a, Part part) {
  switch (part) {
    case Part::kWarmUp:
      return a.ahead();
    case Part::kDrain:
      return !a.ahead();
    case Part::kWindow:
      break;
  }
  return true;
}

int StageExecutor::id(const plan::Action& a, Part part) const {
  return static_cast<int>(a.microbatch()) + (a.ahead() && part != Part::kWarmUp ? schedule_microbatches_ : 0);
}

std::vector<int64_t> StageExecutor::boundary_shape(int microbatch) const {
  auto shape = boundary_shape_;
  if (step_schedule_) shape = {1, step_schedule_->tokens.at(static_cast<size_t>(microbatch)), shape[2]};
  return shape;
}

torch::Tensor StageExecutor::emulated_boundary(int microbatch) const {
  // A step's own schedule sizes each microbatch's boundary (chunks, HDP's sub-batches).
  return step_schedule_ ? torch::zeros(boundary_shape(microbatch), torch::kFloat32) : emulated_boundary_;
}

bool StageExecutor::recomputes(int microbatch) const {
  return recompute_ || (step_schedule_ && step_schedule_->recompute.at(static_cast<size_t>(microbatch)));
}

void StageExecutor::begin_step(StepModel& model) {
  step_schedule_ = model.step_schedule();
  if (!step_schedule_) {
    if (step_schedules_)
      throw PlanError(
          "plan: chunked pipeline training and HDP need every step's own schedule, the step model gave none");
    return;
  }
  if (!step_schedules_)
    throw PlanError("rank " + std::to_string(rank_) + ": a step schedule for a plan whose steps are alike");
  const auto& s = *step_schedule_;
  const int m = static_cast<int>(s.tokens.size());
  const auto per_microbatch = [m](size_t n, bool optional) {
    return n == static_cast<size_t>(m) || (optional && n == 0);
  };
  if ((m < 1 && chunked_) || !per_microbatch(s.recompute.size(), false) ||
      !per_microbatch(s.forward_s.size(), true) || s.forward_s.size() != s.backward_s.size()) {
    throw PlanError("rank " + std::to_string(rank_) + ": a step schedule of " + std::to_string(m) +
                    " microbatches with " + std::to_string(s.recompute.size()) + " recompute marks and " +
                    std::to_string(s.forward_s.size()) + " emulated durations");
  }
  for (int64_t len : s.tokens) {
    if (len < 1)
      throw PlanError("rank " + std::to_string(rank_) + ": a step schedule's chunk of " +
                      std::to_string(len) + " tokens");
  }
  schedule_microbatches_ = std::max(m, 1);  // a step with none has no microbatch to number
  loss_scale_ = s.loss_scale > 0 ? s.loss_scale : 1.0 / (static_cast<double>(m) * plan_.mesh().dp());
  check_actions(s.actions);
  actions_ = &s.actions;
}

void StageExecutor::post_receives(Part part) {
  for (const auto& a : *actions_) {
    if (!is_recv(a.kind()) || !runs(a, part)) continue;
    const Key key{a.kind() == plan::ACTION_RECV_F ? 0 : 1, static_cast<int>(a.stage()), id(a, part)};
    auto& r = receives_[key];
    const auto shape = boundary_shape(static_cast<int>(a.microbatch()));
    if (!r) r = std::make_unique<Receive>();
    // Kept across steps; a step schedule's chunks differ in length from one step to the next.
    if (!r->buffer.defined() || r->buffer.sizes() != c10::IntArrayRef(shape))
      r->buffer = torch::empty(shape, torch::kFloat32);
    r->peer = a.peer();
    r->posted_ns = TimingRecorder::wall_ns();
    r->request = p2p_.irecv(r->buffer.data_ptr(), r->buffer.nbytes(), a.peer(), tag(key));
  }
}

torch::Tensor StageExecutor::wait_receive(const Key& key, StepTimes& times) {
  auto& r = *receives_.at(key);
  if (r.request) {
    const auto t0 = Clock::now();
    // In the flight recorder while it waits: a dump taken now shows whom this rank waits for.
    std::optional<TimingRecorder::Scope> record;
    if (recording()) {
      record.emplace(
          recorder_->begin_transfer_wait(CollectiveOp::kRecv, r.buffer.nbytes(), r.peer, r.posted_ns));
    }
    try {
      r.request->wait(p2p_.timeout());
    } catch (const TimeoutError& e) {
      const auto& [kind, stage, mb] = key;
      throw TimeoutError(rank_, r.peer,
                         "rank " + std::to_string(rank_) + " waiting for the " + transfer_name(kind) +
                             " of stage " + std::to_string(stage) + " microbatch " + std::to_string(mb) +
                             " from rank " + std::to_string(r.peer) + ": " + e.what());
    }
    times.recv_wait_s += seconds_since(t0);
    r.request.reset();
    if (record) record->end_transfer(t0);
  }
  return r.buffer;
}

void StageExecutor::post_send(const plan::Action& a, int mbi, bool ahead) {
  const bool activations = a.kind() == plan::ACTION_SEND_F;
  const std::pair<int, int> key{static_cast<int>(a.stage()), mbi};
  torch::Tensor t = activations ? microbatches_.at(key).output
                    : shared_   ? backward_grads_.at(key)
                                : microbatches_.at(key).input_grad;
  t = t.detach().contiguous();
  const auto shape = boundary_shape(key.second);
  if (t.numel() != shape[0] * shape[1] * shape[2]) {
    throw PlanError("rank " + std::to_string(rank_) + ": stage " + std::to_string(a.stage()) + " produced " +
                    std::to_string(t.numel()) + " elements of " + transfer_name(activations ? 0 : 1) +
                    " where the plan's boundary holds [micro_batch, seq, hidden]");
  }
  auto s = std::make_unique<Send>();
  s->ahead = ahead;
  s->posted_ns = TimingRecorder::wall_ns();
  s->request = p2p_.isend(t.data_ptr(), t.nbytes(), a.peer(), tag({activations ? 0 : 1, key.first, mbi}));
  s->tensor = std::move(t);
  sends_.push_back(std::move(s));
}

void StageExecutor::finish_sends(bool wait, StepTimes& times) {
  const auto t0 = Clock::now();
  std::erase_if(sends_, [&](std::unique_ptr<Send>& s) {
    if (wait && !s->ahead) {
      // In the flight recorder while it waits, as a receive is.
      const auto wait_start = Clock::now();
      std::optional<TimingRecorder::Scope> record;
      if (recording()) {
        record.emplace(recorder_->begin_transfer_wait(CollectiveOp::kSend, s->tensor.nbytes(),
                                                      s->request->peer(), s->posted_ns));
      }
      s->request->wait(p2p_.timeout());
      if (record) record->end_transfer(wait_start);
      return true;
    }
    if (!s->request->test()) return false;
    if (recording()) {
      recorder_->record_transfer(CollectiveOp::kSend, s->tensor.nbytes(), s->request->peer(), s->posted_ns,
                                 TimingRecorder::wall_ns());
    }
    return true;
  });
  if (wait) times.send_wait_s += seconds_since(t0);
}

void StageExecutor::forward(StepModel& model, const plan::Action& a, int mbi, StepTimes& times) {
  const int stage = static_cast<int>(a.stage());
  const auto& st = plan_.stages(stage);
  torch::Tensor tokens, input;
  if ((st.has_embedding() || st.has_lm_head()) && !emulate_) tokens = data(model, mbi, times);
  auto& mb = microbatches_[{stage, mbi}];
  if (st.has_embedding()) {
    if (!emulate_) input = tokens.slice(1, 0, tokens.size(1) - 1);
  } else {
    const Key from{0, stage - 1, mbi};
    torch::Tensor source =
        receives_.count(from) ? wait_receive(from, times) : microbatches_.at({stage - 1, mbi}).output;
    input = source.detach().requires_grad_(true);
    mb.input = input;
  }
  model.before_forward(stage, mbi);
  const auto f0 = Clock::now();
  const int64_t f0_ns = TimingRecorder::wall_ns();
  if (emulate_) {
    emulate(f0, step_schedule_ && !step_schedule_->forward_s.empty()
                    ? step_schedule_->forward_s.at(static_cast<size_t>(mbi))
                    : plan_.prediction().stage_forward_s(stage));
    mb.output = st.has_lm_head() ? torch::zeros({}) : emulated_boundary(mbi);
    times.forward_s += seconds_since(f0);
    count_compute(times.stage_f, stage, f0_ns, times);
    return;
  }
  torch::Tensor out;
  {
    // Full recomputation: no graph now; the backward reruns this forward from the kept input.
    std::optional<torch::NoGradGuard> no_graph;
    if (recomputes(mbi)) {
      no_graph.emplace();
      mb.tokens = tokens;
    }
    out = stage_forward(model, stage, mbi, input, tokens);
  }
  if (st.has_lm_head()) {
    times.loss_sum += out.item<double>();
    ++times.losses;
  }
  times.forward_s += seconds_since(f0);
  count_compute(times.stage_f, stage, f0_ns, times);
  mb.output = std::move(out);
}

torch::Tensor StageExecutor::stage_forward(StepModel& model, int stage, int microbatch,
                                           const torch::Tensor& input, const torch::Tensor& tokens) {
  if (plan_.stages(stage).has_lm_head())
    return model.forward_loss(stage, microbatch, input, tokens.slice(1, 1, tokens.size(1)));
  return model.forward(stage, microbatch, input);
}

void StageExecutor::backward(StepModel& model, const plan::Action& a, int mbi, size_t index,
                             StepTimes& times) {
  const int stage = static_cast<int>(a.stage());
  const auto& st = plan_.stages(stage);
  auto it = microbatches_.find({stage, mbi});
  if (it == microbatches_.end() || !it->second.output.defined()) {
    throw PlanError("rank " + std::to_string(rank_) + ": backward of stage " + std::to_string(stage) +
                    " microbatch " + std::to_string(mbi) + " before its forward");
  }
  auto& mb = it->second;
  torch::Tensor grad;
  if (!st.has_lm_head()) {
    const Key from{1, stage + 1, mbi};
    if (receives_.count(from)) {
      grad = wait_receive(from, times);
    } else {
      auto& next = microbatches_.at({stage + 1, mbi});
      grad = std::move(next.input_grad);
    }
  }
  model.before_backward(stage, last_backward_[index]);
  const auto b0 = Clock::now();
  const int64_t b0_ns = TimingRecorder::wall_ns();
  if (emulate_) {
    const auto& pred = plan_.prediction();
    emulate(b0, step_schedule_ && !step_schedule_->backward_s.empty()
                    ? step_schedule_->backward_s.at(static_cast<size_t>(mbi))
                    : pred.stage_backward_s(stage) -
                          (a.kind() == plan::ACTION_I ? pred.stage_weight_s(stage) : 0.0));
    if (!st.has_embedding()) mb.input_grad = emulated_boundary(mbi);
    mb.input = torch::Tensor();
    mb.output = torch::Tensor();
    times.backward_s += seconds_since(b0);
    count_compute(times.stage_b, stage, b0_ns, times);
    if (a.kind() == plan::ACTION_B) model.after_backward(stage, last_gradient_[index]);
    return;
  }
  if (recomputes(mbi)) {
    // The same forward again, now recording the graph (bitwise the same outputs).
    const auto& in = st.has_embedding() ? mb.tokens.slice(1, 0, mb.tokens.size(1) - 1) : mb.input;
    mb.output = stage_forward(model, stage, mbi, in, mb.tokens);
    mb.tokens = torch::Tensor();
  }
  {
    std::optional<WeightGradStore::Scope> split;
    if (a.kind() == plan::ACTION_I) split.emplace(mb.weights);
    if (!mb.output.requires_grad()) {
      // Nothing before it trains (LoRA: a stage of frozen layers fed by token ids).
    } else if (st.has_lm_head()) {
      (mb.output * loss_scale_).backward();
    } else {
      torch::autograd::backward({mb.output}, {grad});
    }
  }
  times.backward_s += seconds_since(b0);
  count_compute(times.stage_b, stage, b0_ns, times);
  if (mb.input.defined()) mb.input_grad = mb.input.grad();
  mb.input = torch::Tensor();
  mb.output = torch::Tensor();
  if (a.kind() == plan::ACTION_B) model.after_backward(stage, last_gradient_[index]);
}

void StageExecutor::backward_weights(StepModel& model, const plan::Action& a, size_t index,
                                     StepTimes& times) {
  auto it = microbatches_.find({static_cast<int>(a.stage()), static_cast<int>(a.microbatch())});
  if (it == microbatches_.end() || it->second.output.defined()) {
    throw PlanError("rank " + std::to_string(rank_) + ": W of stage " + std::to_string(a.stage()) +
                    " microbatch " + std::to_string(a.microbatch()) + " before its I");
  }
  const auto w0 = Clock::now();
  const int64_t w0_ns = TimingRecorder::wall_ns();
  if (emulate_) {
    emulate(w0, plan_.prediction().stage_weight_s(static_cast<int>(a.stage())));
  } else {
    it->second.weights.run();
  }
  times.backward_s += seconds_since(w0);
  count_compute(times.stage_w, static_cast<int>(a.stage()), w0_ns, times);
  model.after_backward(static_cast<int>(a.stage()), last_gradient_[index]);
}

torch::Tensor StageExecutor::data(StepModel& model, int microbatch, StepTimes& times) {
  const auto d0 = Clock::now();
  torch::Tensor tokens = model.tokens(microbatch);
  times.data_s += seconds_since(d0);
  return tokens;
}

void StageExecutor::emulate(Clock::time_point start, double seconds) {
  const auto end = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(std::max(0.0, seconds)));
  // Sleeps overshoot by timer slack and wake-up latency (about 150 us on a VM), so sleep until
  // shortly before the end and yield the rest: the op ends on time.
  std::this_thread::sleep_until(end - kEmulationSpin);
  while (Clock::now() < end) std::this_thread::yield();
}

void StageExecutor::count_compute(std::vector<double>& per_stage, int stage, int64_t t0_ns,
                                  StepTimes& times) {
  const int64_t now = TimingRecorder::wall_ns();
  const double seconds = static_cast<double>(now - t0_ns) * 1e-9;
  per_stage[static_cast<size_t>(stage)] += seconds;
  times.compute_s += seconds;
  if (times.first_compute_ns == 0) times.first_compute_ns = t0_ns;
  times.last_compute_ns = now;
}

StepTimes StageExecutor::run_step(StepModel& model, StreamPosition position) {
  std::optional<torch::NoGradGuard> no_graph;
  if (forward_only_) no_graph.emplace();
  StepTimes times;
  const auto stages = static_cast<size_t>(plan_.stages_size());
  times.stage_f.assign(stages, 0.0);
  times.stage_b.assign(static_cast<size_t>(backward_stage_count()), 0.0);
  times.stage_w.assign(static_cast<size_t>(backward_stage_count()), 0.0);
  times.stage_b_lead.assign(shared_ ? static_cast<size_t>(backward_stage_count()) : 0, 0.0);
  begin_step(model);
  if (async_ && position.first) run_part(model, Part::kWarmUp, times);
  run_part(model, async_ && position.last ? Part::kDrain : Part::kWindow, times);
  finish_sends(true, times);
  if (async_ && !position.last) {
    carry_ahead();
  } else {
    microbatches_.clear();
  }
  backward_grads_.clear();
  step_schedule_ = nullptr;
  actions_ = plan_actions_;
  ++step_;
  return times;
}

void StageExecutor::carry_ahead() {
  // The next step's forwards that ran ahead become that step's own: their state (and the
  // receive buffer their input views, which the next window posts again) moves to their number.
  const int m = schedule_microbatches_;
  std::map<std::pair<int, int>, Microbatch> next;
  for (auto& [key, mb] : microbatches_) {
    if (key.second < m) continue;
    const std::pair<int, int> own{key.first, key.second - m};
    std::swap(receives_[{0, key.first - 1, key.second}], receives_[{0, key.first - 1, own.second}]);
    next.emplace(own, std::move(mb));
  }
  std::erase_if(receives_, [](const auto& r) { return !r.second; });
  microbatches_ = std::move(next);
  for (auto& send : sends_) send->ahead = false;
}

void StageExecutor::run_part(StepModel& model, Part part, StepTimes& times) {
  post_receives(part);
  // Stateless workers settle the step's gradients before ALLREDUCE; asynchronous ones leave it,
  // and taking them, to the update's thread (the model's), retrying their own additions throughout.
  bool settled = !shared_;
  const auto& actions = *actions_;
  for (int i = 0; i < actions.size(); ++i) {
    const auto& a = actions[i];
    if (!runs(a, part)) continue;
    const auto index = static_cast<size_t>(i);
    const int mbi = id(a, part);
    if (!settled && !async_ && (a.kind() == plan::ACTION_ALLREDUCE || a.kind() == plan::ACTION_OPTIM)) {
      // Every gradient of the stages this worker owns is in the shared memory before it is read.
      const auto t0 = Clock::now();
      shared_->settle(step_, p2p_.timeout());
      times.allreduce_s += seconds_since(t0);
      settled = true;
    }
    switch (a.kind()) {
      case plan::ACTION_F:
        if (shared_) {
          stateless_forward(model, a, mbi, times);
        } else {
          forward(model, a, mbi, times);
        }
        break;
      case plan::ACTION_B:
      case plan::ACTION_I:
        if (shared_) {
          stateless_backward(model, a, mbi, times);
        } else {
          backward(model, a, mbi, index, times);
        }
        break;
      case plan::ACTION_W:
        backward_weights(model, a, index, times);
        break;
      case plan::ACTION_SEND_F:
      case plan::ACTION_SEND_B:
        post_send(a, mbi, part == Part::kWindow && a.ahead());
        break;
      case plan::ACTION_RECV_B:
        // A stateless backward recomputes before it needs its gradient and waits for it then.
        if (shared_) break;
        [[fallthrough]];
      case plan::ACTION_RECV_F:
        wait_receive({a.kind() == plan::ACTION_RECV_F ? 0 : 1, static_cast<int>(a.stage()), mbi}, times);
        break;
      case plan::ACTION_ALLREDUCE: {
        const auto t0 = Clock::now();
        model.reduce_gradients();
        times.allreduce_s += seconds_since(t0);
        break;
      }
      case plan::ACTION_OPTIM: {
        const auto t0 = Clock::now();
        model.optimizer_step(times);
        if (shared_ && !async_) shared_->finish_step(step_);
        times.optimizer_s += seconds_since(t0);
        break;
      }
      default:
        break;  // refused by the constructor
    }
    if (!sends_.empty()) finish_sends(false, times);
    if (!settled) shared_->try_flush();
  }
}

}  // namespace rondo
