// Causal multi-head self-attention, the attention every family's block shares: one fused QKV
// projection (GPT's, or Llama's narrower keys and values for grouped-query attention, rotated by
// position, Qwen3's RMSNorm on each head's queries and keys first), the scores under an additive
// mask (causal, or per packed document), softmax on the fused CPU kernels where they apply, and a
// blockwise online softmax for a chunk that attends to earlier chunks' keys. Also the masks and
// positions of packed documents and chunks.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "data/exec/chunk_model.h"
#include "parallelism/exec/ring_attention.h"
#include "worker/deferrable_linear.h"
#include "worker/rotary_embedding.h"

namespace rondo {

struct AttentionOptions {
  int64_t hidden_size = 0, num_heads = 1;
  int64_t num_query_groups = 0;  // key/value heads, each shared by heads / groups queries; 0: one per head
  int64_t head_size = 0;         // 0: hidden_size / num_heads (Qwen3's can differ)
  bool qkv_bias = true;          // on the QKV projection (GPT, Qwen2)
  bool output_bias = true;       // on the output projection (GPT)
  bool rotary = false;           // rotate queries and keys by position (rotary_embedding.h)
  RotarySpec rotary_spec = {};
  bool qk_norm = false;  // RMSNorm over each head's queries and keys (before the rotation)
  double norm_epsilon = 1e-5;
  bool selective_recompute = false, fused_kernels = true;
};

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const AttentionOptions& options);
  // GPT's: every head its own keys and values, biases, no rotation.
  CausalSelfAttentionImpl(int64_t hidden_size, int64_t num_heads, bool selective_recompute = false,
                          bool fused_kernels = true);
  // x: [batch, seq, hidden] -> [batch, seq, hidden]. `bias`, when given, replaces the causal
  // mask: [batch, seq, keys], 0 where a query may attend to a key, -inf elsewhere. The keys are
  // `past`'s (when given: earlier tokens' keys and values), then x's own; `present`, when given,
  // receives x's keys and values. With `past` the scores are computed over blocks of seq keys
  // with an online softmax (never [seq, keys] at once), so a chunk's memory does not grow with
  // the keys it attends to beyond k and v themselves. With `share` x holds this rank's share of
  // each row and the keys and values come round its context-parallel group (ring attention).
  // `positions` ([seq] or [batch, seq]: each token's position in its document) rotate the
  // queries and keys of a rotary attention; the others ignore them.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias = {},
                        const LayerKeyValues* past = nullptr, LayerKeyValues* present = nullptr,
                        const ContextShare* share = nullptr, const torch::Tensor& positions = {});

  DeferrableLinear qkv{nullptr}, proj{nullptr};
  RmsNorm q_norm{nullptr}, k_norm{nullptr};

 private:
  // Queries, keys and values [batch * heads, seq, head_size] (keys and values repeated over each
  // group's heads).
  std::vector<torch::Tensor> project(const torch::Tensor& x, const torch::Tensor& positions);
  int64_t num_heads_, num_groups_, head_size_;
  torch::Tensor frequencies_;  // rotary; undefined otherwise
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
