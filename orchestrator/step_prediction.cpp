#include "orchestrator/step_prediction.h"

#include <algorithm>
#include <cmath>

#include "orchestrator/model_dims.h"
#include "orchestrator/moe_report.h"
#include "pipeline/schedule_simulator.h"

namespace rondo {
namespace {

constexpr double kWeightStateBytes = 16.0;  // weight + gradient + AdamW's two moments, float32
constexpr double kStatelessWeightBytes =
    8.0;  // weight + gradient on a stateless worker (optimizer in host memory)
// Asynchronous pipelines add two weight versions with their gradients for the compute (the
// optimizer's weights and gradient stay) and a correction's update buffer (worker/delayed_update.h).
constexpr double kAsyncExtraWeightBytes = 16.0 + 4.0;

}  // namespace

CostModel cost_model(const Config& c) {
  const auto& m = c.model;
  // A rank holds num_experts / ep of an MoE layer's experts.
  const GptDims dims = model_dims(m, c.parallel.expert_model_parallel_size);
  const auto moe = moe_exposed_exchange(c);
  return CostModel({.dims = dims,
                    .num_attention_heads = m.num_attention_heads,
                    .micro_batch_size = c.training.micro_batch_size,
                    .recompute = recompute_from_name(m.recompute_granularity),
                    .device_flops = c.pipeline.device_tflops * 1e12,
                    .devices_per_stage = static_cast<double>(c.parallel.tensor_model_parallel_size *
                                                             c.parallel.context_parallel_size),
                    .moe_exchange_forward_s = moe.forward,
                    .moe_exchange_backward_s = moe.backward,
                    .moe_capacity_factor = m.moe_capacity_factor});
}

StageCosts predicted_stage_costs(const Config& c, const std::vector<StageLayers>& stages) {
  return cost_model(c).stage_costs(stages, c.pipeline.p2p_latency_s, c.pipeline.p2p_bandwidth_gbps * 1e9);
}

namespace {

// What the per-rank memory predictions share.
struct MemoryInputs {
  const Config& config;
  const CostModel& costs;
  const PipelineSchedule& schedule;
  const std::vector<StageLayers>& stages;
  const std::vector<StageLayers>& backward_stages;
  double tp, split;  // weights split over tp, activations over tp * cp
};

// A stateless worker holds the running task's stage and the prefetched next one (weights and
// their gradients; optimizer state stays in host memory) and one task's activations: a backward
// task keeps its stage's recomputed activations, a forward task one layer's.
void predict_stateless_memory(const MemoryInputs& in, RankPrediction& rp) {
  const auto& tasks = in.schedule.ranks[static_cast<size_t>(rp.pp_rank)];
  const auto stage_of = [&](const ComputeAction& t) -> const StageLayers& {
    return t.kind == ComputeKind::kF ? in.stages[static_cast<size_t>(t.stage)]
                                     : in.backward_stages[static_cast<size_t>(t.stage)];
  };
  const double layer_activation = in.costs.layer_activation_bytes(
      static_cast<double>(in.config.model.seq_length * in.config.training.micro_batch_size));
  double weights = 0, working = 0;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const double next = i + 1 < tasks.size() ? in.costs.parameters(stage_of(tasks[i + 1])) : 0.0;
    weights = std::max(weights, in.costs.parameters(stage_of(tasks[i])) + next);
    const double layers = tasks[i].kind == ComputeKind::kF ? 1.0 : stage_of(tasks[i]).num_layers;
    working = std::max(working, layers * layer_activation);
  }
  rp.weight_bytes = weights * kStatelessWeightBytes / in.tp;
  rp.activation_bytes = working / in.split;
}

// Chunked training (data/exec/chunked_microbatch.h): at most K chunks of C tokens keep their
// activations, their queries attending to up to s keys; every token's keys and values stay for
// the later chunks, with their gradients. With pipeline parallelism the chunks in flight on this
// rank (the simulator's peak) may span several rows: each row keeps its K chunks and its keys and
// values, every other chunk its stage input.
double chunked_activation_bytes(const MemoryInputs& in, double layers, double peak_activations) {
  const auto& c = in.config;
  const int group = in.schedule.chunk_groups.largest();
  const double b = static_cast<double>(c.training.micro_batch_size),
               s = static_cast<double>(c.model.seq_length);
  // A chunk: C tokens of the microbatch (one stage), or of each of its b rows (pipeline).
  const double chunk = static_cast<double>(c.data.chunk_size) * (group > 1 ? b : 1.0);
  const double in_flight = group > 1 ? std::max(1.0, peak_activations) : 1.0;
  const double rows = std::ceil(in_flight / std::max(1, group));
  const double kept_chunks = group > 1
                                 ? std::min(static_cast<double>(c.data.chunks_in_memory) * rows, in_flight)
                                 : static_cast<double>(c.data.chunks_in_memory);
  const double kept = std::min(kept_chunks * chunk, s * b * rows);
  const double kept_layer = in.costs.layer_activation_bytes(kept);
  const double key_values = in.costs.key_value_bytes(s * b) * rows;
  const double inputs = group > 1 ? (in_flight - kept_chunks) * chunk *
                                        static_cast<double>(c.model.hidden_size) * kBytesPerValue
                                  : 0;
  return (layers * (kept_layer + key_values) + inputs) / in.split;
}

// A rank bound to its stages holds their weights, gradients and optimizer state, and its peak
// in-flight activations.
void predict_bound_memory(const MemoryInputs& in, const std::vector<int>& stage_rank, RankPrediction& rp) {
  double params = 0, layers = 0, moe_layers = 0;
  for (const auto& st : in.stages) {
    if (stage_rank[static_cast<size_t>(st.index)] != rp.pp_rank) continue;
    layers += st.num_layers;
    moe_layers += static_cast<double>(in.costs.moe_layers(st));
    params += in.costs.parameters(st);
  }
  rp.weight_bytes = params * (kWeightStateBytes + (in.schedule.async ? kAsyncExtraWeightBytes : 0.0)) / in.tp;
  const double layer_activation = in.costs.layer_activation_bytes(
      static_cast<double>(in.config.model.seq_length * in.config.training.micro_batch_size));
  if (in.config.data.chunk_size > 0) {
    rp.activation_bytes = chunked_activation_bytes(in, layers, rp.peak_activations);
  } else if (in.costs.spec().recompute == Recompute::kFull) {
    // Each stage in flight keeps its input; one stage's layers at a time are rebuilt.
    const double chunks = std::max(1.0, static_cast<double>(in.schedule.virtual_stages));
    rp.activation_bytes =
        (rp.peak_activations * chunks * in.costs.boundary_bytes() + layers / chunks * layer_activation) /
        in.split;
  } else {
    // MoE is refused with chunking and full recomputation: only here do its blocks differ.
    const double tokens =
        static_cast<double>(in.config.model.seq_length * in.config.training.micro_batch_size);
    rp.activation_bytes =
        rp.peak_activations *
        (layers * layer_activation + moe_layers * in.costs.moe_layer_extra_activation_bytes(tokens)) /
        in.split;
  }
}

}  // namespace

