// GradientReduction: how a rank's gradients are summed over its data-parallel group each step,
// for workers bound to their stages (stateless workers reduce their owned stages themselves).
//   overlapped (comms.overlap_grad_reduce, more than one rank): DDP-style post-hooks on the
//     parameters' gradient accumulators mark each gradient final in its stage's last backward of
//     the step; full buckets start at once and advance while the backward runs;
//   otherwise: one allreduce of the flat gradients after the backward (rondo's ring, or the
//     library's: comms.allreduce native, or device buffers).
// An asynchronous run computes on two weight versions, each with its gradients: one reducer per
// version, `version` picking it in every call.
// Call order per step: before_backward/after_backward around each backward the executor runs,
// then reduce() at the plan's ALLREDUCE.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "comms/bucketed_allreduce.h"
#include "comms/collectives.h"
#include "worker/staged_model.h"

namespace rondo {

namespace plan {
class CommsSpec;
}
class MetricsWriter;

class GradientReduction {
 public:
  // A model whose backwards produce gradients into `grads`: the included parameters' gradients,
  // back to back in model order.
  struct Source {
    StagedModel model;
    torch::Tensor grads;
  };
  // Which parameters (by model-wide name) a reduction sums; empty: all of them.
  using Include = std::function<bool(const std::string& name)>;
  // `dp` (over the data-parallel group) must outlive this; so must the sources' models, whose
  // gradient accumulators carry the hooks (build this after a checkpoint load replaced them).
  // `host_buffers`: whether the communicator reads host memory (otherwise the library's allreduce).
  // `include`: the experts' gradients over their own group, the rest over the data-parallel one.
  GradientReduction(const plan::CommsSpec& comms, Collectives& dp, TimingRecorder* recorder,
                    bool host_buffers, std::vector<Source> sources, const Include& include = {});

  bool overlapped() const { return !reducers_.empty(); }
  void before_backward(int version, int stage, bool last);
  void after_backward(int version, int stage, bool last);
  // Advances the buckets in flight without blocking (the gaps of an MoE layer's expert backward:
  // FSMoE's gradient partitioning); nothing when not overlapped.
  void progress();
  // Sums `grads` (version `version`'s) over the group: finishes the buckets, or reduces in one go.
  void reduce(int version, const torch::Tensor& grads);
  // The group's ring (Collectives::set_ring_order) from the next step on, for every version; call
  // between steps. The one-go reduction reads `dp`'s, which its owner sets.
  void set_ring_order(const std::vector<int>& order);
  // The buckets' sizes, for the log ("" when not overlapped).
  std::string describe() const;
  // Rows of the metrics get the buckets of their step's reducer (`version_of(step)`).
  void add_metrics(MetricsWriter& metrics, std::function<int(int64_t step)> version_of) const;

 private:
  Collectives& dp_;
  bool native_;
  std::vector<std::unique_ptr<BucketedAllreduce>> reducers_;          // one per source when overlapped
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // holding the hooks
  std::map<int, std::vector<size_t>> stage_params_;                   // per stage: its parameters' indices
  // Per stage: whether its last backward of the step is running (only then are gradients final).
  std::map<int, bool> final_backward_;
  bool armed_ = false;
};

}  // namespace rondo
