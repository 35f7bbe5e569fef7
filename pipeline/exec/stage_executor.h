// StageExecutor: runs one rank's share of a training step exactly in the plan's order: the forward
// (F) and backward -- full (B) or split into input (I) and weight (W) gradients -- of its stages
// per microbatch, the transfers of activations and gradients between stages, the data-parallel
// gradient reduction (ALLREDUCE) and the optimizer step (OPTIM). Every schedule runs through it,
// data parallelism being the pp = 1 case: a new schedule is a new action list, not new code here.
//
// Transfers are non-blocking. At the start of a step every receive of the step is posted into a
// buffer kept across steps; a RECV action waits for its buffer; a SEND action posts the send and
// keeps the tensor alive until it completes (all are waited for at the end of the step). A send
// therefore never blocks its rank, so a plan whose compute dependencies are acyclic cannot
// deadlock, whatever the message sizes. Each transfer lands in the timing recorder.
//
// With training.emulate_compute every F, B, I and W sleeps for the plan's predicted duration of
// that op instead of computing and hands on zeros of the real size: transfers, reductions and
// the optimizer stay real, so the runtime's own overhead shows.
//
// With full activation recomputation a forward records no graph and keeps only its stage input;
// the stage's B or I first reruns the forward (counted as backward time), then differentiates.
//
// Chunked training with pipeline parallelism (plan data.pipeline_chunk_lengths) and HDP (plan
// hdp.enabled; the StepModel's schedule holds the rank's sub-batches of the step, a rank idle in a
// step has none): every step has its own schedule (StepSchedule), which the StepModel makes from
// the step's chunks with the plan's schedule generator -- the plan's actions are only the step in which every
// row is one long sequence. The schedule's microbatches are the chunks, each a single row of its own length;
// a long sequence's chunks are one dependent group that runs forward in order and backward in
// reverse. The StepModel keeps each chunk's keys and values for the later chunks and feeds their
// gradients back; here a chunk the step schedule marks recomputes like full recomputation does.
//
// Stateless workers (RoundPipe: plan.stateless_workers) run any stage's task. The model is held
// whole as "atoms" (embedding, each block, final norm + LM head; stateless_model_layers()), its
// weights and gradients in node-shared memory (SharedReplicaState). A forward task records no
// graph and leaves the activations at each backward-stage boundary in shared memory; a backward
// task of the backward partition recomputes its atoms from there (the first one, with the LM
// head, computes the loss) and adds its gradients to the shared ones in microbatch order.
//
// Asynchronous plans (PipeDream-2BW, Plan.asynchronous): a step is a window of one endless stream,
// in which forwards of the next step's microbatches run "ahead" (in a flushed 1F1B, the next step's
// warm-up). Their state, and the receive buffers their inputs view, carry over into the next step,
// where they are that step's own; their sends complete when the next step's receiver takes them.
// Stateless workers of an asynchronous plan neither settle nor finish a step in ALLREDUCE and
// OPTIM: the StepModel's update thread takes the owned stages' gradients (SharedReplicaState's
// wait_owned/finish_step), and the worker flushes its own additions (flush_own) before it waits
// for that thread.
// A stream's first step runs the window's ahead actions first, as its own (the warm-up); its last
// step leaves them out (the drain). The StepModel sees an ahead forward as microbatch
// num_microbatches + m, m being its number in the next step; the weights it computes with are
// the StepModel's business (the one-step delay: worker/delayed_update.h).
//
// Forward-only (validation, worker/validation.h): the rank's F, SEND_F and RECV_F of the plan --
// an asynchronous plan's ahead ones first, as in a stream of one step -- without a graph; the
// losses add up as in training. Not for stateless workers, step schedules or emulated compute.
//
// The model and the rest of the step come in through StepModel (the worker implements it).
// Call order: construct once; run_step() once per step.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "comms/communicator.h"
#include "comms/timing_recorder.h"
#include "pipeline/exec/shared_replica_state.h"
#include "pipeline/exec/step_times.h"
#include "pipeline/exec/weight_grad_store.h"
#include "pipeline/pipeline_schedule.h"
#include "proto/plan.pb.h"

