#include "orchestrator/model_dims.h"

#include <algorithm>

namespace rondo {

namespace {

bool llama_style(const std::string& family) { return family == "llama" || family == "qwen3"; }

}  // namespace

GptDims model_dims(const ModelConfig& m, int64_t expert_parallel) {
  GptDims d{m.num_layers,
            m.hidden_size,
            m.ffn_hidden_size,
            m.vocab_size,
            m.seq_length,
            m.num_experts,
            m.num_experts / std::max<int64_t>(1, expert_parallel),
            std::max<int64_t>(1, m.moe_router_topk),
            std::max<int64_t>(1, m.moe_layer_freq)};
  d.llama_style = llama_style(m.family);
  d.qk_norm = m.family == "qwen3";
  d.num_attention_heads = std::max<int64_t>(1, m.num_attention_heads);
  d.num_query_groups = m.num_query_groups > 0 ? m.num_query_groups : d.num_attention_heads;
  d.head_size = m.kv_channels;
  return d;
}

GptDims model_dims(const plan::ModelSpec& m, int64_t expert_parallel) {
  const auto& moe = m.moe();
  GptDims d{m.num_layers(),
            m.hidden_size(),
            m.ffn_hidden_size(),
            m.vocab_size(),
            m.seq_length(),
            moe.num_experts(),
            moe.num_experts() / std::max<int64_t>(1, expert_parallel),
            std::max(1u, moe.router_topk()),
            std::max(1u, moe.layer_freq())};
  d.llama_style = llama_style(m.family());
  d.qk_norm = m.family() == "qwen3";
  d.num_attention_heads = std::max(1u, m.num_attention_heads());
  d.num_query_groups = m.num_query_groups() > 0 ? m.num_query_groups() : d.num_attention_heads;
  d.head_size = m.kv_channels();
  return d;
}

}  // namespace rondo
