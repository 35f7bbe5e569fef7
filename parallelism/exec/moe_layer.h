// The mixture-of-experts MLP (model.num_experts): a top-k router sends each token to k of E expert
// MLPs and sums their outputs weighted by the softmax over its k chosen logits (Megatron's default
// routing). Each expert takes at most `capacity` = ceil(capacity_factor * tokens * k / E) of a
// microbatch's assignments, first choices before second ones and tokens in order within a choice
// (GShard's priority); the rest are dropped, so a token whose choices are all dropped leaves the
// MLP with zeros and passes through the block's residual. The Switch/GShard load-balancing loss,
// E * sum_e f_e * P_e (f_e: the share of assignments routed to e before the capacity, P_e: the
// router's mean probability of e), is added to the training objective through the backward only
// (AuxLossInjector: the layer's output is unchanged, its gradient gets coeff * the step's loss
// scale), so pipeline stages need not carry it to the last stage.
//
// Expert parallelism (parallel.expert_model_parallel_size = ep): the ep ranks of an expert group
// hold E / ep experts each (rank i: experts [i E/ep, (i+1) E/ep)); the router is replicated. A
// rank routes its own tokens, sends each expert's rows to the rank holding it (rondo's all-to-all
// over the group, so every connection is timed by the flight recorder), the experts compute, and
// a second all-to-all brings the rows home; the backward exchanges their gradients the same way.
// Both directions are pipelined in chunks (parallelism/exec/expert_pipeline.h, FSMoE), the
// degrees per layer from the runtime.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "parallelism/exec/expert_pipeline.h"

namespace rondo {

class Collectives;

struct MoeOptions {
  int64_t hidden_size = 0;
  int64_t num_experts = 0;
  int64_t topk = 1;
  double capacity_factor = 1.0;
  double aux_loss_coeff = 0.0;
};

// A microbatch's routing of its N tokens.
struct MoeRouting {
  torch::Tensor probs;          // [N, E]: the router's softmax over every expert (P of the loss)
  torch::Tensor token;          // [S] int64: each kept (token, expert) assignment's token, grouped by expert
  torch::Tensor expert;         // [S] int64: its expert, nondecreasing
  torch::Tensor gate;           // [S]: its weight, differentiable in the router's logits
  std::vector<int64_t> routed;  // per expert: assignments before the capacity
  std::vector<int64_t> kept;    // per expert: after it
  int64_t capacity = 0;
};

// An expert's slots in a microbatch of `tokens` tokens.
int64_t expert_capacity(int64_t tokens, const MoeOptions& options);
// Routes logits [N, E] (see the file's comment).
MoeRouting route_tokens(const torch::Tensor& logits, const MoeOptions& options);
// E * sum_e (routed_e / (N k)) * mean_n probs[n, e], differentiable in probs; without the coefficient.
torch::Tensor load_balancing_loss(const MoeRouting& routing, int64_t topk);

// Where a layer's experts live: `group` (ep ranks, null or size 1: this rank holds every expert)
// and a second communicator of the same ranks, `combine`, for the exchanges back (one of each in
// flight while the experts compute).
struct ExpertParallel {
  Collectives* group = nullptr;
  Collectives* combine = nullptr;
  int size = 1;
  int index = 0;
};

// What a run's MoE layers share: the expert group, the scale of the auxiliary loss's gradient,
// and the load they record, summed per layer until taken (once a step).
class MoeRuntime {
 public:
  struct LayerLoad {
    std::vector<int64_t> routed, kept;  // per expert
    double aux_loss = 0;                // coeff * loss, times the loss scale: the step's share
  };
  explicit MoeRuntime(ExpertParallel ep = {}) : ep_(ep) {}

  const ExpertParallel& expert_parallel() const { return ep_; }
  // d(the step's objective) / d(a microbatch's loss): the executor's loss scale (1 / (m dp)).
  void set_loss_scale(double scale) { loss_scale_ = scale; }
  double loss_scale() const { return loss_scale_; }

  // The pipeline's degrees of layer `layer` (set_degrees: every layer's, or one layer's).
  void set_degrees(ExpertDegrees degrees) { degrees_ = degrees; }
  void set_degrees(int64_t layer, ExpertDegrees degrees) { layer_degrees_[layer] = degrees; }
  ExpertDegrees degrees(int64_t layer) const;
  // Work to advance in the gaps of the layers' expert backward (FSMoE's gradient partitioning: the
  // dense gradients' buckets in flight); empty: none.
  void set_backward_gap(std::function<void()> work) { backward_gap_ = std::move(work); }
  const std::function<void()>& backward_gap() const { return backward_gap_; }

  void record(int64_t layer, const MoeRouting& routing, double aux_loss);
  std::map<int64_t, LayerLoad> take_load();

 private:
  ExpertParallel ep_;
  double loss_scale_ = 1.0;
  ExpertDegrees degrees_;
  std::map<int64_t, ExpertDegrees> layer_degrees_;
  std::function<void()> backward_gap_;
  std::mutex mutex_;
  std::map<int64_t, LayerLoad> load_;
};

// One expert: rows [n, hidden] -> [n, hidden]. A family's own MLP (GELU, SwiGLU).
class ExpertMlp : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& rows) = 0;
};
using ExpertFactory = std::function<std::shared_ptr<ExpertMlp>()>;

class MoeMlpImpl : public torch::nn::Module {
 public:
  // Registers "router" and this rank's experts as "expert<e>" (e: the expert's index in the layer),
  // so a checkpoint names an expert the same whichever rank holds it. Null `runtime`: one rank
  // holds every expert, loss scale 1.
  MoeMlpImpl(const MoeOptions& options, int64_t layer, std::shared_ptr<MoeRuntime> runtime,
             const ExpertFactory& make_expert);
  // Hidden states [..., hidden] -> the same shape.
  torch::Tensor forward(const torch::Tensor& x);

  int64_t layer() const { return layer_; }
  int64_t first_expert() const { return first_expert_; }
  // Local expert `l` (what the profiling pass times).
  ExpertMlp& expert(int64_t l) { return *experts_.at(static_cast<size_t>(l)); }
  int64_t local_experts() const { return static_cast<int64_t>(experts_.size()); }

 private:
  // Rows grouped by local expert (counts[l] rows for expert l) -> their outputs, in that order.
  torch::Tensor run_experts(const torch::Tensor& rows, const std::vector<int64_t>& counts);
  // The rows of the expert group: sent to their experts' ranks, computed, and brought back.
  torch::Tensor run_across_group(const torch::Tensor& rows, const std::vector<int64_t>& kept);

  MoeOptions options_;
  int64_t layer_;
  std::shared_ptr<MoeRuntime> runtime_;
  torch::nn::Linear router_{nullptr};
  std::vector<std::shared_ptr<ExpertMlp>> experts_;
  int64_t first_expert_ = 0;
};
TORCH_MODULE(MoeMlp);

// Whether a parameter (model-wide name) belongs to an expert: its gradient is summed over the
// expert's replicas only (the expert-data-parallel group), not the whole data-parallel group.
bool is_expert_parameter(const std::string& name);

}  // namespace rondo