namespace rondo {

// One step's own schedule, for plans whose steps differ (chunked pipeline training: the step's
// chunks decide how many microbatches it has and which depend on which; HDP: the sub-batches the
// step's plan gives the rank, none on a rank the plan leaves idle).
struct StepSchedule {
  google::protobuf::RepeatedPtrField<plan::Action> actions;  // this rank's, ALLREDUCE and OPTIM included
  std::vector<int64_t> tokens;  // per schedule microbatch: its stage boundary's tokens (one row)
  std::vector<bool> recompute;  // per schedule microbatch: its forward keeps only its input
  // What each loss is multiplied by before its backward; 0: 1 / (microbatches x dp). HDP's losses
  // are already each rank's share of the step's mean: 1.
  double loss_scale = 0;
  // training.emulate_compute: per microbatch, the seconds its forward and backward sleep (empty:
  // the plan's predicted stage times).
  std::vector<double> forward_s, backward_s;
};

class StepModel {
 public:
  virtual ~StepModel() = default;
  // This step's own schedule (asked once at the start of every step), or null: the plan's.
  virtual const StepSchedule* step_schedule() { return nullptr; }
  // Token ids [micro_batch_size, seq_length + 1] of this rank's microbatch `microbatch` (from
  // num_microbatches on, asynchronous plans: the next step's microbatch - num_microbatches).
  virtual torch::Tensor tokens(int microbatch) = 0;
  // Stage `stage`'s forward of microbatch `microbatch`: token ids [mb, seq] (stage with the
  // embedding) or hidden states [mb, seq, hidden] in; hidden states, or logits from the stage
  // with the LM head, out.
  virtual torch::Tensor forward(int stage, int microbatch, const torch::Tensor& input) = 0;
  // Mean loss of microbatch `microbatch`'s logits [mb, seq, vocab] against targets [mb, seq].
  virtual torch::Tensor loss(int microbatch, const torch::Tensor& logits, const torch::Tensor& targets) = 0;
  // The forward and the loss of the stage with the LM head: forward() then loss(), unless the
  // model computes the loss without materialising the logits (chunked training).
  virtual torch::Tensor forward_loss(int stage, int microbatch, const torch::Tensor& input,
                                     const torch::Tensor& targets) {
    return loss(microbatch, forward(stage, microbatch, input), targets);
  }
  // Around every B and I (before) and every B and W (after) of `stage`. `last` before: the
  // stage's last B or I of the step; after: its last gradient-producing action, so every
  // gradient of the stage is final when it returns.
  virtual void before_backward(int /*stage*/, bool /*last*/) {}
  virtual void after_backward(int /*stage*/, bool /*last*/) {}
  // Stateless workers: this worker's gradients of backward stage `stage`'s parameters (its range
  // of the flat order; SharedReplicaState), which the executor moves into the shared ones.
  virtual torch::Tensor stage_gradients(int /*stage*/) { return {}; }
  // Before a forward's time starts (emulated or not): HDP's group meets there, so that a rank
  // waiting for its group to form is idle, not busy.
  virtual void before_forward(int /*stage*/, int /*microbatch*/) {}
  virtual void reduce_gradients() = 0;  // ALLREDUCE
  // OPTIM; `so_far` holds the step's losses (every forward precedes it).
  virtual void optimizer_step(const struct StepTimes& so_far) = 0;
};

// The model a stateless worker holds: one stage per atom, indexed 0 (embeddings), 1..num_layers
// (blocks), num_layers + 1 (final norm and LM head).
std::vector<StageLayers> stateless_model_layers(const plan::Plan& plan);
// The atoms [first, end) a plan stage (forward or backward) of the plan runs.
std::pair<int, int> stateless_stage_atoms(const plan::Plan& plan, const plan::Stage& stage);

// Where a step lies in an asynchronous plan's stream (ignored by synchronous plans): the first
// runs the warm-up, the last the drain.
struct StreamPosition {
  bool first = true;
  bool last = true;
};

class StageExecutor {
 public:
  // `p2p` carries the pipeline's transfers, numbered like the plan's ranks (a duplicate of the
  // world, so that no collective's message can match); it, `recorder` (may be null) and `shared`
  // (required exactly when the plan's workers are stateless) must outlive the executor. Throws
  // PlanError when the rank's actions are not executable.
  StageExecutor(const plan::Plan& plan, int rank, Communicator& p2p, TimingRecorder* recorder,
                SharedReplicaState* shared = nullptr, bool forward_only = false);
  ~StageExecutor();

  StepTimes run_step(StepModel& model, StreamPosition position = {});

  // What each microbatch's loss is multiplied by before its backward: 1 / (microbatches x dp)
  // (with a step schedule: its microbatches), so that the summed gradients (and the summed scaled
  // losses) are means over the global batch. The running (or last) step's.
  double loss_scale() const { return loss_scale_; }

  // Whether the forward of schedule microbatch `microbatch` keeps only its input, the backward
  // recomputing it: full recomputation, or a chunk its step schedule marks.
  bool recomputes(int microbatch) const;

 private:
  // (kind of transfer: 0 activations, 1 gradients; stage; microbatch)
  using Key = std::tuple<int, int, int>;
  struct Receive;
  struct Send;
  struct Microbatch;
  // The part of a rank's actions a run executes: an asynchronous stream's warm-up (its ahead
  // actions, as the step's own), a window (all of them), or the last window (without them).
  enum class Part { kWarmUp, kWindow, kDrain };
  static bool runs(const plan::Action& a, Part part);
  // The microbatch an action works on in that part: ahead, num_microbatches + its number.
  int id(const plan::Action& a, Part part) const;
  void run_part(StepModel& model, Part part, StepTimes& times);
  void carry_ahead();

