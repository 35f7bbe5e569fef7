#include "parallelism/exec/ring_attention.h"

#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace rondo {

torch::Tensor zigzag_indices(int64_t tokens, int64_t degree, int64_t rank) {
  if (degree < 1 || rank < 0 || rank >= degree || tokens % (2 * degree) != 0)
    throw std::invalid_argument("zigzag layout: " + std::to_string(tokens) +
                                " tokens do not split into 2 x " + std::to_string(degree) + " slices (rank " +
                                std::to_string(rank) + ")");
  const int64_t slice = tokens / (2 * degree);
  const auto opts = torch::TensorOptions().dtype(torch::kInt64);
  return torch::cat({torch::arange(rank * slice, (rank + 1) * slice, opts),
                     torch::arange((2 * degree - 1 - rank) * slice, (2 * degree - rank) * slice, opts)});
}

namespace {

// Tags on the group's communicator: the forward's blocks and their positions, the backward's, and
// the key/value gradients travelling with them.
constexpr int kForwardBlockTag = 7100, kBackwardBlockTag = 7102, kGradientTag = 7104;  // + 1: the tokens

// One ring step's transfers: sends to the next rank and receives from the previous one, posted
// together, waited for together (the tensors kept alive until then).
class RingStep {
 public:
  RingStep(Communicator& group) : group_(group) {}
  void send(const torch::Tensor& t, int tag) {
    keep_.push_back(t.contiguous());
    requests_.push_back(group_.isend(keep_.back().data_ptr(), keep_.back().nbytes(), next(), tag));
  }
  torch::Tensor receive_like(const torch::Tensor& t, int tag) {
    auto buffer = torch::empty_like(t, torch::MemoryFormat::Contiguous);
    requests_.push_back(group_.irecv(buffer.data_ptr(), buffer.nbytes(), previous(), tag));
    keep_.push_back(buffer);
    return buffer;
  }
  void wait() {
    for (auto& r : requests_) r->wait(group_.timeout());
    requests_.clear();
    keep_.clear();
  }

