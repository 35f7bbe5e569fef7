// GptModel: the part of a decoder-only GPT that one rank holds, as a set of pipeline stages. Each
// stage is a contiguous slice of the model: token and learned position embeddings (first stage),
// pre-LN transformer blocks (causal multi-head self-attention and a GELU MLP, each with a
// residual), and a final LayerNorm with an untied LM head (last stage). float32. Its linear layers
// can defer their weight gradients (DeferrableLinear) for split-backward schedules.
//
// Parameter names are global ("block7.attn.qkv.weight", "lm_head.weight"), and every parameter is
// initialised from its own generator seeded by (seed, name), GPT-2 style (N(0, 0.02), residual
// projections scaled by 1/sqrt(2 * num_layers)): a layer's weights are the same whichever rank
// and pipeline layout hold it, which is what makes a pipelined run reproduce one process.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <vector>

#include "pipeline/pipeline_schedule.h"
#include "worker/deferrable_linear.h"

namespace rondo {

struct GptShape {
  int64_t num_layers;
  int64_t hidden_size;
  int64_t num_attention_heads;
  int64_t ffn_hidden_size;
  int64_t vocab_size;
  int64_t seq_length;
  // Keep only q, k and v of each attention for its backward, recomputing the scores and
  // probabilities there (Megatron's selective recomputation).
  bool selective_recompute = false;
  // GELU and the attention softmax on the fused CPU kernels (worker/fused_ops.h) where they apply;
  // false: ATen's (training.cpu_kernels aten).
  bool fused_kernels = true;
};

// One layer's keys and values of some tokens, as attention uses them: [batch * heads, tokens,
// head_dim] each.
struct LayerKeyValues {
  torch::Tensor k, v;
};

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  CausalSelfAttentionImpl(int64_t hidden_size, int64_t num_heads, bool selective_recompute = false,
                          bool fused_kernels = true);
  // x: [batch, seq, hidden] -> [batch, seq, hidden]. `bias`, when given, replaces the causal
  // mask: [batch, seq, keys], 0 where a query may attend to a key, -inf elsewhere. The keys are
  // `past`'s (when given: earlier tokens' keys and values), then x's own; `present`, when given,
  // receives x's keys and values. With `past` the scores are computed over blocks of seq keys
  // with an online softmax (never [seq, keys] at once), so a chunk's memory does not grow with
  // the keys it attends to beyond k and v themselves.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias = {},
                        const LayerKeyValues* past = nullptr, LayerKeyValues* present = nullptr);

  DeferrableLinear qkv{nullptr}, proj{nullptr};

 private:
  int64_t num_heads_;
  bool selective_recompute_;
  bool fused_kernels_;
};
TORCH_MODULE(CausalSelfAttention);

class TransformerBlockImpl : public torch::nn::Module {
 public:
  explicit TransformerBlockImpl(const GptShape& shape);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias = {},
                        const LayerKeyValues* past = nullptr, LayerKeyValues* present = nullptr);

  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  CausalSelfAttention attn{nullptr};
  DeferrableLinear fc{nullptr}, fc_out{nullptr};

 private:
  bool fused_kernels_;
};
TORCH_MODULE(TransformerBlock);

// Each token's position in its document, from document ids [batch, seq] (nondecreasing per row).
torch::Tensor document_positions(const torch::Tensor& documents);
// The additive attention mask of the queries at row positions [begin, end) over the keys at
// [0, end): 0 where the key is not later than the query and, with `documents` ([batch, seq]
// document ids; undefined: one sequence per row), of the same document; -inf elsewhere.
// [batch (1 without documents), end - begin, end].
torch::Tensor causal_bias(int64_t begin, int64_t end, const torch::Tensor& documents, torch::Device device);

class GptModelImpl : public torch::nn::Module {
 public:
  // The stages this rank holds (blocks [first_layer, first_layer + num_layers), plus the
  // embeddings and/or the final norm and LM head); any order, parameters registered in model order.
  GptModelImpl(const GptShape& shape, std::vector<StageLayers> stages, uint64_t seed);
  // The whole model as one stage.
  GptModelImpl(const GptShape& shape, uint64_t seed);

  // Runs stage `stage` (a plan stage index this model holds): token ids [batch, seq] int64 on a
  // stage with the embedding, hidden states [batch, seq, hidden] otherwise; returns logits
  // [batch, seq, vocab] from a stage with the LM head, hidden states otherwise. `documents`, when
  // given ([batch, seq] int64, nondecreasing per row), packs documents: a token attends only to
  // earlier tokens of its own document, and positions restart at 0 with each document.
  torch::Tensor forward_stage(int stage, const torch::Tensor& input, const torch::Tensor& documents = {});
  // A chunk of tokens that continues earlier ones (chunked long-context training): like
  // forward_stage, with each token's `positions` [batch, seq] given, and `bias` [batch, seq,
  // keys] over `past`'s keys (per layer of the stage, in layer order; empty: none) followed by
  // the chunk's own. `present`, when given, receives the chunk's keys and values per layer.
  torch::Tensor forward_chunk(int stage, const torch::Tensor& input, const torch::Tensor& positions,
                              const torch::Tensor& bias, const std::vector<LayerKeyValues>& past,
                              std::vector<LayerKeyValues>* present);
  // Mean next-token cross-entropy of logits [batch, seq, vocab] against targets [batch, seq].
  torch::Tensor loss(const torch::Tensor& logits, const torch::Tensor& targets) const;

  const GptShape& shape() const { return shape_; }
  const std::vector<StageLayers>& stages() const { return stages_; }
  const StageLayers& stage(int index) const;
  // The parameters of one stage, in registration order.
  std::vector<torch::Tensor> stage_parameters(int stage) const;

 private:
  GptShape shape_;
  std::vector<StageLayers> stages_;  // sorted by index
  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
  std::map<int64_t, TransformerBlock> blocks_;  // global layer index -> block
  torch::nn::LayerNorm final_norm{nullptr};
  DeferrableLinear lm_head{nullptr};
};
TORCH_MODULE(GptModel);

}  // namespace rondo
