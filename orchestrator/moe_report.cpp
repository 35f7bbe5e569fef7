#include "orchestrator/moe_report.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>

#include "common/errors.h"
#include "parallelism/moe_cost.h"

namespace rondo {

namespace {

MoeCosts costs_of(const Config& c) {
  if (!c.moe.cost_file.empty()) {
    std::ifstream in(c.moe.cost_file);
    if (!in) throw ConfigError("moe.cost_file", "cannot read " + c.moe.cost_file);
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception& e) {
      throw ConfigError("moe.cost_file", c.moe.cost_file + " is not JSON: " + e.what());
    }
    auto costs = MoeCosts::from_json(j, "moe.cost_file");
    costs.source = c.moe.cost_file + (costs.source.empty() ? "" : " (" + costs.source + ")");
    return costs;
  }
  const auto& p = c.pipeline;
  return {.alltoall = {p.p2p_latency_s, 8.0 / (p.p2p_bandwidth_gbps * 1e9)},
          .expert = {0.0, 1.0 / (p.device_tflops * 1e12)},
          .expert_backward = {0.0, 2.0 / (p.device_tflops * 1e12)},
          .source = "config: pipeline.device_tflops, pipeline.p2p_latency_s, pipeline.p2p_bandwidth_gbps"};
}

// One MoE layer's expert part on one rank per microbatch.
MoeLayerWork layer_work(const Config& c) {
  const auto& m = c.model;
  const int64_t ep = c.parallel.expert_model_parallel_size;
  const double tokens = static_cast<double>(c.training.micro_batch_size * m.seq_length);
  return moe_layer_work(tokens, m.moe_router_topk, m.moe_capacity_factor, m.hidden_size, m.ffn_hidden_size,
                        m.num_experts, static_cast<int>(ep));
}

}  // namespace

MoeExchangeSeconds moe_exposed_exchange(const Config& c) {
  if (c.model.num_experts == 0 || c.parallel.expert_model_parallel_size <= 1) return {};
  const auto costs = costs_of(c);
  const auto work = layer_work(c);
  const auto choice = choose_moe_degrees(costs, work);
  const int64_t forward_key = moe_degree(c.moe.a2a_overlap_degree, "moe.a2a_overlap_degree");
  const int64_t backward_key = moe_degree(c.moe.bwd_degree, "moe.bwd_degree");
  const int forward = forward_key > 0 ? static_cast<int>(forward_key) : choice.forward;
  const int backward = backward_key > 0 ? static_cast<int>(backward_key) : choice.backward;
  const int atoms = std::lcm(forward, backward);
  auto alone = work;
  alone.members = 1;  // the same experts' compute, nothing exchanged
  return {predict_expert_pipeline(costs, work, forward, false, atoms) -
              predict_expert_pipeline(costs, alone, 1, false),
          predict_expert_pipeline(costs, work, backward, true, atoms) -
              predict_expert_pipeline(costs, alone, 1, true)};
}

nlohmann::json moe_layers_report(const Config& c) {
  const auto& m = c.model;
  const auto costs = costs_of(c);
  const auto work = layer_work(c);
  const auto choice = choose_moe_degrees(costs, work);
  const int64_t forward = moe_degree(c.moe.a2a_overlap_degree, "moe.a2a_overlap_degree");
  const int64_t backward = moe_degree(c.moe.bwd_degree, "moe.bwd_degree");
  nlohmann::json layers = nlohmann::json::array();
  for (int64_t layer = 0; layer < m.num_layers; layer += m.moe_layer_freq) {
    nlohmann::json predictions, fwd, bwd;
    for (int d : moe_degree_candidates()) {
      const auto key = std::to_string(d);
      predictions[key] = choice.forward_s.at(d) + choice.backward_s.at(d);
      fwd[key] = choice.forward_s.at(d);
      bwd[key] = choice.backward_s.at(d);
    }
    layers.push_back({{"layer", layer},
                      {"degree_predictions", predictions},
                      {"forward_s", fwd},
                      {"backward_s", bwd},
                      {"chosen_degree", forward > 0 ? forward : choice.forward},
                      {"chosen_bwd_degree", backward > 0 ? backward : choice.backward}});
  }
  return {{"layers", layers},
          {"rows_per_microbatch", work.rows},
          {"local_experts", work.local_experts},
          {"costs", costs.to_json()}};
}

std::string moe_layers_text(const nlohmann::json& r) {
  std::ostringstream out;
  const auto& layers = r.at("layers");
  out << "MoE layers (" << layers.size() << ", " << r.at("local_experts").get<int64_t>()
      << " experts per rank, " << r.at("rows_per_microbatch").get<double>()
      << " assignments sent per microbatch): predicted expert pipeline, forward + backward\n";
  if (!layers.empty()) {
    const auto& first = layers.front();
    out << "  degree:";
    const auto& predictions = first.at("degree_predictions");
    for (int d : moe_degree_candidates()) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%s %d: %.3g ms", d % 8 == 1 && d > 1 ? "\n         " : " ", d,
                    predictions.at(std::to_string(d)).get<double>() * 1e3);
      out << buf;
    }
    out << "\n  chosen: forward " << first.at("chosen_degree").get<int64_t>() << ", backward "
        << first.at("chosen_bwd_degree").get<int64_t>() << " (every MoE layer alike)\n";
  }
  out << "  costs: " << r.at("costs").at("source").get<std::string>() << "\n";
  return out.str();
}

}  // namespace rondo
