#include "comms/bucketed_allreduce.h"

#include <chrono>

#include "common/errors.h"

namespace rondo {

BucketedAllreduce::BucketedAllreduce(std::unique_ptr<Communicator> comm, TimingRecorder* recorder,
                                     float* data, std::vector<GradientBucket> buckets, Options options)
    : comm_(std::move(comm)),
      coll_(*comm_, recorder),
      data_(data),
      buckets_(std::move(buckets)),
      options_(options) {
  coll_.set_emulated_link_bandwidth(options_.emulated_link_bps);
  coll_.set_group(options_.group, options_.world_ranks);
  coll_.set_ring_order(options_.ring_order);
  size_t num_params = 0;
  for (const auto& b : buckets_) {
    for (size_t p : b.params) num_params = std::max(num_params, p + 1);
  }
  bucket_of_param_.assign(num_params, 0);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for (size_t p : buckets_[b].params) bucket_of_param_[p] = b;
  }
  pending_.assign(buckets_.size(), 0);
}

void BucketedAllreduce::set_ring_order(std::vector<int> order) {
  if (armed_ || in_flight_) throw Error("BucketedAllreduce::set_ring_order() while a reduction is in flight");
  coll_.set_ring_order(order);
  options_.ring_order = std::move(order);
}

void BucketedAllreduce::arm() {
  if (armed_ || in_flight_) throw Error("BucketedAllreduce::arm() while a reduction is in flight");
  for (size_t b = 0; b < buckets_.size(); ++b) pending_[b] = buckets_[b].params.size();
  ready_.assign(bucket_of_param_.size(), false);
  startable_ = started_ = completed_ = 0;
  error_ = nullptr;
  armed_ = true;
  extend_startable();  // buckets without parameters
}

void BucketedAllreduce::extend_startable() {
  while (startable_ < buckets_.size() && pending_[startable_] == 0) ++startable_;
}

void BucketedAllreduce::mark_ready(size_t param) noexcept {
  if (!armed_ || error_ || param >= bucket_of_param_.size() || ready_[param]) return;
  ready_[param] = true;
  try {
    const size_t b = bucket_of_param_[param];
    if (pending_[b] > 0 && --pending_[b] == 0) extend_startable();
    advance();
  } catch (...) {
    error_ = std::current_exception();
  }
}

void BucketedAllreduce::progress() noexcept {
  if (!armed_ || error_) return;
  try {
    advance();
  } catch (...) {
    error_ = std::current_exception();
  }
}

void BucketedAllreduce::start_next() {
  auto& b = buckets_[started_++];
  float* start = data_ + b.offset;
  in_flight_ = options_.native ? coll_.start_native_allreduce(start, b.count, DType::kFloat32, ReduceOp::kSum)
                               : coll_.start_allreduce(start, b.count, DType::kFloat32, ReduceOp::kSum);
}

void BucketedAllreduce::advance() {
  for (;;) {
    if (in_flight_) {
      if (!in_flight_->progress()) return;
      in_flight_.reset();
      ++completed_;
    }
    if (started_ >= startable_) return;
    start_next();
  }
}

double BucketedAllreduce::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  if (!armed_) throw Error("BucketedAllreduce::finish() without arm()");
  armed_ = false;
  started_before_finish_ = started_;
  completed_before_finish_ = completed_;
  if (error_) std::rethrow_exception(error_);
  startable_ = buckets_.size();  // parameters that got no gradient still reduce (as zeros)
  while (completed_ < buckets_.size()) {
    if (!in_flight_) start_next();
    in_flight_->wait();
    in_flight_.reset();
    ++completed_;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace rondo
