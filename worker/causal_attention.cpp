#include "worker/causal_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "worker/fused_ops.h"

namespace rondo {

namespace {

// softmax(bias + q k^T * scale) v over [B = b * heads, t, hd] batches; bias [t, keys] for every
// batch, or [b, t, keys], a sample's shared by its heads. No separate pass over [B, t, keys] scales
// or masks the scores, forward or backward: the fused softmax does both, or (ATen) the batched
// GEMM of the scores does.
torch::Tensor core_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& bias, double scale, bool fused_kernels) {
  if (fused_kernels_apply(q, fused_kernels)) {
    return torch::bmm(attention_probabilities(torch::bmm(q, k.transpose(1, 2)), bias, scale), v);
  }
  const int64_t batches = q.size(0), t = q.size(1), keys = k.size(1);
  const auto full = bias.dim() == 2 ? bias
                                    : bias.unsqueeze(1)
                                          .expand({bias.size(0), batches / bias.size(0), t, keys})
                                          .reshape({batches, t, keys});
  auto scores = torch::baddbmm(full, q, k.transpose(1, 2), /*beta=*/1.0, /*alpha=*/scale);
  return torch::bmm(torch::softmax(scores, -1), v);
}

// Selective recomputation: the forward keeps q, k and v only; the backward recomputes the
// scores and probabilities ([b * heads, t, t] each, the largest activations of a layer) and
// differentiates through them, so the gradients equal the plain path's.
struct RecomputedCoreAttention : torch::autograd::Function<RecomputedCoreAttention> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q,
                               const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& bias,
                               double scale, bool fused_kernels) {
    ctx->save_for_backward({q, k, v, bias});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["fused_kernels"] = fused_kernels;
    return core_attention(q, k, v, bias, scale, fused_kernels);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    torch::AutoGradMode grad_mode(true);
    const auto q = saved[0].detach().requires_grad_(true), k = saved[1].detach().requires_grad_(true),
               v = saved[2].detach().requires_grad_(true);
    const auto y = core_attention(q, k, v, saved[3], ctx->saved_data["scale"].toDouble(),
                                  ctx->saved_data["fused_kernels"].toBool());
    const auto g = torch::autograd::grad({y}, {q, k, v}, {grads[0]});
    return {g[0], g[1], g[2], torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// softmax(bias + q k^T * scale) v over blocks of keys, for queries that attend to many earlier
// keys (a dependent chunk): FlashAttention's online softmax in plain tensor ops. The forward keeps
// a running maximum, sum and output per query over the key blocks and saves only q, k, v, the
// output and each query's log-sum-exp; the backward recomputes each block's probabilities from
// them. Scores exist one block at a time ([b, heads, queries, block]), never for all keys, so
// memory grows with the keys only through k and v. q [b * heads, t, hd], k and v [b * heads,
// keys, hd], bias [b or 1, t, keys] (the additive mask, the same for every head).
struct BlockwiseAttention : torch::autograd::Function<BlockwiseAttention> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q,
                               const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& bias,
                               double scale, int64_t heads, int64_t block) {
    const int64_t b = q.size(0) / heads, t = q.size(1), hd = q.size(2), keys = k.size(1);
    const auto q4 = q.reshape({b, heads, t, hd}), k4 = k.reshape({b, heads, keys, hd}),
               v4 = v.reshape({b, heads, keys, hd});
    const auto inf = std::numeric_limits<float>::infinity();
    auto m = torch::full({b, heads, t, 1}, -inf, q.options());
    auto l = torch::zeros({b, heads, t, 1}, q.options());
    auto o = torch::zeros({b, heads, t, hd}, q.options());
    torch::Tensor finite_max;
    for (int64_t kb = 0; kb < keys; kb += block) {
      const int64_t ke = std::min(keys, kb + block);
      const auto s = torch::matmul(q4, k4.slice(2, kb, ke).transpose(2, 3))
                         .mul_(scale)
                         .add_(bias.slice(2, kb, ke).unsqueeze(1));
      const auto m_new = torch::maximum(m, std::get<0>(s.max(-1, true)));
      // A query with every key so far masked has max -inf: measure from 0 so its terms stay 0.
      finite_max = m_new.masked_fill(m_new.isinf(), 0.0);
      const auto p = (s - finite_max).exp_();
      const auto alpha = (m - finite_max).exp_();
      l = l * alpha + p.sum(-1, true);
      o = o * alpha + torch::matmul(p, v4.slice(2, kb, ke));
      m = m_new;
    }
    o.div_(l);
    const auto lse = finite_max + l.log();
    ctx->save_for_backward({q, k, v, bias, o, lse});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["block"] = block;
    return o.reshape({b * heads, t, hd});
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &bias = saved[3], &o = saved[4], &lse = saved[5];
    const double scale = ctx->saved_data["scale"].toDouble();
    const int64_t heads = ctx->saved_data["heads"].toInt(), block = ctx->saved_data["block"].toInt();
    const int64_t b = q.size(0) / heads, t = q.size(1), hd = q.size(2), keys = k.size(1);
    const auto q4 = q.reshape({b, heads, t, hd}), k4 = k.reshape({b, heads, keys, hd}),
               v4 = v.reshape({b, heads, keys, hd});
    const auto dout = grads[0].reshape({b, heads, t, hd});
    const auto delta = (dout * o).sum(-1, true);  // rowsum(dP * P) = rowsum(dO * O)
    auto dq = torch::zeros_like(q4);
    auto dk = torch::empty_like(k4), dv = torch::empty_like(v4);
    for (int64_t kb = 0; kb < keys; kb += block) {
      const int64_t ke = std::min(keys, kb + block);
      const auto kblk = k4.slice(2, kb, ke), vblk = v4.slice(2, kb, ke);
      const auto p = torch::matmul(q4, kblk.transpose(2, 3))
                         .mul_(scale)
                         .add_(bias.slice(2, kb, ke).unsqueeze(1))
                         .sub_(lse)
                         .exp_();
      dv.slice(2, kb, ke).copy_(torch::matmul(p.transpose(2, 3), dout));
      const auto ds = p.mul_(torch::matmul(dout, vblk.transpose(2, 3)).sub_(delta)).mul_(scale);
      dq.add_(torch::matmul(ds, kblk));
      dk.slice(2, kb, ke).copy_(torch::matmul(ds.transpose(2, 3), q4));
    }
    return {dq.reshape(q.sizes()), dk.reshape(k.sizes()), dv.reshape(v.sizes()), torch::Tensor(),
            torch::Tensor(),       torch::Tensor(),       torch::Tensor()};
  }
};

