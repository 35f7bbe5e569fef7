// Parameter counts of rondo's model families (worker/gpt_family.h, worker/llama_family.h), the one
// formula the planner uses for the model's size, a stage's share, weight memory and weight
// transfers. A GPT block holds a fused QKV and an output projection (with biases), a two-layer MLP
// (with biases; an MoE block: a router without bias and the experts held, each such an MLP) and
// two LayerNorms; the embedding stage token and position embeddings; the LM-head stage the final
// LayerNorm and an untied output matrix without bias. A Llama-style block: no biases, GQA's
// narrower keys and values, a three-matrix MLP, RMSNorms; token embeddings only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace rondo {

// The model families (model.family) whose costs these formulas and model_flops.h know: the ones
// the planner accepts. Each is also a family the worker builds (worker/model_family.h).
const std::vector<std::string>& planned_model_families();

struct GptDims {
  int64_t num_layers = 0, hidden_size = 0, ffn_hidden_size = 0, vocab_size = 0, seq_length = 0;
  // Mixture of experts (model.num_experts; 0: dense): blocks 0, f, 2f, ... (f = moe_layer_freq)
  // have a router and `experts_held` of their `num_experts` expert MLPs where counted (all of them
  // for the whole model, num_experts / ep for one rank), each token computing `moe_topk` of them.
  int64_t num_experts = 0, experts_held = 0, moe_topk = 1, moe_layer_freq = 1;
  bool is_moe_layer(int64_t layer) const { return num_experts > 0 && layer % moe_layer_freq == 0; }
  // Llama-style blocks (model.family llama, qwen2, qwen3; worker/llama_family.h): no biases, RMSNorms
  // (a weight each), a SwiGLU MLP (three matrices), keys and values for `num_query_groups` of the
  // `num_attention_heads` heads, no position embedding; `qk_norm` (qwen3): a head-sized RMSNorm on
  // queries and on keys; `qkv_bias` (qwen2): biases on the fused QKV projection.
  bool llama_style = false, qk_norm = false, qkv_bias = false;
  int64_t num_attention_heads = 1, num_query_groups = 1;
  int64_t head_size = 0;  // 0: hidden_size / num_attention_heads
  // model.tie_embeddings: a stage holding the embedding and the LM head has their matrix once (a
  // last pipeline stage without the embedding still holds a copy).
  bool tied_embeddings = false;
  int64_t head() const {
    return head_size > 0 ? head_size : hidden_size / std::max<int64_t>(1, num_attention_heads);
  }
  // Rows of the fused QKV projection (3h for GPT; the heads' queries plus the groups' keys and
  // values with GQA); the output projection's columns (h, or heads x head_size).
  int64_t qkv_rows() const {
    return llama_style ? (num_attention_heads + 2 * num_query_groups) * head() : 3 * hidden_size;
  }
  int64_t attention_width() const { return llama_style ? num_attention_heads * head() : hidden_size; }
  // An MLP's matrices of h x ffn (two; three gated).
  int64_t mlp_matrices() const { return llama_style ? 3 : 2; }
};

// Block `layer` (model-wide index: it says whether the block's MLP is an MoE one).
int64_t block_parameters(const GptDims& dims, int64_t layer);
// A stage of blocks [first_layer, first_layer + layers), with the embedding and/or the LM head
// when it holds them.
int64_t stage_parameters(const GptDims& dims, int64_t first_layer, int64_t layers, bool embedding,
                         bool lm_head);
// The whole model.
int64_t model_parameters(const GptDims& dims);

}  // namespace rondo
