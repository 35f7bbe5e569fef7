// Trainer::Impl, the trainer's state and its parts (worker/trainer.h's pimpl), shared by the
// trainer's translation units: worker/trainer.cpp (setup, the step loop, checkpoints) and
// worker/trainer_reports.cpp (what a finished step and an evaluation report: the metrics rows, the
// step report to the coordinator, events). Torch translation units only.
#pragma once

#include "worker/trainer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "common/errors.h"
#include "common/line_appender.h"
#include "common/logging.h"
#include "common/stopwatch.h"
#include "comms/collectives.h"
#include "comms/recorded_transfers.h"
#include "control/flight_records.h"
#include "data/document_split.h"
#include "data/exec/step_batches.h"
#include "data/sample_windows.h"
#include "data/token_corpus.h"
#include "pipeline/exec/plan_schedule.h"
#include "pipeline/exec/stage_executor.h"
#include "pipeline/schedule_simulator.h"
#include "proto/plan.pb.h"
#include "proto/plan_names.h"
#include "proto/report.pb.h"
#include "worker/checkpointer.h"
#include "worker/chunked_step_model.h"
#include "worker/delayed_update.h"
#include "worker/hdp_step_model.h"
#include "worker/learning_rate.h"
#include "worker/live_rings.h"
#include "worker/metrics_writer.h"
#include "worker/microbatch_forward.h"
#include "worker/moe_training.h"
#include "worker/rank_weights.h"
#include "worker/staged_model.h"
#include "worker/step_statistics.h"
#include "worker/step_updates.h"
#include "worker/training_device.h"
#include "worker/validation.h"
#include "worker/weights_file.h"

namespace rondo {

namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

struct Trainer::Impl : StepModel {
  const plan::Plan& plan;
  std::string run_dir;
  Communicator& world;
  int rank;
  int local_rank;  // the launcher's, -1 when unknown
  const plan::RankPlan& me;
  std::shared_ptr<spdlog::logger> log = logging::get("worker");

  std::unique_ptr<TimingRecorder> recorder;
  // comms.timing_recorder_blocks: whether the recorder records this step.
  bool records_step(int64_t step) const {
    return recorded_step(step, static_cast<int64_t>(plan.comms().timing_recorder_blocks()));
  }
  std::unique_ptr<Communicator> dp_comm;   // the gradients' group: data- and context-parallel ranks
  std::unique_ptr<Communicator> cp_comm;   // context parallelism: the ranks sharing this rank's rows
  std::unique_ptr<Communicator> cp_ring;   // cp_comm, its ring attention's transfers recorded
  ContextParallel context;                 // and the tokens of each row this rank holds
  std::unique_ptr<Communicator> p2p_comm;  // pipeline transfers (a duplicate of the world)
  std::unique_ptr<Collectives> world_coll;
  std::unique_ptr<Collectives> dp_coll;
  std::unique_ptr<Collectives>
      stats_coll;  // per-step statistics, recorded like the rest (a hang there must show)

  TokenCorpus corpus;                      // the training documents (data.split's first part)
  std::unique_ptr<SampleWindows> windows;  // what each sample reads, over `corpus`
  std::unique_ptr<StepBatches> batches;    // the step's microbatches as tensors
  torch::Device device{torch::kCPU};
  // How this rank holds, computes on and updates its weights: the run's mode (worker/rank_weights.h).
  std::unique_ptr<RankWeights> weights;
  int64_t first_step = 0;  // 0-based index of the run's first step (after a resume)
  // The model microbatch `microbatch` (the executor's numbering; ids from a step's count on are the
  // next step's, run ahead in an asynchronous stream) computes on: its step's weight version.
  StagedModel& compute_model(int microbatch) {
    return weights->compute_model(batches->step_of(microbatch).first, step - 1);
  }
  // Chunked training (data.chunk_size): the step model the executor runs, wrapping this one.
  std::unique_ptr<ChunkedStepModel> chunked;
  // Mixture of experts (model.moe): the expert groups, the layers' runtime, the router's load.
  std::unique_ptr<MoeTraining> moe;
  // Hybrid data/context parallelism (parallel.hdp): the step model, wrapping this one.
  std::unique_ptr<HdpStepModel> hdp;
  // Validation (training.eval_interval) over data.split's validation documents.
  TokenCorpus validation_corpus;
  std::unique_ptr<Validation> validation;
  std::optional<Validation::Result> unreported_validation;  // rank 0: for the next step report
  void split_corpus();
  void evaluate(int64_t at);
  StepModel& step_model() {
    if (hdp) return *hdp;
    return chunked ? static_cast<StepModel&>(*chunked) : *this;
  }
  // The mean over the ranks of the step's compute seconds (once the step's sums are known).
  double mean_compute_s() const { return updates->summed().compute_s / world.size(); }
  // The step's tokens (HDP: its batch's, which vary).
  double step_tokens() const {
    return hdp ? hdp->step_tokens()
               : static_cast<double>(plan.training().global_batch_size()) *
                     static_cast<double>(plan.model().seq_length());
  }
  std::unique_ptr<StageExecutor> executor;
  std::unique_ptr<Checkpointer> checkpointer;
  std::unique_ptr<MetricsWriter> metrics;  // rank 0's, from run() on
  std::unique_ptr<LineAppender> events;