// The causal mask [t, t] (-inf above the diagonal): one per thread, shared by every layer and
// rebuilt only for a longer sequence or another device. (A mask per layer of the longest
// sequence would cost layers x seq^2 floats for nothing: chunks bring their own.)
torch::Tensor causal_mask(int64_t t, torch::Device device) {
  thread_local torch::Tensor mask;
  if (!mask.defined() || mask.size(0) < t || mask.device() != device) {
    mask = torch::full({t, t}, -std::numeric_limits<float>::infinity(),
                       torch::TensorOptions().dtype(torch::kFloat32).device(device))
               .triu(1);
  }
  return mask.slice(0, 0, t).slice(1, 0, t);
}

}  // namespace

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const AttentionOptions& o)
    : num_heads_(o.num_heads),
      num_groups_(o.num_query_groups > 0 ? o.num_query_groups : o.num_heads),
      head_size_(o.head_size > 0 ? o.head_size : o.hidden_size / o.num_heads),
      selective_recompute_(o.selective_recompute),
      fused_kernels_(o.fused_kernels) {
  const int64_t h = o.hidden_size, head = head_size_;
  if (num_heads_ % num_groups_ != 0) {
    throw std::invalid_argument("attention: " + std::to_string(num_groups_) +
                                " key/value groups do not divide " + std::to_string(num_heads_) + " heads");
  }
  qkv = register_module(
      "qkv", DeferrableLinear(h, (num_heads_ + 2 * num_groups_) * head, o.qkv_bias, o.fused_kernels));
  proj = register_module("proj", DeferrableLinear(num_heads_ * head, h, o.output_bias, o.fused_kernels));
  if (o.qk_norm) {
    q_norm = register_module("q_norm", RmsNorm(head, o.norm_epsilon));
    k_norm = register_module("k_norm", RmsNorm(head, o.norm_epsilon));
  }
  if (o.rotary) frequencies_ = rotary_frequencies(o.rotary_spec, head);
}

