// BucketedAllreduce: sums a flat float32 gradient buffer over a group bucket by bucket, starting
// each bucket as soon as its gradients are final, so that communication overlaps the rest of the
// backward pass (PyTorch DDP's reducer, on rondo's comms and timing recorder).
//
// There is no communication thread: the backward's own thread advances the buckets in flight each
// time it reports a gradient (mark_ready, called from autograd hooks), and finish() drives the
// rest. On a machine whose cores all compute, a thread would have to preempt the compute to make
// progress; here progress costs a few MPI_Test calls between gradient kernels, and a slow link's
// transfer time passes while the backward computes.
//
// Call order, once per step: arm() before the backward that finalises the gradients;
// mark_ready(param) as each parameter's gradient becomes final; finish() after that backward: it
// starts every bucket not yet started, waits for all and returns the seconds it waited (the
// communication the backward did not hide). Buckets start strictly in index order, one at a time
// on the reducer's own communicator, so collectives match across ranks whatever order the
// gradients arrive in. mark_ready() outside arm()..finish() is ignored (gradient accumulation), and
// marking a parameter twice in one step counts once.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "comms/collectives.h"
#include "comms/communicator.h"
#include "comms/gradient_buckets.h"
#include "comms/timing_recorder.h"

namespace rondo {

class BucketedAllreduce {
 public:
  struct Options {
    bool native = false;           // the library's allreduce instead of rondo's ring
    double emulated_link_bps = 0;  // Collectives::set_emulated_link_bandwidth
    std::string group;             // Collectives::set_group: the recorder's name for its collectives
    std::vector<int> world_ranks;
    std::vector<int> ring_order;  // Collectives::set_ring_order
  };

  // `comm` is owned and used by nothing else (split it off the group's communicator); `data` must
  // hold the buckets' elements and outlive this object; `recorder` may be null.
  BucketedAllreduce(std::unique_ptr<Communicator> comm, TimingRecorder* recorder, float* data,
                    std::vector<GradientBucket> buckets, Options options);

  void arm();
  // Another ring order (Collectives::set_ring_order) from the next arm() on; throws Error while a
  // reduction is in flight.
  void set_ring_order(std::vector<int> order);
  // Never throws (it runs inside autograd): a communication error is kept for finish().
  void mark_ready(size_t param) noexcept;
  // Advances the bucket in flight (and starts the ready ones) between pieces of other compute, e.g.
  // in the gaps of an MoE layer's expert backward; nothing outside arm()..finish(). Never throws.
  void progress() noexcept;
  // Throws the first communication error, or TimeoutError when a bucket makes no progress within
  // the communicator's timeout.
  double finish();

  const std::vector<GradientBucket>& buckets() const { return buckets_; }
  // Of the last step: buckets started, and buckets complete, before finish() was called.
  size_t started_before_finish() const { return started_before_finish_; }
  size_t completed_before_finish() const { return completed_before_finish_; }

 private:
  // Starts ready buckets in order and advances the one in flight, without blocking.
  void advance();
  // Moves startable_ past every bucket whose parameters are all ready.
  void extend_startable();
  void start_next();

  std::unique_ptr<Communicator> comm_;
  Collectives coll_;
  float* data_;
  std::vector<GradientBucket> buckets_;
  std::vector<size_t> bucket_of_param_;
  Options options_;

  bool armed_ = false;
  std::vector<size_t> pending_;  // per bucket: parameters not yet marked ready
  std::vector<bool> ready_;      // per parameter: marked ready this step
  size_t startable_ = 0;         // buckets [0, startable_) may start
  size_t started_ = 0;           // buckets [0, started_) have started; started_ - 1 may be in flight
  size_t completed_ = 0;
  std::unique_ptr<PendingCollective> in_flight_;
  size_t started_before_finish_ = 0;
  size_t completed_before_finish_ = 0;
  std::exception_ptr error_;
};

}  // namespace rondo
