// Model families as stage modules: a family says how to build the three kinds of part a pipeline
// stage is made of — the embedding (first stage), the transformer block (one per layer) and the
// head (last stage) — and how each parameter starts. StagedModel (worker/staged_model.h) stacks
// them into the stages a rank holds; the trainer picks the family by `model.family` from
// model_family() and never branches on a family's name. A new family (Llama, Qwen) or a new kind
// of block (context-parallel attention, an MoE MLP) is one new file plus a line in
// model_family.cpp's table.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "parallelism/exec/moe_layer.h"
#include "parallelism/model_parameters.h"
#include "worker/causal_attention.h"

namespace rondo {

// LoRA (training.lora_*): a trainable low-rank update scale * B A beside each target linear
// layer's frozen weight; every other parameter frozen too. rank 0: off.
struct LoraSpec {
  int64_t rank = 0;
  double alpha = 0;  // the update is scaled by alpha / rank
  // Linear layers by their name's last part (qkv, proj, fc, fc_out, gate, up, down, lm_head), or
  // all-linear: every block's.
  std::vector<std::string> targets;
};

struct ModelShape {
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
  // Mixture of experts (moe.num_experts 0: dense): the MLP of layers 0, f, 2f, ... (f =
  // moe_layer_freq) is an MoeMlp whose experts are the family's MLP, sharing `moe_runtime`.
  MoeOptions moe = {};
  int64_t moe_layer_freq = 1;
  std::shared_ptr<MoeRuntime> moe_runtime = nullptr;
  bool is_moe_layer(int64_t layer) const { return moe.num_experts > 0 && layer % moe_layer_freq == 0; }
  // Llama-style families (worker/llama_family.h): key/value heads (0: one per head), rotary
  // positions and RMSNorm's epsilon.
  int64_t num_query_groups = 0;
  int64_t head_size = 0;  // 0: hidden_size / num_attention_heads
  RotarySpec rotary = {};
  double norm_epsilon = 1e-5;
  LoraSpec lora = {};
  // The LM head computes with the token embedding's matrix (worker/staged_model.h).
  bool tie_embeddings = false;
};

// Token ids [batch, seq] and each token's position [batch, seq] (or [seq]) -> hidden states.
class EmbeddingPart : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& positions) = 0;
};

// One layer: hidden states [batch, seq, hidden] -> the same. `positions` are each token's
// position in its document ([seq] or [batch, seq]; rotary families rotate by them); `bias`, `past`
// and `present` are CausalSelfAttention's (a packed or chunked batch's mask, earlier chunks' keys
// and values, this chunk's keys and values).
class BlockPart : public torch::nn::Module {
 public:
  // `share`: this rank holds a share of each row's tokens and attends over its context-parallel
  // group (parallelism/exec/ring_attention.h); no bias, no past keys then.
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& positions,
                                const torch::Tensor& bias, const LayerKeyValues* past,
                                LayerKeyValues* present, const ContextShare* share = nullptr) = 0;
  // The block's mixture-of-experts MLP, or null for a dense one.
  virtual MoeMlpImpl* moe() { return nullptr; }
};

// Hidden states [batch, seq, hidden] -> logits [batch, seq, vocab].
class HeadPart : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

struct ModelFamily {
  std::string name;
  std::function<std::shared_ptr<EmbeddingPart>(const ModelShape&)> make_embedding;
  // Layer `layer` (0-based, model-wide): its MLP is an MoE one where shape.is_moe_layer(layer).
  std::function<std::shared_ptr<BlockPart>(const ModelShape&, int64_t layer)> make_block;
  std::function<std::shared_ptr<HeadPart>(const ModelShape&)> make_head;
  // How many matrices a 2-D weight stacks along its rows (GPT's attn.qkv.weight: Q, K and V), for
  // optimizers that treat each matrix on its own (Muon orthogonalises Q, K and V separately); 1
  // for the rest.
  std::function<int(const std::string& name)> stacked_matrices;
  // Sets a parameter's initial value from `generator` (seeded by the run's seed and the
  // parameter's name, so a layer starts the same whichever rank and stage hold it). `name` is
  // the model-wide name ("block3.attn.qkv.weight").
  std::function<void(const std::string& name, torch::Tensor& parameter, const ModelShape&,
                     at::Generator& generator)>
      initialise;
  // The planner's view of the model (parallelism/model_parameters.h), for the costs the worker
  // weighs itself (chunk boundaries).
  std::function<GptDims(const ModelShape&)> cost_dims;
};

// The family registered as `name`; throws std::invalid_argument naming model.family and the
// families there are.
const ModelFamily& model_family(const std::string& name);
std::vector<std::string> model_family_names();

// Registers each of `part`'s submodules in `holder` under its own name, so the part's parameters
// are named as the holder's ("lm_head.weight", not "head.lm_head.weight"): a family keeps its
// checkpoint keys whichever parts it is built from. `part` itself stays unregistered (the holder
// keeps it to call its forward).
void adopt_submodules(torch::nn::Module& holder, const torch::nn::Module& part);

}  // namespace rondo
