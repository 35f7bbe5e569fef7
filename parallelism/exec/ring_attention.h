// Ring attention: context-parallel attention over a group of d ranks, each holding d-th of a
// sequence's tokens. In the zigzag layout a sequence of T tokens is cut into 2d slices and rank i
// holds slices i and 2d-1-i, so that under the causal mask every rank has about the same work.
// Each rank's queries attend to every rank's keys: the keys and values travel round the group's
// ring, one block per step (sent to the next rank while this one computes), and each block's
// result is merged with FlashAttention's online softmax (a running log-sum-exp per query). A block
// is computed in tiles, each half of the queries against each half of the keys (in the zigzag
// layout a half is a slice), and a tile masked whole is skipped: about half of them. The
// backward passes the blocks round again with their key/value gradients travelling alongside, so
// that after d steps each rank's own key/value gradients come home. The mask is computed from the
// tokens' global positions and document ids (a packed row: attention stays within a document), so
// any layout works, zigzag being the balanced one.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "comms/communicator.h"

namespace rondo {

// A rank's share of its context-parallel group's rows, as the attention layers see it: the global
// positions of the tokens it holds [t], their document ids [batch, t] (undefined: one document per
// row), and the group (whose index order is the ring).
struct ContextShare {
  torch::Tensor positions, documents;
  Communicator* group = nullptr;
};

// Global token indices (int64, ascending within each slice) that rank `rank` of `degree` holds
// of a sequence of `tokens` tokens in the zigzag layout; `tokens` must divide by 2 * degree.
torch::Tensor zigzag_indices(int64_t tokens, int64_t degree, int64_t rank);

// Attention of this rank's queries to all of the group's keys (causal by position, within
// documents): q, k, v [batch * heads, t, head_dim] float32 of this rank's t tokens (every rank of
// the group the same t); positions [t] int64, their global indices; documents [batch, t] int64
// document ids or undefined (one document). Differentiable in q, k and v; forward and backward
// communicate over `group` (every member calls it, in the same order as its other calls there),
// which must outlive the backward. Returns [batch * heads, t, head_dim].
torch::Tensor ring_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             const torch::Tensor& positions, const torch::Tensor& documents, double scale,
                             int64_t heads, Communicator& group);

}  // namespace rondo
