#include "comms/bucketed_allreduce.h"

#include <chrono>
#include <string>

#include "common/errors.h"

namespace rondo {

BucketedAllreduce::BucketedAllreduce(std::unique_ptr<Communicator> comm, TimingRecorder* recorder, float* data,
                                     std::vector<GradientBucket> buckets, Options options)
    : comm_(std::move(comm)), coll_(*comm_, recorder), data_(data), buckets_(std::move(buckets)), options_(options) {
  coll_.set_emulated_link_bandwidth(options_.emulated_link_bps);
  size_t num_params = 0;
  for (const auto& b : buckets_) {
    for (size_t p : b.params) num_params = std::max(num_params, p + 1);
  }
  bucket_of_param_.assign(num_params, 0);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for (size_t p : buckets_[b].params) bucket_of_param_[p] = b;
  }
  pending_.assign(buckets_.size(), 0);
  completed_ = launched_ = buckets_.size();  // idle until armed
  thread_ = std::thread([this] { run_thread(); });
}

BucketedAllreduce::~BucketedAllreduce() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void BucketedAllreduce::arm() {
  std::lock_guard lock(mu_);
  if (completed_ != buckets_.size()) throw Error("BucketedAllreduce::arm() while a reduction is in flight");
  for (size_t b = 0; b < buckets_.size(); ++b) pending_[b] = buckets_[b].params.size();
  launched_ = completed_ = 0;
  armed_ = true;
  launch_ready_locked();  // buckets without parameters
}

void BucketedAllreduce::mark_ready(size_t param) {
  {
    std::lock_guard lock(mu_);
    if (!armed_ || param >= bucket_of_param_.size()) return;
    auto& pending = pending_[bucket_of_param_[param]];
    if (pending == 0) return;
    --pending;
    if (pending != 0) return;
    launch_ready_locked();
  }
  cv_.notify_all();
}

void BucketedAllreduce::launch_ready_locked() {
  while (launched_ < buckets_.size() && pending_[launched_] == 0) ++launched_;
}

double BucketedAllreduce::finish() {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  std::unique_lock lock(mu_);
  if (!armed_) throw Error("BucketedAllreduce::finish() without arm()");
  launched_before_finish_ = launched_;
  launched_ = buckets_.size();  // parameters that got no gradient still reduce (as zeros)
  armed_ = false;
  cv_.notify_all();
  const auto timeout = std::chrono::duration_cast<clock::duration>(comm_->timeout());
  size_t seen = completed_;
  // Every wait has a deadline: fail when no bucket completes within the communicator's timeout.
  while (completed_ < buckets_.size() && !error_) {
    if (!cv_.wait_for(lock, timeout, [&] { return completed_ != seen || error_; })) {
      throw TimeoutError(comm_->rank(), -1,
                         "gradient bucket " + std::to_string(completed_) + " of " +
                             std::to_string(buckets_.size()) + " did not complete within " +
                             std::to_string(comm_->timeout().count()) + " s");
    }
    seen = completed_;
  }
  if (error_) std::rethrow_exception(error_);
  return std::chrono::duration<double>(clock::now() - t0).count();
}

void BucketedAllreduce::run_thread() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || (completed_ < launched_ && !error_); });
    if (stop_) return;
    const auto& bucket = buckets_[completed_];
    lock.unlock();
    std::exception_ptr failure;
    try {
      float* start = data_ + bucket.offset;
      if (options_.native) {
        coll_.native_allreduce(start, bucket.count, DType::kFloat32, ReduceOp::kSum);
      } else {
        coll_.allreduce(start, bucket.count, DType::kFloat32, ReduceOp::kSum);
      }
    } catch (...) {
      failure = std::current_exception();
    }
    lock.lock();
    if (failure) {
      error_ = failure;
    } else {
      ++completed_;
    }
    cv_.notify_all();
  }
}

}  // namespace rondo
