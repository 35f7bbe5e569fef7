#include "orchestrator/step_prediction.h"

#include <algorithm>
#include <cmath>

#include "parallelism/model_flops.h"
#include "parallelism/model_parameters.h"
#include "pipeline/schedule_simulator.h"

namespace rondo {
namespace {

constexpr double kBytesPerValue = 4.0;      // float32
constexpr double kWeightStateBytes = 16.0;  // weight + gradient + AdamW's two moments, float32
constexpr double kStatelessWeightBytes =
    8.0;  // weight + gradient on a stateless worker (optimizer in host memory)
// Asynchronous pipelines add two weight versions with their gradients for the compute (the
// optimizer's weights and gradient stay) and a correction's update buffer (worker/delayed_update.h).
constexpr double kAsyncExtraWeightBytes = 16.0 + 4.0;

}  // namespace

double stage_parameters(const ModelConfig& m, const StageLayers& st) {
  return static_cast<double>(
      rondo::stage_parameters({m.num_layers, m.hidden_size, m.ffn_hidden_size, m.vocab_size, m.seq_length},
                              st.num_layers, st.has_embedding, st.has_lm_head));
}

std::vector<double> stage_forward_flops(const Config& c, const std::vector<StageLayers>& stages) {
  const auto& m = c.model;
  const GptDims dims{m.num_layers, m.hidden_size, m.ffn_hidden_size, m.vocab_size, m.seq_length};
  const double b = static_cast<double>(c.training.micro_batch_size), s = static_cast<double>(m.seq_length);
  const double block = b * s * block_linear_flops_per_token(dims) + b * attention_flops(dims, s, s);
  std::vector<double> out;
  for (const auto& st : stages) {
    double flops = st.num_layers * block;
    if (st.has_embedding) flops += b * s * embedding_flops_per_token(dims);
    if (st.has_lm_head) flops += b * s * lm_head_flops_per_token(dims);
    out.push_back(flops);
  }
  return out;
}

StageCosts predicted_stage_costs(const Config& c, const std::vector<StageLayers>& stages) {
  const auto flops = stage_forward_flops(c, stages);
  // Tensor and context parallelism split each stage's work over tp*cp devices.
  const double split =
      static_cast<double>(c.parallel.tensor_model_parallel_size * c.parallel.context_parallel_size);
  const double rate = c.pipeline.device_tflops * 1e12 * split;
  // Recomputation reruns, before each backward, the stage's forward (full) or its attention
  // cores (selective: the scores' and probabilities' two batched GEMMs and softmax).
  const auto& m = c.model;
  const double attention_core = 4.0 * static_cast<double>(c.training.micro_batch_size) *
                                static_cast<double>(m.seq_length * m.seq_length * m.hidden_size);
  StageCosts costs;
  for (size_t i = 0; i < flops.size(); ++i) {
    const double fl = flops[i];
    const double recompute = m.recompute_granularity == "full"        ? fl
                             : m.recompute_granularity == "selective" ? stages[i].num_layers * attention_core
                                                                      : 0.0;
    costs.f.push_back(fl / rate);
    costs.b.push_back((2 * fl + recompute) / rate);
    costs.w.push_back(fl / rate);
  }
  costs.p2p_latency = c.pipeline.p2p_latency_s;
  costs.p2p_bandwidth = c.pipeline.p2p_bandwidth_gbps * 1e9;
  costs.p2p_bytes =
      static_cast<double>(c.training.micro_batch_size * c.model.seq_length * c.model.hidden_size) *
      kBytesPerValue;
  return costs;
}

StepPrediction predict_step(const Config& c, const PipelineSchedule& schedule,
                            const std::vector<StageLayers>& stages,
                            const std::vector<StageLayers>& backward_stages) {
  const auto& m = c.model;
  const double b = static_cast<double>(c.training.micro_batch_size), s = static_cast<double>(m.seq_length),
               h = static_cast<double>(m.hidden_size), a = static_cast<double>(m.num_attention_heads);
  const double tp = static_cast<double>(c.parallel.tensor_model_parallel_size),
               split = tp * static_cast<double>(c.parallel.context_parallel_size);
  StepPrediction p;
  p.costs = schedule.derived_costs.empty() ? predicted_stage_costs(c, stages) : schedule.derived_costs;
  if (schedule.chunk_group > 1) {
    // The schedule's microbatches are chunks: a row's chunks share its cost (on average).
    const double share = 1.0 / schedule.chunk_group;
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
  // Activations one layer keeps for its backward (Korthikanti et al. 2022, in 2-byte units there;
  // scaled to float32 here).
  // Selective recomputation drops the attention scores and probabilities (the 5as/h term).
  const bool selective = m.recompute_granularity == "selective", full = m.recompute_granularity == "full";
  const double layer_activation = s * b * h * (34 + (selective ? 0.0 : 5 * a * s / h)) * (kBytesPerValue / 2);
  const double stage_input = s * b * h * kBytesPerValue;
  const auto params_of = [&](const StageLayers& st) { return stage_parameters(m, st); };
  const std::vector<int> stage_rank = schedule.stage_ranks();
  for (int r = 0; r < schedule.pp; ++r) {
    RankPrediction rp;
    rp.pp_rank = r;
    rp.busy_s = result.busy[static_cast<size_t>(r)] / schedule.iterations;
    rp.peak_activations = result.peak_activations[static_cast<size_t>(r)];
    if (schedule.stateless_workers) {
      // A stateless worker holds the running task's stage and the prefetched next one (weights and
      // their gradients; optimizer state stays in host memory) and one task's activations: a
      // backward task keeps its stage's recomputed activations, a forward task one layer's.
      const auto& tasks = schedule.ranks[static_cast<size_t>(r)];
      const auto stage_of = [&](const ComputeAction& t) -> const StageLayers& {
        return t.kind == ComputeKind::kF ? stages[static_cast<size_t>(t.stage)]
                                         : backward_stages[static_cast<size_t>(t.stage)];
      };
      double weights = 0, working = 0;
      for (size_t i = 0; i < tasks.size(); ++i) {
        const double next = i + 1 < tasks.size() ? params_of(stage_of(tasks[i + 1])) : 0.0;
        weights = std::max(weights, params_of(stage_of(tasks[i])) + next);
        const double layers = tasks[i].kind == ComputeKind::kF ? 1.0 : stage_of(tasks[i]).num_layers;
        working = std::max(working, layers * layer_activation);
      }
      rp.weight_bytes = weights * kStatelessWeightBytes / tp;
      rp.activation_bytes = working / split;
    } else {
      double params = 0, layers = 0;
      for (const auto& st : stages) {
        if (stage_rank[static_cast<size_t>(st.index)] != r) continue;
        layers += st.num_layers;
        params += params_of(st);
      }
      rp.weight_bytes = params * (kWeightStateBytes + (schedule.async ? kAsyncExtraWeightBytes : 0.0)) / tp;
      if (c.data.chunk_size > 0) {
        // Chunked training (worker/chunked_microbatch.h): at most K chunks of C tokens keep their
        // activations, their queries attending to up to s keys; every token's keys and values
        // stay for the later chunks, with their gradients. With pipeline parallelism the chunks
        // in flight on this rank (the simulator's peak) may span several rows: each row keeps
        // its K chunks and its keys and values, every other chunk its stage input.
        // A chunk: C tokens of the microbatch (one stage), or of each of its b rows (pipeline).
        const double chunk = static_cast<double>(c.data.chunk_size) * (schedule.chunk_group > 1 ? b : 1.0);
        const double in_flight = schedule.chunk_group > 1 ? std::max(1.0, rp.peak_activations) : 1.0;
        const double rows = std::ceil(in_flight / std::max(1, schedule.chunk_group));
        const double kept_chunks =
            schedule.chunk_group > 1
                ? std::min(static_cast<double>(c.data.chunks_in_memory) * rows, in_flight)
                : static_cast<double>(c.data.chunks_in_memory);
        const double kept = std::min(kept_chunks * chunk, s * b * rows);
        const double kept_layer = kept * h * (34 + (selective ? 0.0 : 5 * a * s / h)) * (kBytesPerValue / 2);
        const double key_values = 4 * s * b * h * kBytesPerValue * rows;
        const double inputs =
            schedule.chunk_group > 1 ? (in_flight - kept_chunks) * chunk * h * kBytesPerValue : 0;
        rp.activation_bytes = (layers * (kept_layer + key_values) + inputs) / split;
      } else if (full) {
        // Each stage in flight keeps its input; one stage's layers at a time are rebuilt.
        const double chunks = std::max(1.0, static_cast<double>(schedule.virtual_stages));
        rp.activation_bytes =
            (rp.peak_activations * chunks * stage_input + layers / chunks * layer_activation) / split;
      } else {
        rp.activation_bytes = rp.peak_activations * layers * layer_activation / split;
      }
    }
    p.ranks.push_back(rp);
  }
  return p;
}

}  // namespace rondo
