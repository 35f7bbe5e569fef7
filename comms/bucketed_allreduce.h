// BucketedAllreduce: sums a flat float32 gradient buffer over a group, bucket by bucket, on its
// own communication thread and its own communicator, so that buckets whose gradients are final
// travel while the backward pass computes the rest (PyTorch DDP's reducer, on rondo's comms and
// timing recorder).
//
// Call order, once per step: arm() before the backward pass that finalises the gradients;
// mark_ready(param) when a parameter's gradient is final (from any thread: an autograd hook);
// finish() after that backward: it launches every bucket not yet launched, waits for all, and
// returns the seconds it waited (the communication the backward did not hide). Buckets launch
// strictly in index order on every rank, so the collectives match across ranks whatever order the
// gradients arrive in. mark_ready() outside arm()..finish() is ignored (gradient accumulation).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "comms/collectives.h"
#include "comms/communicator.h"
#include "comms/gradient_buckets.h"
#include "comms/timing_recorder.h"

namespace rondo {

class BucketedAllreduce {
 public:
  struct Options {
    bool native = false;               // the library's allreduce instead of rondo's ring
    double emulated_link_bps = 0;      // Collectives::set_emulated_link_bandwidth
  };

  // `comm` is owned and used only by the communication thread (split it off the group's
  // communicator); `data` must hold the buckets' elements and outlive this object; `recorder` may
  // be null.
  BucketedAllreduce(std::unique_ptr<Communicator> comm, TimingRecorder* recorder, float* data,
                    std::vector<GradientBucket> buckets, Options options);
  ~BucketedAllreduce();
  BucketedAllreduce(const BucketedAllreduce&) = delete;
  BucketedAllreduce& operator=(const BucketedAllreduce&) = delete;

  void arm();
  void mark_ready(size_t param);
  // Throws the communication thread's error, or TimeoutError when no bucket completes within the
  // communicator's timeout.
  double finish();

  const std::vector<GradientBucket>& buckets() const { return buckets_; }
  // Buckets launched before finish() was called in the last step: those the backward overlapped.
  size_t launched_before_finish() const { return launched_before_finish_; }

 private:
  void run_thread();
  void launch_ready_locked();

  std::unique_ptr<Communicator> comm_;
  Collectives coll_;
  float* data_;
  std::vector<GradientBucket> buckets_;
  std::vector<size_t> bucket_of_param_;
  Options options_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false;
  bool stop_ = false;
  std::vector<size_t> pending_;  // per bucket: parameters not yet marked ready
  size_t launched_ = 0;          // buckets handed to the thread (in index order)
  size_t completed_ = 0;         // buckets the thread finished
  size_t launched_before_finish_ = 0;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace rondo
