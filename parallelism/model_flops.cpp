#include "parallelism/model_flops.h"

namespace rondo {

double block_linear_flops_per_token(const GptDims& d, int64_t layer) {
  const double h = static_cast<double>(d.hidden_size), f = static_cast<double>(d.ffn_hidden_size);
  // QKV, output projection
  const double attention =
      h * static_cast<double>(d.qkv_rows()) + static_cast<double>(d.attention_width()) * h;
  const double mlp = static_cast<double>(d.mlp_matrices()) * h * f;
  if (d.is_moe_layer(layer)) {
    return 2 * (attention + static_cast<double>(d.moe_topk) * mlp + h * static_cast<double>(d.num_experts));
  }
  return 2 * (attention + mlp);
}

double blocks_linear_flops_per_token(const GptDims& d, int64_t first_layer, int64_t layers) {
  double flops = 0;
  for (int64_t l = first_layer; l < first_layer + layers; ++l) flops += block_linear_flops_per_token(d, l);
  return flops;
}

double attention_flops(const GptDims& d, double queries, double keys) {
  return 4 * queries * keys * static_cast<double>(d.attention_width());
}

double embedding_flops_per_token(const GptDims& d) { return 2 * static_cast<double>(d.hidden_size); }

double lm_head_flops_per_token(const GptDims& d) {
  const double h = static_cast<double>(d.hidden_size), v = static_cast<double>(d.vocab_size);
  return 2 * h * v + 4 * v;
}

double segment_forward_flops(const GptDims& d, double begin, double end) {
  const double tokens = end - begin;
  const double per_token = blocks_linear_flops_per_token(d, 0, d.num_layers) + embedding_flops_per_token(d) +
                           lm_head_flops_per_token(d);
  return tokens * per_token + static_cast<double>(d.num_layers) * attention_flops(d, tokens, end);
}

}  // namespace rondo
