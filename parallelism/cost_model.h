// CostModel: what each op of the model costs — FLOPs, seconds on the configured device, bytes of
// weights, activations and transfers — the one place the planner's step prediction, the
// simulator's stage costs, RoundPipe's partitioner, the chunk planner and the executor's emulated
// compute (through the plan's predicted durations) take them from. FLOPs come from model_flops.h,
// parameter counts from model_parameters.h; activations are Korthikanti et al.'s per-layer size
// (2022), float32.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallelism/model_flops.h"
#include "parallelism/model_parameters.h"
#include "pipeline/pipeline_schedule.h"
#include "pipeline/stage_costs.h"

namespace rondo {

// What a stage keeps from its forward for its backward (model.recompute_granularity).
enum class Recompute { kNone, kFull, kSelective };
// "none" | "full" | "selective"; throws std::invalid_argument naming model.recompute_granularity.
Recompute recompute_from_name(const std::string& name);

struct CostModelSpec {
  GptDims dims;
  int64_t num_attention_heads = 1;
  int64_t micro_batch_size = 1;
  Recompute recompute = Recompute::kNone;
  double device_flops = 1e12;    // per second, of one device
  double devices_per_stage = 1;  // tp * cp: each stage's work splits over them
  // Expert parallelism: the seconds an MoE block's all-to-alls add to a microbatch's forward and
  // backward beyond its compute (exposed by the expert pipeline; parallelism/moe_cost.h).
  double moe_exchange_forward_s = 0, moe_exchange_backward_s = 0;
  double moe_capacity_factor = 1;  // an expert's slots: factor * tokens * topk / experts
};

inline constexpr double kBytesPerValue = 4.0;  // float32

class CostModel {
 public:
  explicit CostModel(CostModelSpec spec) : spec_(spec) {}

  // Forward FLOPs of one microbatch through `stage` (embedding and LM head included).
  double forward_flops(const StageLayers& stage) const;
  // FLOPs the stage's backward reruns first: its whole forward (full), its attention cores
  // (selective: the scores' and probabilities' two batched GEMMs and softmax), or none.
  double recompute_flops(const StageLayers& stage) const;
  // Seconds of each stage's forward, backward (twice the forward, plus the recomputation) and
  // weight-gradient part, on the device split over tp * cp; p2p transfers from the arguments.
  StageCosts stage_costs(const std::vector<StageLayers>& stages, double p2p_latency_s,
                         double p2p_bandwidth_bytes_per_s) const;

  double parameters(const StageLayers& stage) const;
  // Activations one layer keeps for its backward over `tokens` tokens whose queries attend to
  // seq_length keys (the attention scores and probabilities, 5as/h, dropped by selective
  // recomputation), on one device (tp * cp split it further).
  double layer_activation_bytes(double tokens) const;
  // What an MoE block keeps beyond that (negative when it keeps less): its MLP's activations are
  // its rows' — every token's top-k assignments within the capacity, each an expert's input, its
  // hidden activations, its output and the gated output — and the router's probabilities, in place
  // of the dense MLP's (Korthikanti's 18 of the 34).
  double moe_layer_extra_activation_bytes(double tokens) const;
  // The MoE MLP's own: the input, the router's probabilities and the rows'.
  double moe_mlp_activation_bytes(double tokens) const;
  // MoE blocks among `stage`'s layers.
  int64_t moe_layers(const StageLayers& stage) const;
  // One microbatch's hidden states: a stage boundary's transfer, or the input full recomputation keeps.
  double boundary_bytes() const;
  // Keys and values (with their gradients) of `tokens` tokens, one layer.
  double key_value_bytes(double tokens) const;

  const CostModelSpec& spec() const { return spec_; }

 private:
  CostModelSpec spec_;
};

}  // namespace rondo
