// PendingCollective: a collective in flight that its caller advances. progress() does what it can
// without blocking (tests its requests, reduces what arrived, posts the next exchange) and says
// whether the collective is complete; wait() drives it to completion. Open MPI has no progress
// thread, so a collective that nobody progresses does not move: code that overlaps one with
// compute calls progress() between pieces of that compute (BucketedAllreduce does, from autograd
// hooks).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "comms/communicator.h"

namespace rondo {

class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  PendingCollective(const PendingCollective&) = delete;
  PendingCollective& operator=(const PendingCollective&) = delete;

  virtual bool progress() = 0;

  // Blocks until complete, sleeping while an emulated link holds the current step. Throws
  // TimeoutError when no step completes within the communicator's timeout.
  void wait();

 protected:
  using Clock = std::chrono::steady_clock;
  PendingCollective(Communicator& comm, std::string what) : comm_(comm), what_(std::move(what)) {}

  Communicator& comm_;
  std::string what_;                // names the collective in a timeout
  uint64_t steps_done_ = 0;         // progress() counts completed steps (wait()'s deadline restarts)
  Clock::time_point hold_until_{};  // an emulated link holds the current step until then
};

}  // namespace rondo
