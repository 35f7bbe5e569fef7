#include "parallelism/cost_model.h"

#include <algorithm>

#include <stdexcept>

namespace rondo {

Recompute recompute_from_name(const std::string& name) {
  if (name == "none") return Recompute::kNone;
  if (name == "full") return Recompute::kFull;
  if (name == "selective") return Recompute::kSelective;
  throw std::invalid_argument("model.recompute_granularity: '" + name +
                              "' is not one of: none, full, selective");
}

double CostModel::forward_flops(const StageLayers& st) const {
  const auto& d = spec_.dims;
  const double b = static_cast<double>(spec_.micro_batch_size), s = static_cast<double>(d.seq_length);
  double flops = b * s * blocks_linear_flops_per_token(d, st.first_layer, st.num_layers) +
                 st.num_layers * b * attention_flops(d, s, s);
  if (st.has_embedding) flops += b * s * embedding_flops_per_token(d);
  if (st.has_lm_head) flops += b * s * lm_head_flops_per_token(d);
  return flops;
}

double CostModel::recompute_flops(const StageLayers& st) const {
  switch (spec_.recompute) {
    case Recompute::kFull:
      return forward_flops(st);
    case Recompute::kSelective: {
      const double s = static_cast<double>(spec_.dims.seq_length);
      return st.num_layers * static_cast<double>(spec_.micro_batch_size) * attention_flops(spec_.dims, s, s);
    }
    case Recompute::kNone:
      break;
  }
  return 0.0;
}

StageCosts CostModel::stage_costs(const std::vector<StageLayers>& stages, double p2p_latency_s,
                                  double p2p_bandwidth_bytes_per_s) const {
  const double rate = spec_.device_flops * spec_.devices_per_stage;
  StageCosts costs;
  for (const auto& st : stages) {
    const double fl = forward_flops(st);
    double moe_layers = 0;
    for (int l = st.first_layer; l < st.first_layer + st.num_layers; ++l)
      moe_layers += spec_.dims.is_moe_layer(l);
    costs.f.push_back(fl / rate + moe_layers * spec_.moe_exchange_forward_s);
    costs.b.push_back((2 * fl + recompute_flops(st)) / rate + moe_layers * spec_.moe_exchange_backward_s);
    costs.w.push_back(fl / rate);
  }
  costs.p2p_latency = p2p_latency_s;
  costs.p2p_bandwidth = p2p_bandwidth_bytes_per_s;
  costs.p2p_bytes = boundary_bytes();
  return costs;
}

double CostModel::parameters(const StageLayers& st) const {
  return static_cast<double>(
      stage_parameters(spec_.dims, st.first_layer, st.num_layers, st.has_embedding, st.has_lm_head));
}

double CostModel::layer_activation_bytes(double tokens) const {
  const double s = static_cast<double>(spec_.dims.seq_length),
               h = static_cast<double>(spec_.dims.hidden_size),
               a = static_cast<double>(spec_.num_attention_heads);
  // Korthikanti et al. count 2-byte values: 34 sbh + 5 a s^2 b; float32 doubles them.
  const double scores = spec_.recompute == Recompute::kSelective ? 0.0 : 5 * a * s / h;
  return tokens * h * (34 + scores) * (kBytesPerValue / 2);
}

double CostModel::moe_mlp_activation_bytes(double tokens) const {
  const auto& d = spec_.dims;
  const double h = static_cast<double>(d.hidden_size), ffn = static_cast<double>(d.ffn_hidden_size);
  const double rows = static_cast<double>(d.moe_topk) * std::min(1.0, spec_.moe_capacity_factor);
  // A row keeps an expert's input, its output (for the gate's product), the gated output (the
  // scatter-add's backward keeps its source) and the expert's hidden activations: GELU's input and
  // output, or SwiGLU's gate, up, activated gate and product.
  const double hidden_widths = d.llama_style ? 4 : 2;
  return tokens * (h + static_cast<double>(d.num_experts) + rows * (3 * h + hidden_widths * ffn)) *
         kBytesPerValue;
}

double CostModel::moe_layer_extra_activation_bytes(double tokens) const {
  const double dense_mlp = tokens * static_cast<double>(spec_.dims.hidden_size) * 18 * (kBytesPerValue / 2);
  return moe_mlp_activation_bytes(tokens) - dense_mlp;
}

int64_t CostModel::moe_layers(const StageLayers& st) const {
  int64_t n = 0;
  for (int64_t l = st.first_layer; l < st.first_layer + st.num_layers; ++l) n += spec_.dims.is_moe_layer(l);
  return n;
}

double CostModel::boundary_bytes() const {
  return static_cast<double>(spec_.micro_batch_size * spec_.dims.seq_length * spec_.dims.hidden_size) *
         kBytesPerValue;
}

double CostModel::key_value_bytes(double tokens) const {
  return 4 * tokens * static_cast<double>(spec_.dims.hidden_size) * kBytesPerValue;
}

}  // namespace rondo
