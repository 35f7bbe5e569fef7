// StagedModel: the part of a model that one rank holds, as a set of pipeline stages, built from
// its family's parts (worker/model_family.h). Each stage is a contiguous slice of the model: the
// embedding (first stage), blocks [first_layer, first_layer + num_layers), and the head (last
// stage). Blocks' linear layers can defer their weight gradients (DeferrableLinear) for
// split-backward schedules.
//
// Parameter names are model-wide ("block7.attn.qkv.weight", "lm_head.weight"): blocks are
// registered as "block<layer>", the embedding's and head's submodules under their own names. Every
// parameter is initialised by the family from its own generator seeded by (seed, name): a layer's
// weights are the same whichever rank and pipeline layout hold it, which is what makes a pipelined
// run reproduce one process. With LoRA (training.lora_rank) the target linear layers get
// adapters (lora_a, lora_b: "block7.attn.qkv.lora_a") and every other parameter is frozen.
// With tied embeddings the head computes with token_embedding.weight where this rank holds both;
// a rank holding only the head has lm_head.weight, a copy initialised as the embedding is, kept
// equal to it by summing their gradients (worker/tied_embeddings.h).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/exec/chunk_model.h"
#include "pipeline/pipeline_schedule.h"
#include "worker/model_family.h"

namespace rondo {

// Context parallelism as a stage sees it: the global indices of the tokens this rank holds of each
// row ([t] int64, the same for every row: zigzag_indices) and its group.
struct ContextParallel {
  torch::Tensor held;
  Communicator* group = nullptr;
};

class StagedModelImpl : public torch::nn::Module, public ChunkModel {
 public:
  // The stages this rank holds (blocks [first_layer, first_layer + num_layers), plus the
  // embeddings and/or the final norm and LM head); any order, parameters registered in model order.
  StagedModelImpl(const ModelFamily& family, const ModelShape& shape, std::vector<StageLayers> stages,
                  uint64_t seed);
  // The whole model as one stage.
  StagedModelImpl(const ModelFamily& family, const ModelShape& shape, uint64_t seed);

  // Runs stage `stage` (a plan stage index this model holds): token ids [batch, seq] int64 on a
  // stage with the embedding, hidden states [batch, seq, hidden] otherwise; returns logits
  // [batch, seq, vocab] from a stage with the LM head, hidden states otherwise. `documents`, when
  // given ([batch, seq] int64, nondecreasing per row), packs documents: a token attends only to
  // earlier tokens of its own document, and positions restart at 0 with each document.
  // With `context` (context parallelism) the input holds only the tokens at `context->held` of
  // each row (`documents` still covers the whole rows) and attention runs round its group.
  torch::Tensor forward_stage(int stage, const torch::Tensor& input, const torch::Tensor& documents = {},
                              const ContextParallel* context = nullptr);
  // A chunk of tokens that continues earlier ones (chunked long-context training; ChunkModel):
  // like forward_stage, with each token's positions given and the bias over the earlier chunks'
  // keys and the chunk's own.
  torch::Tensor forward_chunk(int stage, const torch::Tensor& input, const torch::Tensor& positions,
                              const torch::Tensor& bias, const std::vector<LayerKeyValues>& past,
                              std::vector<LayerKeyValues>* present) override;
  // Mean next-token cross-entropy of logits [batch, seq, vocab] against targets [batch, seq]
  // (-100: not a target); with `divisor` > 0 their sum over it instead (a share of the rows'
  // targets, whose partial losses add up to the rows' mean).
  torch::Tensor loss(const torch::Tensor& logits, const torch::Tensor& targets, int64_t divisor = 0) const;

  const ModelShape& shape() const { return shape_; }
  GptDims cost_dims() const override { return dims_; }
  const std::vector<StageLayers>& stages() const { return stages_; }
  const StageLayers& stage(int index) const override;
  // The MoE MLPs of the blocks this rank holds, by layer.
  std::map<int64_t, MoeMlpImpl*> moe_layers() const;
  // The parameters of one stage, in registration order.
  std::vector<torch::Tensor> stage_parameters(int stage) const;

 private:
  // LoRA (shape.lora): an adapter on every target linear layer; A's and B's initialisation (false:
  // not an adapter's parameter).
  void add_lora_adapters();
  // Tied embeddings (shape.tie_embeddings) with the embedding and the head both here: the head
  // computes with the embedding's matrix, one parameter (token_embedding.weight).
  void tie_embeddings();
  bool initialise_lora(const std::string& name, torch::Tensor& p, at::Generator& gen) const;
  torch::Tensor run(int stage, const torch::Tensor& input, const torch::Tensor& positions,
                    const torch::Tensor& bias, const std::vector<LayerKeyValues>& past,
                    std::vector<LayerKeyValues>* present, const ContextShare* share);
  ModelShape shape_;
  GptDims dims_;
  std::vector<StageLayers> stages_;  // sorted by index
  std::shared_ptr<EmbeddingPart> embedding_;
  std::map<int64_t, std::shared_ptr<BlockPart>> blocks_;  // global layer index -> block
  std::shared_ptr<HeadPart> head_;
};
TORCH_MODULE(StagedModel);

// A LoRA adapter's parameter (its name ends .lora_a or .lora_b): with training.lora_rank the only
// ones that train.
bool is_lora_parameter(const std::string& name);

}  // namespace rondo
