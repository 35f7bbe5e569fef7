// Forward FLOPs of rondo's model families (parallelism/model_parameters.h), the one formula the planner's
// step prediction and the chunk balancer share. Attention is counted as the implementation computes it: the
// whole masked rectangle of queries x keys (a causal mask saves nothing there). A backward costs twice the
// forward.
#pragma once

#include "parallelism/model_parameters.h"

namespace rondo {

// Block `layer`'s matrix multiplications for one token: QKV, output projection and the MLP (an
// MoE block: the router and the token's top-k experts).
double block_linear_flops_per_token(const GptDims& dims, int64_t layer);
// The same summed over blocks [first_layer, first_layer + layers).
double blocks_linear_flops_per_token(const GptDims& dims, int64_t first_layer, int64_t layers);
// One block's two attention products (scores and the weighted values) for `queries` query tokens
// against `keys` keys.
double attention_flops(const GptDims& dims, double queries, double keys);
// The embedding lookups and position add, and the LM head with its softmax loss, per token.
double embedding_flops_per_token(const GptDims& dims);
double lm_head_flops_per_token(const GptDims& dims);
// The whole model's forward over tokens [begin, end) of one sequence whose earlier tokens' keys
// and values are at hand (a chunk of a long sequence; begin = 0: the sequence alone).
double segment_forward_flops(const GptDims& dims, double begin, double end);

}  // namespace rondo
