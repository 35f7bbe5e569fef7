#include "parallelism/model_parameters.h"

#include <algorithm>

namespace rondo {

const std::vector<std::string>& planned_model_families() {
  static const std::vector<std::string> families{"gpt", "llama", "qwen2", "qwen3"};
  return families;
}

int64_t block_parameters(const GptDims& d, int64_t layer) {
  const int64_t h = d.hidden_size, f = d.ffn_hidden_size, rows = d.qkv_rows();
  const int64_t head = d.head(), width = d.attention_width();
  // QKV (qwen2: with biases) and output projection; MLP; the block's norms (and qwen3's on queries
  // and keys)
  const int64_t attention =
      d.llama_style ? h * rows + (d.qkv_bias ? rows : 0) + width * h : h * rows + rows + h * h + h;
  const int64_t mlp = d.llama_style ? 3 * h * f : h * f + f + f * h + h;
  const int64_t norms = (d.llama_style ? 2 * h : 2 * 2 * h) + (d.qk_norm ? 2 * head : 0);
  if (d.is_moe_layer(layer)) return attention + h * d.num_experts + d.experts_held * mlp + norms;
  return attention + mlp + norms;
}

int64_t stage_parameters(const GptDims& d, int64_t first_layer, int64_t layers, bool embedding,
                         bool lm_head) {
  int64_t params = 0;
  for (int64_t l = first_layer; l < first_layer + layers; ++l) params += block_parameters(d, l);
  if (embedding) params += (d.vocab_size + (d.llama_style ? 0 : d.seq_length)) * d.hidden_size;
  // head matrix (the embedding's, tied), final norm
  if (lm_head)
    params += (embedding && d.tied_embeddings ? 0 : d.vocab_size * d.hidden_size) +
              (d.llama_style ? 1 : 2) * d.hidden_size;
  return params;
}

int64_t model_parameters(const GptDims& d) { return stage_parameters(d, 0, d.num_layers, true, true); }

}  // namespace rondo
