// Parameter counts of rondo's GPT (worker/gpt_family.h), the one formula the planner uses for the
// model's size, a stage's share, weight memory and weight transfers. A transformer block holds
// a fused QKV and an output projection (with biases), a two-layer MLP (with biases) and two
// LayerNorms; the embedding stage token and position embeddings; the LM-head stage the final
// LayerNorm and an untied output matrix without bias.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rondo {

// The model families (model.family) whose costs these formulas and model_flops.h know: the ones
// the planner accepts. Each is also a family the worker builds (worker/model_family.h).
const std::vector<std::string>& planned_model_families();

struct GptDims {
  int64_t num_layers = 0, hidden_size = 0, ffn_hidden_size = 0, vocab_size = 0, seq_length = 0;
};

int64_t block_parameters(const GptDims& dims);
// A stage of `layers` blocks, with the embedding and/or the LM head when it holds them.
int64_t stage_parameters(const GptDims& dims, int64_t layers, bool embedding, bool lm_head);
// The whole model.
int64_t model_parameters(const GptDims& dims);

}  // namespace rondo
