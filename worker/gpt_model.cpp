#include "worker/gpt_model.h"

#include <cmath>

namespace rondo {

namespace nn = torch::nn;

CausalSelfAttentionImpl::CausalSelfAttentionImpl(int64_t hidden_size, int64_t num_heads,
                                                 int64_t max_seq_length)
    : num_heads_(num_heads) {
  qkv = register_module("qkv", nn::Linear(hidden_size, 3 * hidden_size));
  proj = register_module("proj", nn::Linear(hidden_size, hidden_size));
  causal_bias_ =
      torch::full({max_seq_length, max_seq_length}, -std::numeric_limits<float>::infinity()).triu(1);
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), t = x.size(1), h = x.size(2), hd = h / num_heads_;
  // [3, b * heads, t, hd]: one batched matrix per (sample, head).
  // unbind, not three selects: its backward stacks the three gradients once instead of
  // scattering each into a zeroed copy of the whole.
  const auto parts = qkv(x)
                         .view({b, t, 3, num_heads_, hd})
                         .permute({2, 0, 3, 1, 4})
                         .reshape({3, b * num_heads_, t, hd})
                         .unbind(0);
  const auto &q = parts[0], &k = parts[1], &v = parts[2];
  if (causal_bias_.device() != x.device()) causal_bias_ = causal_bias_.to(x.device());
  // scores = causal bias + q k^T / sqrt(hd) in one batched GEMM: the scaling and the mask cost
  // no separate passes over the [b * heads, t, t] scores, forward or backward.
  auto scores = torch::baddbmm(causal_bias_.slice(0, 0, t).slice(1, 0, t), q, k.transpose(1, 2), /*beta=*/1.0,
                               /*alpha=*/1.0 / std::sqrt(static_cast<double>(hd)));
  auto y = torch::bmm(torch::softmax(scores, -1), v);  // [b * heads, t, hd]
  return proj(y.view({b, num_heads_, t, hd}).transpose(1, 2).reshape({b, t, h}));
}

TransformerBlockImpl::TransformerBlockImpl(const GptShape& s) {
  ln1 = register_module("ln1", nn::LayerNorm(nn::LayerNormOptions({s.hidden_size})));
  attn = register_module("attn", CausalSelfAttention(s.hidden_size, s.num_attention_heads, s.seq_length));
  ln2 = register_module("ln2", nn::LayerNorm(nn::LayerNormOptions({s.hidden_size})));
  fc = register_module("fc", nn::Linear(s.hidden_size, s.ffn_hidden_size));
  fc_out = register_module("fc_out", nn::Linear(s.ffn_hidden_size, s.hidden_size));
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x) {
  auto h = x + attn(ln1(x));
  return h + fc_out(torch::gelu(fc(ln2(h))));
}

GptModelImpl::GptModelImpl(const GptShape& s) : shape_(s) {
  token_embedding = register_module("token_embedding", nn::Embedding(s.vocab_size, s.hidden_size));
  position_embedding = register_module("position_embedding", nn::Embedding(s.seq_length, s.hidden_size));
  blocks = register_module("blocks", nn::ModuleList());
  for (int64_t i = 0; i < s.num_layers; ++i) blocks->push_back(TransformerBlock(s));
  final_norm = register_module("final_norm", nn::LayerNorm(nn::LayerNormOptions({s.hidden_size})));
  lm_head =
      register_module("lm_head", nn::Linear(nn::LinearOptions(s.hidden_size, s.vocab_size).bias(false)));

  torch::NoGradGuard no_grad;
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(s.num_layers));
  for (auto& item : named_parameters()) {
    const auto& name = item.key();
    auto& p = item.value();
    if (name.find("ln") != std::string::npos || name.find("norm") != std::string::npos) continue;
    if (p.dim() == 1) {
      p.zero_();
    } else if (name.find("proj.weight") != std::string::npos ||
               name.find("fc_out.weight") != std::string::npos) {
      p.normal_(0.0, residual_std);
    } else {
      p.normal_(0.0, 0.02);
    }
  }
}

torch::Tensor GptModelImpl::forward(const torch::Tensor& tokens) {
  const int64_t t = tokens.size(1);
  auto positions = torch::arange(t, torch::TensorOptions().dtype(torch::kLong).device(tokens.device()));
  auto x = token_embedding(tokens) + position_embedding(positions);
  for (auto& block : *blocks) x = block->as<TransformerBlock>()->forward(x);
  return lm_head(final_norm(x));
}

torch::Tensor GptModelImpl::loss(const torch::Tensor& tokens, const torch::Tensor& targets) {
  auto logits = forward(tokens);
  return torch::nn::functional::cross_entropy(logits.view({-1, shape_.vocab_size}), targets.reshape({-1}));
}

}  // namespace rondo
