#include "worker/step_updates.h"

#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

#include "comms/collectives.h"

namespace rondo {

namespace {

class SynchronousUpdates : public StepUpdates {
 public:
  SynchronousUpdates(RankWeights& weights, Collectives& stats) : StepUpdates(weights), stats_(stats) {}

  void optimizer_step(int64_t, double lr, StepSums sums) override {
    sum_over(stats_, sums);
    summed_ = std::move(sums);
    weights_.update(lr, grad_norm());
  }

  void end_step(int64_t, double, StepMaxima worst,
                const std::shared_ptr<MetricsWriter::Step>& report) override {
    max_over(stats_, worst);
    report->worst = worst;
    done_(*report);
  }

 private:
  Collectives& stats_;
};

class DelayedUpdates : public StepUpdates {
 public:
  DelayedUpdates(RankWeights& weights, Communicator& world, TimingRecorder* recorder, bool adds_norm)
      : StepUpdates(weights), adds_norm_(adds_norm) {
    std::vector<int> everyone(static_cast<size_t>(world.size()));
    std::iota(everyone.begin(), everyone.end(), 0);
    comm_ = world.split(everyone);
    stats_ = std::make_unique<Collectives>(*comm_, recorder);  // the recorder locks
    stats_->set_group("delayed_stats", {});
  }

  void optimizer_step(int64_t, double, StepSums sums) override {
    sums_ = std::move(sums);  // summed and applied after the window, off the critical path
  }

  void end_step(int64_t now, double lr, StepMaxima worst,
                const std::shared_ptr<MetricsWriter::Step>& report) override {
    drain();
    const int64_t run_step = now - first_step_;  // SharedReplicaState counts from the run's first
    auto update = [this, sums = std::move(sums_), worst, report, lr, now, run_step]() mutable {
      if (const auto norm = weights_.collect_delayed_gradients(now, run_step); norm && adds_norm_)
        sums.grad_norm_squared = *norm;
      sum_over(*stats_, sums);
      max_over(*stats_, worst);
      summed_ = std::move(sums);
      report->worst = worst;
      weights_.update_delayed(now, lr, grad_norm());
    };
    weights_.delayed()->begin(now, std::move(update), weights_.on_version_written(run_step));
    pending_ = report;
  }

  void drain() override {
    // A stateless worker's own additions first: other owners' update threads wait for them.
    if (pending_) weights_.before_wait(pending_->step - 1 - first_step_);
    weights_.delayed()->wait();
    if (pending_) done_(*pending_);
    pending_.reset();
  }

  int64_t stop_step(int64_t step) const override { return step + 1; }

 private:
  bool adds_norm_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<Collectives> stats_;
  StepSums sums_;                                 // the step's, from its OPTIM to its end
  std::shared_ptr<MetricsWriter::Step> pending_;  // the step whose update is in flight
};

}  // namespace

void StepUpdates::begin_run(int64_t first_step, Done done) {
  first_step_ = first_step;
  done_ = std::move(done);
}

double StepUpdates::grad_norm() const { return std::sqrt(summed_.grad_norm_squared); }

void StepUpdates::sum_over(Collectives& over, StepSums& sums) {
  auto values = sums.to_values();
  over.native_allreduce(values.data(), values.size(), DType::kFloat64, ReduceOp::kSum);
  sums.from_values(values);
}

void StepUpdates::max_over(Collectives& over, StepMaxima& maxima) {
  auto values = maxima.to_values();
  over.native_allreduce(values.data(), values.size(), DType::kFloat64, ReduceOp::kMax);
  maxima = StepMaxima::from_values(values);
}

std::unique_ptr<StepUpdates> make_step_updates(RankWeights& weights, Collectives& stats, Communicator& world,
                                               TimingRecorder* recorder, bool adds_norm) {
  if (weights.delayed()) return std::make_unique<DelayedUpdates>(weights, world, recorder, adds_norm);
  return std::make_unique<SynchronousUpdates>(weights, stats);
}

}  // namespace rondo
