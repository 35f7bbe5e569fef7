#include "orchestrator/model_dims.h"

#include <algorithm>

namespace rondo {

namespace {

// The family's block shape: Llama-style (llama, qwen2, qwen3) or GPT's.
void set_family(GptDims& d, const std::string& family) {
  d.llama_style = family == "llama" || family == "qwen2" || family == "qwen3";
  d.qk_norm = family == "qwen3";
  d.qkv_bias = family == "qwen2";
}

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
  set_family(d, m.family);
  d.num_attention_heads = std::max<int64_t>(1, m.num_attention_heads);
  d.num_query_groups = m.num_query_groups > 0 ? m.num_query_groups : d.num_attention_heads;
  d.head_size = m.kv_channels;
  d.tied_embeddings = m.tie_embeddings;
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
  set_family(d, m.family());
  d.num_attention_heads = std::max(1u, m.num_attention_heads());
  d.num_query_groups = m.num_query_groups() > 0 ? m.num_query_groups() : d.num_attention_heads;
  d.head_size = m.kv_channels();
  d.tied_embeddings = m.tie_embeddings();
  return d;
}

}  // namespace rondo
