// MetricsWriter: rank 0's account of a run, step by step: one row of RUN_DIR/metrics.jsonl per
// step (fields in docs/metrics.md; its numbers also as TensorBoard scalars), a progress line every
// training.log_interval steps and at the last (loss, grad norm, lr, tokens/s, ETA), and a summary
// at the end. The step loop hands it what every rank agreed on; a run's parts (gradient reduction,
// the asynchronous update, chunking) add their own fields to each row through add_fields(), so a
// new part needs no change here. An evaluation (training.eval_interval) is a row of its own, with
// val_loss and no loss. Torch-free.
#pragma once

#include <spdlog/logger.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/line_appender.h"
#include "pipeline/exec/step_times.h"
#include "worker/resource_usage.h"
#include "worker/step_statistics.h"
#include "worker/tensorboard_writer.h"

namespace rondo {

class MetricsWriter {
 public:
  struct Options {
    std::string path;        // RUN_DIR/metrics.jsonl, appended to
    int64_t first_step = 0;  // the last step done before this run (a resume's checkpoint)
    int64_t train_iters = 0;
    int64_t log_interval = 1;
    int64_t tokens_per_step = 0;
    // When a step's tokens vary (HDP): the step just written's; tokens_per_step otherwise.
    std::function<double()> step_tokens;
    int attempt = 0;  // the coordinator's launch number
    int world_size = 1;
    // An asynchronous stream never drains: a step's span is the stream's period, from the
    // previous step's last compute end to its own.
    bool stream = false;
    // The simulator's bubble for the plan's schedule at the op times a step's sums hold.
    std::function<double(const StepSums&)> predicted_bubble;
    // Where each row's numbers also go as TensorBoard scalars (worker/tensorboard_writer.h); empty: not.
    std::string tensorboard_dir;
  };
  // What the step loop knows of a finished step.
  struct Step {
    int64_t step = 0;
    double lr = 0, step_s = 0;
    StepTimes times;  // rank 0's
    ResourceUsage before, after;
    StepMaxima worst;  // over the world
  };
  using Fields = std::function<void(const Step&, nlohmann::json& row)>;
  // An evaluation on the validation documents (worker/validation.h).
  struct Evaluation {
    int64_t step = 0;  // the step whose weights were evaluated
    double loss = 0, targets = 0, seconds = 0;
    int64_t iters = 0;  // global batches read
  };

  MetricsWriter(Options options, std::shared_ptr<spdlog::logger> log);

  void add_fields(Fields fields);
  // Appends the step's row (its sums over the world in `summed`) and logs progress when due.
  void write(const Step& step, const StepSums& summed);
  // Appends the evaluation's own row (step, val_loss, val_perplexity, val_targets, eval_iters,
  // eval_s; no `loss`) and logs it.
  void write_evaluation(const Evaluation& e);
  // "trained steps a-b in 1m02s: loss x -> y, n tokens/s on average" (nothing when no row was written).
  void log_summary() const;

 private:
  Options options_;
  std::shared_ptr<spdlog::logger> log_;
  LineAppender out_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  std::vector<Fields> fields_;
  int64_t last_step_ = 0;
  double elapsed_s_ = 0, tokens_ = 0, first_loss_ = 0, last_loss_ = 0;
  double previous_compute_end_ns_ = 0;
};

}  // namespace rondo
