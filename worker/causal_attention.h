// Causal multi-head self-attention, the attention every family's block shares today: one fused
// QKV projection, the scores under an additive mask (causal, or per packed document), softmax on
// the fused CPU kernels where they apply, and a blockwise online softmax for a chunk that attends
// to earlier chunks' keys. Also the masks and positions of packed documents and chunks.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "data/exec/chunk_model.h"
#include "parallelism/exec/ring_attention.h"
#include "worker/deferrable_linear.h"

namespace rondo {

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  CausalSelfAttentionImpl(int64_t hidden_size, int64_t num_heads, bool selective_recompute = false,
                          bool fused_kernels = true);
  // x: [batch, seq, hidden] -> [batch, seq, hidden]. `bias`, when given, replaces the causal
  // mask: [batch, seq, keys], 0 where a query may attend to a key, -inf elsewhere. The keys are
  // `past`'s (when given: earlier tokens' keys and values), then x's own; `present`, when given,
  // receives x's keys and values. With `past` the scores are computed over blocks of seq keys
  // with an online softmax (never [seq, keys] at once), so a chunk's memory does not grow with
  // the keys it attends to beyond k and v themselves. With `share` x holds this rank's share of
  // each row and the keys and values come round its context-parallel group (ring attention).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias = {},
                        const LayerKeyValues* past = nullptr, LayerKeyValues* present = nullptr,
                        const ContextShare* share = nullptr);

  DeferrableLinear qkv{nullptr}, proj{nullptr};

 private:
  int64_t num_heads_;
  bool selective_recompute_;
  bool fused_kernels_;
};
TORCH_MODULE(CausalSelfAttention);

// Each token's position in its document, from document ids [batch, seq] (nondecreasing per row).
torch::Tensor document_positions(const torch::Tensor& documents);
// The additive attention mask of the queries at row positions [begin, end) over the keys at
// [0, end): 0 where the key is not later than the query and, with `documents` ([batch, seq]
// document ids; undefined: one sequence per row), of the same document; -inf elsewhere.
// [batch (1 without documents), end - begin, end].
torch::Tensor causal_bias(int64_t begin, int64_t end, const torch::Tensor& documents, torch::Device device);

}  // namespace rondo
