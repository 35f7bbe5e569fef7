#include "worker/gpt_model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace rondo {

namespace nn = torch::nn;

namespace {

// softmax(bias + q k^T * scale) v over [b * heads, t, hd] batches. The scaling and the mask come
// with the one batched GEMM of the scores: no separate passes over [b * heads, t, t], forward or
// backward.
torch::Tensor core_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& bias, double scale) {
  auto scores = torch::baddbmm(bias, q, k.transpose(1, 2), /*beta=*/1.0, /*alpha=*/scale);
  return torch::bmm(torch::softmax(scores, -1), v);
}

// Selective recomputation: the forward keeps q, k and v only; the backward recomputes the
// scores and probabilities ([b * heads, t, t] each, the largest activations of a layer) and
// differentiates through them, so the gradients equal the plain path's.
struct RecomputedCoreAttention : torch::autograd::Function<RecomputedCoreAttention> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q,
                               const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& bias,
                               double scale) {
    ctx->save_for_backward({q, k, v, bias});
    ctx->saved_data["scale"] = scale;
    return core_attention(q, k, v, bias, scale);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    torch::AutoGradMode grad_mode(true);
    const auto q = saved[0].detach().requires_grad_(true), k = saved[1].detach().requires_grad_(true),
               v = saved[2].detach().requires_grad_(true);
    const auto y = core_attention(q, k, v, saved[3], ctx->saved_data["scale"].toDouble());
    const auto g = torch::autograd::grad({y}, {q, k, v}, {grads[0]});
    return {g[0], g[1], g[2], torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

CausalSelfAttentionImpl::CausalSelfAttentionImpl(int64_t hidden_size, int64_t num_heads,
                                                 int64_t max_seq_length, bool selective_recompute)
    : num_heads_(num_heads), selective_recompute_(selective_recompute) {
  qkv = register_module("qkv", DeferrableLinear(hidden_size, 3 * hidden_size));
  proj = register_module("proj", DeferrableLinear(hidden_size, hidden_size));
  causal_bias_ =
      torch::full({max_seq_length, max_seq_length}, -std::numeric_limits<float>::infinity()).triu(1);
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& given_bias,
                                               const LayerKeyValues* past, LayerKeyValues* present) {
  const int64_t b = x.size(0), t = x.size(1), h = x.size(2), hd = h / num_heads_;
  // [3, b * heads, t, hd]: one batched matrix per (sample, head).
  // unbind, not three selects: its backward stacks the three gradients once instead of
  // scattering each into a zeroed copy of the whole.
  const auto parts = qkv(x)
                         .view({b, t, 3, num_heads_, hd})
                         .permute({2, 0, 3, 1, 4})
                         .reshape({3, b * num_heads_, t, hd})
                         .unbind(0);
  const auto& q = parts[0];
  if (present) *present = {parts[1], parts[2]};
  const auto k = past ? torch::cat({past->k, parts[1]}, 1) : parts[1];
  const auto v = past ? torch::cat({past->v, parts[2]}, 1) : parts[2];
  const int64_t keys = k.size(1);
  if (causal_bias_.device() != x.device()) causal_bias_ = causal_bias_.to(x.device());
  // One mask for every sample, or each sample's own (packed documents, chunks), repeated per head.
  const auto bias =
      given_bias.defined()
          ? given_bias.unsqueeze(1).expand({b, num_heads_, t, keys}).reshape({b * num_heads_, t, keys})
          : causal_bias_.slice(0, 0, t).slice(1, 0, t);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const auto y = selective_recompute_ && q.requires_grad()
                     ? RecomputedCoreAttention::apply(q, k, v, bias, scale)
                     : core_attention(q, k, v, bias, scale);  // [b * heads, t, hd]
  return proj(y.view({b, num_heads_, t, hd}).transpose(1, 2).reshape({b, t, h}));
}

TransformerBlockImpl::TransformerBlockImpl(const GptShape& s) {
  ln1 = register_module("ln1", nn::LayerNorm(nn::LayerNormOptions({s.hidden_size})));
  attn = register_module(
      "attn", CausalSelfAttention(s.hidden_size, s.num_attention_heads, s.seq_length, s.selective_recompute));
  ln2 = register_module("ln2", nn::LayerNorm(nn::LayerNormOptions({s.hidden_size})));
  fc = register_module("fc", DeferrableLinear(s.hidden_size, s.ffn_hidden_size));
  fc_out = register_module("fc_out", DeferrableLinear(s.ffn_hidden_size, s.hidden_size));
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& bias,
                                            const LayerKeyValues* past, LayerKeyValues* present) {
  auto h = x + attn(ln1(x), bias, past, present);
  return h + fc_out(torch::gelu(fc(ln2(h))));
}

namespace {

// FNV-1a: a stable hash of a parameter's name (std::hash may differ between builds).
uint64_t name_hash(const std::string& name) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

GptModelImpl::GptModelImpl(const GptShape& s, uint64_t seed)
    : GptModelImpl(s, {StageLayers{0, 0, static_cast<int>(s.num_layers), true, true}}, seed) {}

GptModelImpl::GptModelImpl(const GptShape& s, std::vector<StageLayers> stages, uint64_t seed)
    : shape_(s), stages_(std::move(stages)) {
  std::sort(stages_.begin(), stages_.end(), [](const auto& a, const auto& b) { return a.index < b.index; });
  for (const auto& st : stages_) {
    if (st.first_layer < 0 || st.num_layers < 0 || st.first_layer + st.num_layers > s.num_layers) {
      throw std::invalid_argument("stage " + std::to_string(st.index) + " holds layers outside the model's " +
                                  std::to_string(s.num_layers));
    }
    if (st.has_embedding) {
      token_embedding = register_module("token_embedding", nn::Embedding(s.vocab_size, s.hidden_size));
      position_embedding = register_module("position_embedding", nn::Embedding(s.seq_length, s.hidden_size));
    }
    for (int64_t l = st.first_layer; l < st.first_layer + st.num_layers; ++l) {
      blocks_.emplace(l, register_module("block" + std::to_string(l), TransformerBlock(s)));
    }
    if (st.has_lm_head) {
      final_norm = register_module("final_norm", nn::LayerNorm(nn::LayerNormOptions({s.hidden_size})));
      lm_head = register_module("lm_head", DeferrableLinear(s.hidden_size, s.vocab_size, /*bias=*/false));
    }
  }

  torch::NoGradGuard no_grad;
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(s.num_layers));
  for (auto& item : named_parameters()) {
    const auto& name = item.key();
    auto& p = item.value();
    if (name.find("ln") != std::string::npos || name.find("norm") != std::string::npos) continue;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ name_hash(name));
    if (p.dim() == 1) {
      p.zero_();
    } else if (name.find("proj.weight") != std::string::npos ||
               name.find("fc_out.weight") != std::string::npos) {
      p.normal_(0.0, residual_std, gen);
    } else {
      p.normal_(0.0, 0.02, gen);
    }
  }
}

const StageLayers& GptModelImpl::stage(int index) const {
  for (const auto& st : stages_) {
    if (st.index == index) return st;
  }
  throw std::out_of_range("this rank's model holds no stage " + std::to_string(index));
}

torch::Tensor document_positions(const torch::Tensor& documents) {
  const auto ids = torch::arange(documents.size(1), documents.options());
  // Each token's distance from its document's first token in the row.
  const auto first = documents.ne(documents.roll(1, 1));
  first.select(1, 0).fill_(true);
  const auto starts = torch::where(first, ids.expand_as(documents), torch::zeros_like(documents));
  return ids - std::get<0>(starts.cummax(1));
}

torch::Tensor causal_bias(int64_t begin, int64_t end, const torch::Tensor& documents, torch::Device device) {
  const auto opts = torch::TensorOptions().dtype(torch::kLong).device(device);
  const auto queries = torch::arange(begin, end, opts), keys = torch::arange(end, opts);
  auto allowed = keys.unsqueeze(0).le(queries.unsqueeze(1)).unsqueeze(0);  // [1, queries, keys]
  if (documents.defined()) {
    // Causal and within the document: key <= query and the same document id.
    const auto d = documents.to(device);
    allowed = allowed & d.slice(1, begin, end).unsqueeze(2).eq(d.slice(1, 0, end).unsqueeze(1));
  }
  return torch::zeros(allowed.sizes(), torch::TensorOptions().dtype(torch::kFloat32).device(device))
      .masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity());
}

