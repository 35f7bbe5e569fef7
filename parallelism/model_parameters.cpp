#include "parallelism/model_parameters.h"

namespace rondo {

const std::vector<std::string>& planned_model_families() {
  static const std::vector<std::string> families{"gpt"};
  return families;
}

int64_t block_parameters(const GptDims& d, int64_t layer) {
  const int64_t h = d.hidden_size, f = d.ffn_hidden_size;
  const int64_t attention = h * 3 * h + 3 * h + h * h + h;  // QKV and output projection
  const int64_t mlp = h * f + f + f * h + h;
  const int64_t norms = 2 * 2 * h;
  if (d.is_moe_layer(layer)) return attention + h * d.num_experts + d.experts_held * mlp + norms;
  return attention + mlp + norms;
}

int64_t stage_parameters(const GptDims& d, int64_t first_layer, int64_t layers, bool embedding,
                         bool lm_head) {
  int64_t params = 0;
  for (int64_t l = first_layer; l < first_layer + layers; ++l) params += block_parameters(d, l);
  if (embedding) params += (d.vocab_size + d.seq_length) * d.hidden_size;
  if (lm_head) params += d.vocab_size * d.hidden_size + 2 * d.hidden_size;  // head matrix, final norm
  return params;
}

int64_t model_parameters(const GptDims& d) { return stage_parameters(d, 0, d.num_layers, true, true); }

}  // namespace rondo
