#include "worker/gradient_reduction.h"

#include <torch/csrc/autograd/utils/lambda_post_hook.h>

#include <fmt/format.h>

#include "comms/gradient_buckets.h"
#include "data/exec/chunked_microbatch.h"
#include "parallelism/exec/expert_pipeline.h"
#include "pipeline/exec/weight_grad_store.h"
#include "proto/plan.pb.h"
#include "worker/metrics_writer.h"

namespace rondo {

namespace {

// DDP's small first bucket: communication starts as soon as the last layers' gradients are final.
constexpr double kFirstBucketMb = 1.0;

size_t mib(double mb) { return static_cast<size_t>(mb * 1024 * 1024); }

// The parameters a reduction sums (trained ones only: LoRA freezes all but its adapters), in
// model order.
std::vector<torch::Tensor> included(const StagedModel& model, const GradientReduction::Include& include) {
  std::vector<torch::Tensor> out;
  for (const auto& item : model->named_parameters()) {
    if (item.value().requires_grad() && (!include || include(item.key()))) out.push_back(item.value());
  }
  return out;
}

// Each parameter's stage, by the identity of its tensor.
std::map<const void*, int> stage_of(const StagedModel& model) {
  std::map<const void*, int> out;
  for (const auto& st : model->stages()) {
    for (const auto& p : model->stage_parameters(st.index)) out[p.unsafeGetTensorImpl()] = st.index;
  }
  return out;
}

}  // namespace

GradientReduction::GradientReduction(const plan::CommsSpec& c, Collectives& dp, TimingRecorder* recorder,
                                     bool host_buffers, std::vector<Source> sources, const Include& include)
    : dp_(dp), native_(c.allreduce() == plan::ALLREDUCE_KIND_NATIVE || !host_buffers) {
  if (!c.overlap_grad_reduce() || dp.comm().size() == 1 || sources.empty()) return;
  const auto& first = sources.front().model;
  std::vector<size_t> elements;
  for (const auto& p : included(first, include)) elements.push_back(static_cast<size_t>(p.numel()));
  const auto stages = stage_of(first);
  for (const auto& st : first->stages()) stage_params_[st.index];  // a stage may train nothing
  size_t index = 0;
  for (const auto& p : included(first, include))
    stage_params_[stages.at(p.unsafeGetTensorImpl())].push_back(index++);
  for (auto& [source, grads] : sources) {
    auto buckets = plan_gradient_buckets(elements, 1, sizeof(float), mib(c.bucket_size_mb()),
                                         mib(std::min(c.bucket_size_mb(), kFirstBucketMb)));
    // Its own communicator: buckets in flight never match messages of other collectives.
    std::vector<int> all(static_cast<size_t>(dp.comm().size()));
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
    BucketedAllreduce::Options options;
    options.native = native_;
    options.emulated_link_bps = c.emulated_link_gbps() * 1e9;
    options.group = "grads" + std::to_string(reducers_.size()) + "_" + dp.group().name;
    options.world_ranks = dp.group().world_ranks;
    options.ring_order = dp.ring_order();
    auto* into =
        reducers_
            .emplace_back(std::make_unique<BucketedAllreduce>(
                dp.comm().split(all), recorder, grads.data_ptr<float>(), std::move(buckets), options))
            .get();
    const auto source_stage = stage_of(source);
    index = 0;
    for (auto& p : included(source, include)) {
      const int stage = source_stage.at(p.unsafeGetTensorImpl());
      auto accumulator = torch::autograd::impl::grad_accumulator(p);
      // A gradient counts as final only in its stage's last backward of the step (earlier ones
      // accumulate). Under a split backward (I) the linear layers' gradients come later, in W, so
      // hooks mark nothing then; after_backward() marks the stage's parameters once W is done. A
      // chunked microbatch's chunks each add to every gradient and run inside its forward: none of
      // them counts; after_backward() marks the stage's parameters. An MoE layer's pipelined expert
      // backward adds to its experts' gradients once per piece: only the last piece counts.
      accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
          [this, into, index, stage](const torch::autograd::variable_list& outputs,
                                     const torch::autograd::variable_list&) {
            if (final_backward_[stage] && !WeightGradStore::active() &&
                !ChunkedMicrobatch::partial_gradients() && !expert_gradients_partial())
              into->mark_ready(index);
            return outputs;
          }));
      accumulators_.push_back(std::move(accumulator));
      ++index;
    }
  }
}

void GradientReduction::before_backward(int version, int stage, bool last) {
  if (reducers_.empty() || !last) return;
  // The reducer is armed at the first stage's last backward; earlier (accumulating) backwards
  // send nothing.
  if (!armed_) {
    reducers_.at(static_cast<size_t>(version))->arm();
    armed_ = true;
  }
  final_backward_[stage] = true;
}

void GradientReduction::after_backward(int version, int stage, bool last) {
  if (reducers_.empty() || !last) return;
  auto& reducer = *reducers_.at(static_cast<size_t>(version));
  for (size_t index : stage_params_.at(stage)) reducer.mark_ready(index);
}

void GradientReduction::progress() {
  for (auto& reducer : reducers_) reducer->progress();  // an unarmed reducer does nothing
}

void GradientReduction::reduce(int version, const torch::Tensor& grads) {
  if (!reducers_.empty()) {
    auto& reducer = *reducers_.at(static_cast<size_t>(version));
    if (!armed_) reducer.arm();  // a rank with no backward of its own this step
    reducer.finish();
    armed_ = false;
    for (auto& [stage, on] : final_backward_) on = false;
  } else if (native_) {
    dp_.native_allreduce(grads.data_ptr(), static_cast<size_t>(grads.numel()), DType::kFloat32,
                         ReduceOp::kSum);
  } else {
    dp_.allreduce(grads.data_ptr(), static_cast<size_t>(grads.numel()), DType::kFloat32, ReduceOp::kSum);
  }
}

void GradientReduction::set_ring_order(const std::vector<int>& order) {
  for (auto& reducer : reducers_) reducer->set_ring_order(order);
}

std::string GradientReduction::describe() const {
  if (reducers_.empty()) return "";
  std::string sizes;
  for (const auto& b : reducers_.front()->buckets()) {
    sizes += fmt::format("{}{:.2f}", sizes.empty() ? "" : ", ", static_cast<double>(b.count * 4) / (1 << 20));
  }
  return fmt::format("{} bucket(s) of [{}] MiB{}", reducers_.front()->buckets().size(), sizes,
                     reducers_.size() > 1 ? " (per weight version)" : "");
}

void GradientReduction::add_metrics(MetricsWriter& metrics,
                                    std::function<int(int64_t step)> version_of) const {
  if (reducers_.empty()) return;
  metrics.add_fields(
      [this, version_of = std::move(version_of)](const MetricsWriter::Step& r, nlohmann::json& row) {
        const auto& reducer = *reducers_.at(static_cast<size_t>(version_of(r.step)));
        row["grad_buckets"] = reducer.buckets().size();
        row["grad_buckets_started_in_backward"] = reducer.started_before_finish();
        row["grad_buckets_done_in_backward"] = reducer.completed_before_finish();
      });
}

}  // namespace rondo