torch::Tensor GptModelImpl::forward_stage(int index, const torch::Tensor& input,
                                          const torch::Tensor& documents) {
  const auto& st = stage(index);
  const int64_t t = input.size(1);
  torch::Tensor bias;
  if (documents.defined() && st.num_layers > 0) bias = causal_bias(0, t, documents, input.device());
  const auto positions =
      st.has_embedding && documents.defined()
          ? document_positions(documents)
          : torch::arange(t, torch::TensorOptions().dtype(torch::kLong).device(input.device()));
  return forward_chunk(index, input, positions, bias, {}, nullptr);
}

torch::Tensor GptModelImpl::forward_chunk(int index, const torch::Tensor& input,
                                          const torch::Tensor& positions, const torch::Tensor& bias,
                                          const std::vector<LayerKeyValues>& past,
                                          std::vector<LayerKeyValues>* present) {
  const auto& st = stage(index);
  if (!past.empty() && static_cast<int64_t>(past.size()) != st.num_layers) {
    throw std::invalid_argument("forward_chunk: " + std::to_string(past.size()) +
                                " layers of past keys for stage " + std::to_string(index) + " of " +
                                std::to_string(st.num_layers) + " layers");
  }
  if (present) present->assign(static_cast<size_t>(st.num_layers), {});
  torch::Tensor x = input;
  if (st.has_embedding) x = token_embedding(input) + position_embedding(positions);
  for (int64_t i = 0; i < st.num_layers; ++i) {
    const auto slot = static_cast<size_t>(i);
    x = blocks_.at(st.first_layer + i)
            ->forward(x, bias, past.empty() ? nullptr : &past[slot], present ? &(*present)[slot] : nullptr);
  }
  if (st.has_lm_head) x = lm_head(final_norm(x));
  return x;
}

torch::Tensor GptModelImpl::loss(const torch::Tensor& logits, const torch::Tensor& targets) const {
  return torch::nn::functional::cross_entropy(logits.view({-1, shape_.vocab_size}), targets.reshape({-1}));
}

std::vector<torch::Tensor> GptModelImpl::stage_parameters(int index) const {
  const auto& st = stage(index);
  std::vector<torch::Tensor> out;
  const auto add = [&](const torch::nn::Module& m) {
    for (const auto& p : m.parameters()) out.push_back(p);
  };
  if (st.has_embedding) {
    add(*token_embedding);
    add(*position_embedding);
  }
  for (int64_t l = st.first_layer; l < st.first_layer + st.num_layers; ++l) add(*blocks_.at(l));
  if (st.has_lm_head) {
    add(*final_norm);
    add(*lm_head);
  }
  return out;
}

}  // namespace rondo
