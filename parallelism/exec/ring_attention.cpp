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
constexpr int kForwardBlockTag = 7100, kForwardMetaTag = 7101, kBackwardBlockTag = 7102,
              kBackwardMetaTag = 7103, kGradientTag = 7104;

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

// A block's tokens as they travel: positions [t] then document ids [b' * t], one int64 tensor.
torch::Tensor pack_meta(const torch::Tensor& positions, const torch::Tensor& documents) {
  return torch::cat({positions.reshape({-1}), documents.reshape({-1})});
}

// The additive mask [b', t_q, t_k] (0: attend; -inf: not) of queries against a block of keys:
// causal by global position, within documents. `allowed_any` says whether any pair attends.
torch::Tensor block_bias(const torch::Tensor& q_meta, const torch::Tensor& k_meta, int64_t t,
                         bool& allowed_any) {
  const auto q_pos = q_meta.slice(0, 0, t), k_pos = k_meta.slice(0, 0, t);
  const auto q_doc = q_meta.slice(0, t).view({-1, t}), k_doc = k_meta.slice(0, t).view({-1, t});
  const auto allowed =
      k_pos.view({1, 1, t}).le(q_pos.view({1, t, 1})) & k_doc.unsqueeze(1).eq(q_doc.unsqueeze(2));
  allowed_any = allowed.any().item<bool>();
  return torch::zeros(allowed.sizes(), torch::kFloat32)
      .masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity());
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
    auto m = torch::full({b, heads, t, 1}, -inf, q.options());
    auto l = torch::zeros({b, heads, t, 1}, q.options());
    auto o = torch::zeros({b, heads, t, hd}, q.options());
    auto finite_max = torch::zeros_like(m);
    auto block = torch::stack({k, v}).contiguous();  // [2, b * heads, t, hd]: the block that travels
    auto block_meta = meta;
    for (int s = 0; s < d; ++s) {
      RingStep step(group);
      torch::Tensor next, next_meta;
      if (s + 1 < d) {
        next = step.receive_like(block, kForwardBlockTag);
        next_meta = step.receive_like(block_meta, kForwardMetaTag);
        step.send(block, kForwardBlockTag);
        step.send(block_meta, kForwardMetaTag);
      }
      bool any = false;
      const auto bias = block_bias(meta, block_meta, t, any);
      if (any) {  // a block every query is masked from (later tokens) costs nothing
        const auto kb = block[0].view({b, heads, t, hd}), vb = block[1].view({b, heads, t, hd});
        const auto sc = torch::matmul(q4, kb.transpose(2, 3)).mul_(scale).add_(bias.unsqueeze(1));
        const auto m_new = torch::maximum(m, std::get<0>(sc.max(-1, true)));
        finite_max = m_new.masked_fill(m_new.isinf(), 0.0);  // a query masked so far: its terms stay 0
        const auto p = (sc - finite_max).exp_();
        const auto alpha = (m - finite_max).exp_();
        l = l * alpha + p.sum(-1, true);
        o = o * alpha + torch::matmul(p, vb);
        m = m_new;
      }
      step.wait();
      if (s + 1 < d) block = next, block_meta = next_meta;
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
    auto block = torch::stack({k, v}).contiguous();
    auto block_meta = meta;
    auto block_grad = torch::zeros_like(block);  // the travelling block's key/value gradients so far
    for (int s = 0; s < d; ++s) {
      RingStep step(group);
      torch::Tensor next, next_meta;
      if (s + 1 < d) {
        next = step.receive_like(block, kBackwardBlockTag);
        next_meta = step.receive_like(block_meta, kBackwardMetaTag);
        step.send(block, kBackwardBlockTag);
        step.send(block_meta, kBackwardMetaTag);
      }
      bool any = false;
      const auto bias = block_bias(meta, block_meta, t, any);
      if (any) {
        const auto kb = block[0].view({b, heads, t, hd}), vb = block[1].view({b, heads, t, hd});
        const auto p =
            torch::matmul(q4, kb.transpose(2, 3)).mul_(scale).add_(bias.unsqueeze(1)).sub_(lse).exp_();
        block_grad[1].view({b, heads, t, hd}).add_(torch::matmul(p.transpose(2, 3), dout));
        const auto ds = p.mul_(torch::matmul(dout, vb.transpose(2, 3)).sub_(delta)).mul_(scale);
        dq.add_(torch::matmul(ds, kb));
        block_grad[0].view({b, heads, t, hd}).add_(torch::matmul(ds.transpose(2, 3), q4));
      }
      // The gradients go on with the block; after the last step they reach its owner (the next
      // rank), and this rank's own arrive from the previous one.
      torch::Tensor next_grad = block_grad;
      if (d > 1) {
        next_grad = step.receive_like(block_grad, kGradientTag);
        step.send(block_grad, kGradientTag);
      }
      step.wait();
      if (s + 1 < d) block = next, block_meta = next_meta;
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
