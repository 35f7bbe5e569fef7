// GptModel: a decoder-only GPT in LibTorch. Token and learned position embeddings, pre-LN blocks
// (causal multi-head self-attention and a GELU MLP, each with a residual), a final LayerNorm and
// an untied LM head. float32; initialised from the global torch seed (GPT-2 style: N(0, 0.02),
// residual projections scaled by 1/sqrt(2 * num_layers)).
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace rondo {

struct GptShape {
  int64_t num_layers;
  int64_t hidden_size;
  int64_t num_attention_heads;
  int64_t ffn_hidden_size;
  int64_t vocab_size;
  int64_t seq_length;
};

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  CausalSelfAttentionImpl(int64_t hidden_size, int64_t num_heads, int64_t max_seq_length);
  // x: [batch, seq, hidden] -> [batch, seq, hidden]
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t num_heads_;
  torch::Tensor causal_bias_;  // [max_seq, max_seq]: -inf above the diagonal, 0 elsewhere
};
TORCH_MODULE(CausalSelfAttention);

class TransformerBlockImpl : public torch::nn::Module {
 public:
  explicit TransformerBlockImpl(const GptShape& shape);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  CausalSelfAttention attn{nullptr};
  torch::nn::Linear fc{nullptr}, fc_out{nullptr};
};
TORCH_MODULE(TransformerBlock);

class GptModelImpl : public torch::nn::Module {
 public:
  explicit GptModelImpl(const GptShape& shape);
  // tokens: [batch, seq] int64 -> logits [batch, seq, vocab]
  torch::Tensor forward(const torch::Tensor& tokens);
  // Mean next-token cross-entropy of `tokens` against `targets` (both [batch, seq]).
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& targets);

  const GptShape& shape() const { return shape_; }

 private:
  GptShape shape_;
  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm final_norm{nullptr};
  torch::nn::Linear lm_head{nullptr};
};
TORCH_MODULE(GptModel);

}  // namespace rondo
