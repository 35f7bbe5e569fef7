// StepUpdates: when a step's statistics are summed over the world and its optimizer step runs --
// the half of a run's mode that RankWeights (worker/rank_weights.h) leaves to the step loop.
// Chosen once at setup by make_step_updates():
//   synchronous: at the step's OPTIM the sums (loss, gradient norm, per-stage times) go over the
//     world and the weights update; at the step's end its maxima, and the step is reported;
//   delayed (plan.asynchronous, PipeDream-2BW): OPTIM only keeps the step's sums; at the step's
//     end the sums, the maxima and the update run on the DelayedUpdate's thread, over a
//     communicator of their own, while the next step computes (a world-wide sum on the main thread
//     would hold every rank at each step's end and drain the stream). A step is reported when the
//     next one ends, or at drain().
// Call order: begin_run() once, then per step optimizer_step() (from the executor's OPTIM) and
// end_step(); drain() before a checkpoint and at the end.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "worker/metrics_writer.h"
#include "worker/rank_weights.h"
#include "worker/step_statistics.h"

namespace rondo {

class Collectives;
class Communicator;
class TimingRecorder;

class StepUpdates {
 public:
  // Each step once its statistics are summed (summed() holds them then), in step order.
  using Done = std::function<void(const MetricsWriter::Step&)>;

  virtual ~StepUpdates() = default;
  // `first_step`: the run's first step (0-based: the steps a checkpoint held before it).
  void begin_run(int64_t first_step, Done done);
  // At the executor's OPTIM of (0-based) step `now`: this rank's sums of the step.
  virtual void optimizer_step(int64_t now, double lr, StepSums sums) = 0;
  // After step `now`: this rank's maxima; `report` is the step's, reported through `done` once
  // summed.
  virtual void end_step(int64_t now, double lr, StepMaxima worst,
                        const std::shared_ptr<MetricsWriter::Step>& report) = 0;
  // Every step ended so far summed, updated and reported.
  virtual void drain() {}
  // The last step of a run whose stop every rank agreed on at `step` (a delayed stream finishes
  // the step after).
  virtual int64_t stop_step(int64_t step) const { return step; }

  // The last reported step's statistics, summed over the world; its global gradient norm.
  const StepSums& summed() const { return summed_; }
  double grad_norm() const;

  // Sums (maxima) over `over`, in place: one small library allreduce each (a ring would take
  // 2(n-1) sequential exchanges).
  static void sum_over(Collectives& over, StepSums& sums);
  static void max_over(Collectives& over, StepMaxima& maxima);

 protected:
  explicit StepUpdates(RankWeights& weights) : weights_(weights) {}

  RankWeights& weights_;
  StepSums summed_;
  int64_t first_step_ = 0;
  Done done_;
};

// `stats`: the world's collectives for the step's statistics (recorded: a hang there must show).
// `world`: split for the delayed update's statistics (collective over the world, asynchronous
// plans only). `adds_norm`: whether this rank's gradient norm counts in the global one (one rank
// per stage: data-, context- and tensor-parallel index 0).
std::unique_ptr<StepUpdates> make_step_updates(RankWeights& weights, Collectives& stats, Communicator& world,
                                               TimingRecorder* recorder, bool adds_norm);

}  // namespace rondo