  // Stages B, I and W actions name: the backward partition's, or the plan's.
  int backward_stage_count() const {
    return plan_.backward_stages_size() > 0 ? plan_.backward_stages_size() : plan_.stages_size();
  }
  void init_stateless();
  // The constructor's checks (PlanError): the plan's modes fit together and this executor runs
  // them; every action of this rank is executable (and which backward of a stage is its last).
  void check_modes() const;
  void check_actions(const google::protobuf::RepeatedPtrField<plan::Action>& actions);
  // Forward-only: the plan's forward actions of this rank, ahead ones first, none ahead.
  void keep_forward_actions();
  // Takes the step's schedule from the model (required with chunked pipeline microbatches), or
  // the plan's: the actions, microbatch count and loss scale the step runs with.
  void begin_step(StepModel& model);
  // [micro_batch, tokens, hidden] of a microbatch's stage boundary (a step's own schedule, chunked
  // or HDP: [1, the microbatch's tokens, hidden]).
  std::vector<int64_t> boundary_shape(int microbatch) const;
  torch::Tensor emulated_boundary(int microbatch) const;  // emulated compute's hand-on
  void post_receives(Part part);
  torch::Tensor wait_receive(const Key& key, StepTimes& times);
  void post_send(const plan::Action& action, int microbatch, bool ahead);
  void finish_sends(bool wait, StepTimes& times);
  int tag(const Key& key) const;

  void forward(StepModel& model, const plan::Action& a, int microbatch, StepTimes& times);
  // The stage's forward, and on the stage with the LM head its loss against `tokens`' targets.
  torch::Tensor stage_forward(StepModel& model, int stage, int microbatch, const torch::Tensor& input,
                              const torch::Tensor& tokens);
  void backward(StepModel& model, const plan::Action& a, int microbatch, size_t index, StepTimes& times);
  void backward_weights(StepModel& model, const plan::Action& a, size_t index, StepTimes& times);
  // Stateless workers' F and B (see the header comment).
  void stateless_forward(StepModel& model, const plan::Action& a, int microbatch, StepTimes& times);
  void stateless_backward(StepModel& model, const plan::Action& a, int microbatch, StepTimes& times);
  torch::Tensor data(StepModel& model, int microbatch, StepTimes& times);
  // Emulated compute: returns `seconds` after `start`.
  static void emulate(std::chrono::steady_clock::time_point start, double seconds);
  // Adds a compute action that ran from `t0` until now to the step's busy time.
  void count_compute(std::vector<double>& per_stage, int stage, int64_t t0_ns, StepTimes& times);

  const plan::Plan& plan_;
  const plan::RankPlan& me_;
  int rank_;
  Communicator& p2p_;
  TimingRecorder* recorder_;
  bool recording() const { return recorder_ && recorder_->recording(); }
  double loss_scale_;
  bool recompute_;  // model.recompute_granularity = full: F keeps the stage input, B/I rerun F
  // Chunked pipeline training (data.pipeline_chunk_lengths): every step brings its schedule; so
  // does HDP (step_schedules_).
  bool chunked_ = false;
  bool step_schedules_ = false;
  const StepSchedule* step_schedule_ = nullptr;                      // the running step's, or null
  const google::protobuf::RepeatedPtrField<plan::Action>* actions_;  // the running step's
  // The actions of a step without a schedule of its own: the rank's plan's, or forward-only its
  // forward ones (forward_actions_).
  const google::protobuf::RepeatedPtrField<plan::Action>* plan_actions_;
  bool forward_only_ = false;
  google::protobuf::RepeatedPtrField<plan::Action> forward_actions_;
  int schedule_microbatches_ = 1;
  bool emulate_;  // training.emulate_compute: compute actions sleep for their predicted time
  bool async_;    // Plan.asynchronous: steps are windows of a stream
  torch::Tensor emulated_boundary_;      // zeros of the boundary shape: what emulated F and B hand on
  std::vector<int64_t> boundary_shape_;  // [micro_batch, seq, hidden] (unchunked)
  std::vector<bool> last_backward_;      // per action: the stage's last B or I
  std::vector<bool> last_gradient_;      // per action: the stage's last B or W

  std::map<Key, std::unique_ptr<Receive>> receives_;  // buffers persist across steps
  std::vector<std::unique_ptr<Send>> sends_;
  std::map<std::pair<int, int>, Microbatch> microbatches_;  // (stage, microbatch) -> state

  // Stateless workers: the shared state, each forward and backward stage's atoms [first, end),
  // the backward stage whose input enters each atom (-1: none), and the gradients each
  // backward (stage, microbatch) hands on.
  SharedReplicaState* shared_ = nullptr;
  std::vector<std::pair<int, int>> forward_atoms_, backward_atoms_;
  std::vector<int> backward_stage_at_;
  std::vector<std::vector<int>>
      forward_weight_stages_;  // per forward stage: the backward stages of its atoms
  int64_t step_ = 0;           // run_step() calls so far: the step number SharedReplicaState counts in
  std::map<std::pair<int, int>, torch::Tensor> backward_grads_;
};

}  // namespace rondo