CausalSelfAttentionImpl::CausalSelfAttentionImpl(int64_t hidden_size, int64_t num_heads,
                                                 bool selective_recompute, bool fused_kernels)
    : CausalSelfAttentionImpl(AttentionOptions{.hidden_size = hidden_size,
                                               .num_heads = num_heads,
                                               .selective_recompute = selective_recompute,
                                               .fused_kernels = fused_kernels}) {}

std::vector<torch::Tensor> CausalSelfAttentionImpl::project(const torch::Tensor& x,
                                                            const torch::Tensor& positions) {
  const int64_t b = x.size(0), t = x.size(1), hd = head_size_;
  if (num_groups_ == num_heads_ && !frequencies_.defined() && !q_norm) {
    // [3, b * heads, t, hd]: one batched matrix per (sample, head). unbind, not three selects: its
    // backward stacks the three gradients once instead of scattering each into a zeroed copy.
    return qkv(x)
        .view({b, t, 3, num_heads_, hd})
        .permute({2, 0, 3, 1, 4})
        .reshape({3, b * num_heads_, t, hd})
        .unbind(0);
  }
  const auto all = qkv(x).view({b, t, num_heads_ + 2 * num_groups_, hd});
  auto q = all.narrow(2, 0, num_heads_), k = all.narrow(2, num_heads_, num_groups_),
       v = all.narrow(2, num_heads_ + num_groups_, num_groups_);
  if (q_norm) {
    q = q_norm(q);
    k = k_norm(k);
  }
  if (frequencies_.defined()) {
    if (!positions.defined()) throw std::invalid_argument("rotary attention needs each token's position");
    const auto angles = rotary_angles(positions, frequencies_, q);
    q = rotate(q, angles);
    k = rotate(k, angles);
  }
  if (num_groups_ < num_heads_) {  // each key/value head serves heads / groups consecutive queries
    k = k.repeat_interleave(num_heads_ / num_groups_, 2);
    v = v.repeat_interleave(num_heads_ / num_groups_, 2);
  }
  const auto batches = [&](const torch::Tensor& y) {
    return y.transpose(1, 2).reshape({b * num_heads_, t, hd});
  };
  return {batches(q), batches(k), batches(v)};
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& given_bias,
                                               const LayerKeyValues* past, LayerKeyValues* present,
                                               const ContextShare* share, const torch::Tensor& positions) {
  const int64_t b = x.size(0), t = x.size(1), hd = head_size_, h = num_heads_ * hd;
  const auto parts = project(x, positions);
  const auto& q = parts[0];
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  if (share) {
    if (past || present || given_bias.defined())
      throw std::invalid_argument("context-parallel attention takes no bias and no past keys");
    const auto y = ring_attention(q, parts[1], parts[2], share->positions, share->documents, scale,
                                  num_heads_, *share->group);
    return proj(y.view({b, num_heads_, t, hd}).transpose(1, 2).reshape({b, t, h}));
  }
  if (present) *present = {parts[1], parts[2]};
  const auto k = past ? torch::cat({past->k, parts[1]}, 1) : parts[1];
  const auto v = past ? torch::cat({past->v, parts[2]}, 1) : parts[2];
  if (past && given_bias.defined()) {
    // A chunk after earlier ones: blocks of as many keys as it has queries.
    const auto y = BlockwiseAttention::apply(q, k, v, given_bias, scale, num_heads_, t);
    return proj(y.view({b, num_heads_, t, hd}).transpose(1, 2).reshape({b, t, h}));
  }
  // One mask for every sample, or each sample's own (packed documents, chunks), shared by its heads.
  const auto bias = given_bias.defined() ? given_bias : causal_mask(t, x.device());
  const auto y = selective_recompute_ && q.requires_grad()
                     ? RecomputedCoreAttention::apply(q, k, v, bias, scale, fused_kernels_)
                     : core_attention(q, k, v, bias, scale, fused_kernels_);  // [b * heads, t, hd]
  return proj(y.view({b, num_heads_, t, hd}).transpose(1, 2).reshape({b, t, h}));
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

}  // namespace rondo
