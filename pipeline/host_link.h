// The host link of a stateless worker (RoundPipe): weights live in host memory, so before a task
// of a stage the worker does not hold, the stage's weights are uploaded, starting when the
// worker's previous task starts (one prefetch buffer) and after the previous upload; when the
// worker leaves a backward stage (or the step ends), that stage's gradients are downloaded after
// its last task there. Used alike by RoundPipe's task placement and by the simulator, so both
// see the same times. Costs in StageCosts (forward/backward_weight_bytes, host_bandwidth).
#pragma once

#include <algorithm>
#include <vector>

#include "pipeline/pipeline_schedule.h"
#include "pipeline/stage_costs.h"

namespace rondo {

class HostLink {
 public:
  HostLink(const StageCosts& costs, int workers)
      : costs_(costs), workers_(static_cast<size_t>(workers)), enabled_(costs.host_bandwidth > 0) {}

  // When `task`'s weights are on `worker`, given it could start at `ready` otherwise; records the
  // task as started at the returned time.
  double start(int worker, const ComputeAction& task, double ready) {
    if (!enabled_) return ready;
    Worker& w = workers_[static_cast<size_t>(worker)];
    const Held next{task.kind == ComputeKind::kF, task.stage};
    if (!w.holds || !(w.held == next)) {
      leave(w);
      w.upload_free = std::max(w.upload_free, w.previous_start) + seconds(next);
      exposed_ += std::max(0.0, w.upload_free - ready);
      ready = std::max(ready, w.upload_free);
      w.held = next;
      w.holds = true;
    }
    w.previous_start = ready;
    return ready;
  }
  void finish(int worker, double end) {
    if (enabled_) workers_[static_cast<size_t>(worker)].last_end = end;
  }
  // When the worker's last gradients are home (0 with nothing to send).
  double drained(int worker) {
    if (!enabled_) return 0.0;
    Worker& w = workers_[static_cast<size_t>(worker)];
    leave(w);
    w.holds = false;
    return w.download_free;
  }
  double exposed() const { return exposed_; }

 private:
  struct Held {
    bool forward = true;
    int stage = 0;
    bool operator==(const Held&) const = default;
  };
  struct Worker {
    Held held;
    bool holds = false;
    double upload_free = 0, download_free = 0, previous_start = 0, last_end = 0;
  };
  double seconds(const Held& h) const {
    const auto& bytes = h.forward ? costs_.forward_weight_bytes : costs_.backward_weight_bytes;
    const auto i = static_cast<size_t>(h.stage);
    return (i < bytes.size() ? bytes[i] : 0.0) / costs_.host_bandwidth;
  }
  void leave(Worker& w) {
    if (w.holds && !w.held.forward) w.download_free = std::max(w.download_free, w.last_end) + seconds(w.held);
  }

  const StageCosts& costs_;
  std::vector<Worker> workers_;
  bool enabled_;
  double exposed_ = 0;
};

}  // namespace rondo