StepPrediction predict_step(const Config& c, const PipelineSchedule& schedule,
                            const std::vector<StageLayers>& stages,
                            const std::vector<StageLayers>& backward_stages) {
  const CostModel costs = cost_model(c);
  const double tp = static_cast<double>(c.parallel.tensor_model_parallel_size);
  const MemoryInputs memory{c,
                            costs,
                            schedule,
                            stages,
                            backward_stages,
                            tp,
                            tp * static_cast<double>(c.parallel.context_parallel_size)};
  StepPrediction p;
  p.costs = schedule.derived_costs.empty() ? predicted_stage_costs(c, stages) : schedule.derived_costs;
  if (schedule.chunk_groups.largest() > 1) {
    // The schedule's microbatches are chunks: a row's chunks share its cost (on average).
    const double share = 1.0 / schedule.chunk_groups.largest();
    for (auto* v : {&p.costs.f, &p.costs.b, &p.costs.w, &p.costs.b_lead}) {
      for (double& x : *v) x *= share;
    }
    p.costs.p2p_bytes *= share;
  }
  const auto result = simulate_schedule(schedule, p.costs);

  p.step_time_s = result.makespan;
  p.bubble_fraction = result.bubble_fraction;
  if (schedule.iterations > 1) {
    // A stream of iterations (asynchronous): one step is an iteration of its steady state.
    p.step_time_s = steady_state_iteration_time(schedule, result);
    p.bubble_fraction = steady_state_bubble(schedule, result);
  }
  p.exposed_comm_s = result.exposed_comm / schedule.iterations;
  const std::vector<int> stage_rank = schedule.stage_ranks();
  for (int r = 0; r < schedule.pp; ++r) {
    RankPrediction rp;
    rp.pp_rank = r;
    rp.busy_s = result.busy[static_cast<size_t>(r)] / schedule.iterations;
    rp.peak_activations = result.peak_activations[static_cast<size_t>(r)];
    if (schedule.stateless_workers) {
      predict_stateless_memory(memory, rp);
    } else {
      predict_bound_memory(memory, stage_rank, rp);
    }
    p.ranks.push_back(rp);
  }
  return p;
}

}  // namespace rondo