  // The step being executed (1-based) and its learning rate.
  int64_t step = 0;
  double lr = 0;
  // When the step's statistics are summed and the weights updated: the run mode's other half
  // (worker/step_updates.h).
  std::unique_ptr<StepUpdates> updates;
  PipelineSchedule schedule;  // the plan's, for the predicted bubble (rank 0)

  Impl(const plan::Plan& p, std::string dir, Communicator& w, int local)
      : plan(p),
        run_dir(std::move(dir)),
        world(w),
        rank(w.rank()),
        local_rank(local),
        me(p.ranks(w.rank())),
        corpus(load_corpus(p.data(), p.model().seq_length() + 1)) {}

  static TokenCorpus load_corpus(const plan::DataSpec& data, uint64_t min_tokens) {
    const auto& ln = data.lognormal();
    return TokenCorpus::load(data.path(), name_of(data.format()), min_tokens,
                             {ln.documents(), ln.mu(), ln.sigma(), ln.max_length(), ln.seed()});
  }

  void setup();
  void build_dp_group();
  void build_cp_group();
  void event(const nlohmann::json& e);
  // The simulator's bubble for the plan's schedule with the op durations this step measured.
  double predicted_bubble(const StepSums& sums) const;

  // StepModel: what the executor calls back.
  torch::Tensor tokens(int microbatch) override { return batches->tokens(microbatch); }
  const ContextParallel* context_parallel() const { return cp_comm ? &context : nullptr; }
  torch::Tensor forward(int stage, int microbatch, const torch::Tensor& input) override {
    return microbatch_forward(compute_model(microbatch), *batches, microbatch, stage, input,
                              context_parallel());
  }
  torch::Tensor loss(int microbatch, const torch::Tensor& logits, const torch::Tensor& targets) override {
    return microbatch_loss(weights->model(), *batches, microbatch, logits, targets, context_parallel());
  }
  double step_longest_sequence = 0;  // this rank's (chunked training)
  torch::Tensor stage_gradients(int stage) override { return weights->stage_gradients(stage); }
  void before_backward(int stage, bool last) override { weights->before_backward(step - 1, stage, last); }
  void after_backward(int stage, bool last) override { weights->after_backward(step - 1, stage, last); }
  void reduce_gradients() override { weights->reduce_gradients(step - 1); }
  void optimizer_step(const StepTimes& so_far) override;

  // The step's statistics as this rank saw them (main thread), to be summed over the world.
  StepSums local_sums(const StepTimes& so_far);
  std::atomic<bool> checkpoint_requested{false}, stop_requested{false};
  // Gradient rings sent while running (request_rings), and their change at an agreed step.
  std::unique_ptr<LiveRings> live_rings;
  void apply_rings(const LiveRings::Change& change, int64_t at);
  std::function<void(report::StepReport&&)> on_step;
  TimingRecorder::ReportCursor reported;  // the recorder's records already sent in a step report
  // The coordinator's launch number (RONDO_ATTEMPT): rows of a restarted attempt say so, and the
  // newest row of a step is the one that counts.
  const int attempt = [] {
    const char* a = std::getenv("RONDO_ATTEMPT");
    return a ? std::atoi(a) : 0;
  }();
  // This rank's report of a finished step, with the flight records since the last one.
  report::StepReport step_report(const MetricsWriter::Step& r, double tokens_per_s, int64_t train_iters);
  // Rank 0: the metrics writer, with the fields the run's parts add to each row.
  void open_metrics(int64_t first_step);
  // The run loop's parts: the checkpoint to resume from (its step, or 0, and whether one was
  // loaded); one step run, with this rank's maxima; what a summed step reports; the checkpoint
  // and stop decisions after a step.
  std::pair<int64_t, bool> resume();
  std::shared_ptr<MetricsWriter::Step> run_one_step(int64_t at, int64_t first, bool exiting);
  StepMaxima local_maxima(const MetricsWriter::Step& report);
  void step_done(const MetricsWriter::Step& report);
  // Requests from outside the loop, agreed through a step's maxima (every rank sees the same);
  // the step a stop agreed ends the run at.
  bool agreed_checkpoint = false, agreed_stop = false;
  int64_t stop_at = std::numeric_limits<int64_t>::max();
  void checkpoint_if_due(int64_t at, bool stopping);
  void log_stop(int64_t at);
};

}  // namespace rondo