 private:
  int next() const { return (group_.rank() + 1) % group_.size(); }
  int previous() const { return (group_.rank() + group_.size() - 1) % group_.size(); }
  Communicator& group_;
  std::vector<std::unique_ptr<CommRequest>> requests_;
  std::vector<torch::Tensor> keep_;
};

// What goes round the ring each step: a block of keys and values [2, b * heads, t, hd] and its
// tokens (pack_meta).
struct Travelling {
  torch::Tensor block, meta;
};

// Posts passing `now` to the next rank and receiving the next one from the previous rank (tags
// `tag`, `tag` + 1); returns the buffers the next one arrives in.
Travelling pass_on(RingStep& step, const Travelling& now, int tag) {
  Travelling next{step.receive_like(now.block, tag), step.receive_like(now.meta, tag + 1)};
  step.send(now.block, tag);
  step.send(now.meta, tag + 1);
  return next;
}

// A block's tokens as they travel: positions [t] then document ids [b' * t], one int64 tensor.
torch::Tensor pack_meta(const torch::Tensor& positions, const torch::Tensor& documents) {
  return torch::cat({positions.reshape({-1}), documents.reshape({-1})});
}

// Which query/key pairs of this rank's queries and a block of keys attend: [b', t, t] bool,
// causal by global position and within documents.
torch::Tensor allowed_pairs(const torch::Tensor& q_meta, const torch::Tensor& k_meta, int64_t t) {
  const auto q_pos = q_meta.slice(0, 0, t), k_pos = k_meta.slice(0, 0, t);
  const auto q_doc = q_meta.slice(0, t).view({-1, t}), k_doc = k_meta.slice(0, t).view({-1, t});
  return k_pos.view({1, 1, t}).le(q_pos.view({1, t, 1})) & k_doc.unsqueeze(1).eq(q_doc.unsqueeze(2));
}

// A block is computed in tiles: each half of the queries against each half of the keys (in the
// zigzag layout a half is one slice, and under the causal mask about half of the tiles are masked
// whole: those cost nothing). A tile attended whole needs no mask.
struct Tile {
  int64_t q0, tq, k0, tk;
  torch::Tensor bias;  // [b', tq, tk] additive, or undefined when every pair attends
};

std::vector<Tile> tiles_of(const torch::Tensor& allowed, int64_t t) {
  const int64_t parts = t % 2 == 0 && t >= 2 ? 2 : 1, size = t / parts;
  std::vector<Tile> out;
  for (int64_t qi = 0; qi < parts; ++qi) {
    for (int64_t ki = 0; ki < parts; ++ki) {
      const auto a = allowed.narrow(1, qi * size, size).narrow(2, ki * size, size);
      if (!a.any().item<bool>()) continue;
      Tile tile{qi * size, size, ki * size, size, {}};
      if (!a.all().item<bool>())
        tile.bias = torch::zeros(a.sizes(), torch::kFloat32)
                        .masked_fill_(a.logical_not(), -std::numeric_limits<float>::infinity());
      out.push_back(std::move(tile));
    }
  }
  return out;
}

// Scores of a tile: q k^T * scale (+ its mask), [b, heads, tq, tk].
torch::Tensor tile_scores(const torch::Tensor& q4, const torch::Tensor& k4, const Tile& tile, double scale) {
  auto s = torch::matmul(q4.narrow(2, tile.q0, tile.tq), k4.narrow(2, tile.k0, tile.tk).transpose(2, 3))
               .mul_(scale);
  return tile.bias.defined() ? s.add_(tile.bias.unsqueeze(1)) : s;
}

struct RingAttentionFunction : torch::autograd::Function<RingAttentionFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q,
                               const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& meta,
                               double scale, int64_t heads, int64_t group_address) {
    auto& group = *reinterpret_cast<Communicator*>(group_address);
    const int d = group.size();
    const int64_t b = q.size(0) / heads, t = q.size(1), hd = q.size(2);
    const auto q4 = q.reshape({b, heads, t, hd});
    const auto inf = std::numeric_limits<float>::infinity();
    // Per query: the running maximum (finite_max: 0 while every key so far was masked), the sum
    // of exponentials and the output, FlashAttention's online softmax.
    auto m = torch::full({b, heads, t, 1}, -inf, q.options());
    auto l = torch::zeros({b, heads, t, 1}, q.options());
    auto o = torch::zeros({b, heads, t, hd}, q.options());
    auto finite_max = torch::zeros_like(m);
    Travelling now{torch::stack({k, v}).contiguous(), meta};
    for (int s = 0; s < d; ++s) {
      RingStep step(group);
      const Travelling next = s + 1 < d ? pass_on(step, now, kForwardBlockTag) : Travelling{};
      const auto kb = now.block[0].view({b, heads, t, hd}), vb = now.block[1].view({b, heads, t, hd});
      for (const Tile& tile : tiles_of(allowed_pairs(meta, now.meta, t), t)) {
        auto mq = m.narrow(2, tile.q0, tile.tq), lq = l.narrow(2, tile.q0, tile.tq),
             oq = o.narrow(2, tile.q0, tile.tq), fq = finite_max.narrow(2, tile.q0, tile.tq);
        const auto sc = tile_scores(q4, kb, tile, scale);
        const auto m_new = torch::maximum(mq, std::get<0>(sc.max(-1, true)));
        const auto f_new = m_new.masked_fill(m_new.isinf(), 0.0);
        const auto p = (sc - f_new).exp_();
        const auto alpha = (mq - f_new).exp_();
        lq.mul_(alpha).add_(p.sum(-1, true));
        oq.mul_(alpha).add_(torch::matmul(p, vb.narrow(2, tile.k0, tile.tk)));
        mq.copy_(m_new);
        fq.copy_(f_new);
      }
      step.wait();
      if (s + 1 < d) now = next;
    }
    o.div_(l);
    const auto lse = finite_max + l.log();
    ctx->save_for_backward({q, k, v, meta, o, lse});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["group"] = group_address;
    return o.reshape({b * heads, t, hd});
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &meta = saved[3], &o = saved[4], &lse = saved[5];
    const double scale = ctx->saved_data["scale"].toDouble();
    const int64_t heads = ctx->saved_data["heads"].toInt();
    auto& group = *reinterpret_cast<Communicator*>(ctx->saved_data["group"].toInt());
    const int d = group.size();
    const int64_t b = q.size(0) / heads, t = q.size(1), hd = q.size(2);
    const auto q4 = q.reshape({b, heads, t, hd});
    const auto dout = grads[0].reshape({b, heads, t, hd}).contiguous();
    const auto delta = (dout * o).sum(-1, true);  // rowsum(dP * P) = rowsum(dO * O)
    auto dq = torch::zeros_like(q4);
    Travelling now{torch::stack({k, v}).contiguous(), meta};
    auto block_grad = torch::zeros_like(now.block);  // the travelling block's key/value gradients so far
    for (int s = 0; s < d; ++s) {
      RingStep step(group);
      const Travelling next = s + 1 < d ? pass_on(step, now, kBackwardBlockTag) : Travelling{};
      const auto kb = now.block[0].view({b, heads, t, hd}), vb = now.block[1].view({b, heads, t, hd});
      auto dk = block_grad[0].view({b, heads, t, hd}), dv = block_grad[1].view({b, heads, t, hd});
      for (const Tile& tile : tiles_of(allowed_pairs(meta, now.meta, t), t)) {
        const auto qs = q4.narrow(2, tile.q0, tile.tq), ks = kb.narrow(2, tile.k0, tile.tk),
                   dos = dout.narrow(2, tile.q0, tile.tq);
        const auto p = tile_scores(q4, kb, tile, scale).sub_(lse.narrow(2, tile.q0, tile.tq)).exp_();
        dv.narrow(2, tile.k0, tile.tk).add_(torch::matmul(p.transpose(2, 3), dos));
        const auto ds = p.mul_(torch::matmul(dos, vb.narrow(2, tile.k0, tile.tk).transpose(2, 3))
                                   .sub_(delta.narrow(2, tile.q0, tile.tq)))
                            .mul_(scale);
        dq.narrow(2, tile.q0, tile.tq).add_(torch::matmul(ds, ks));
        dk.narrow(2, tile.k0, tile.tk).add_(torch::matmul(ds.transpose(2, 3), qs));
      }
      // The gradients go on with the block; after the last step they reach its owner (the next
      // rank), and this rank's own arrive from the previous one.
      torch::Tensor next_grad = block_grad;
      if (d > 1) {
        next_grad = step.receive_like(block_grad, kGradientTag);
        step.send(block_grad, kGradientTag);
      }
      step.wait();
      if (s + 1 < d) now = next;
      block_grad = next_grad;
    }
    return {dq.reshape(q.sizes()),
            block_grad[0].reshape(k.sizes()),
            block_grad[1].reshape(v.sizes()),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

torch::Tensor ring_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& positions, const torch::Tensor& documents, double scale,
                             int64_t heads, Communicator& group) {
  const int64_t t = q.size(1);
  if (k.sizes() != q.sizes() || v.sizes() != q.sizes() || positions.numel() != t)
    throw std::invalid_argument(
        "ring_attention: q, k, v must be [batch * heads, t, head_dim] alike, positions [t]");
  const auto docs = documents.defined() ? documents.to(torch::kInt64) : torch::zeros({1, t}, torch::kInt64);
  const auto meta = pack_meta(positions.to(torch::kInt64), docs).contiguous();
  return RingAttentionFunction::apply(q, k, v, meta, scale, heads, reinterpret_cast<int64_t>(&group));
}

}  // namespace rondo
