// ChunkModel: what chunked training (data/exec/) needs of a model, so that the chunked batches
// here drive any model family the worker builds: each stage's layout, and a stage's forward over
// one chunk whose queries attend to the keys and values earlier chunks of their sequence left
// (per layer), leaving the chunk's own. The worker's StagedModel implements it.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "parallelism/model_parameters.h"
#include "pipeline/pipeline_schedule.h"

namespace rondo {

// One attention layer's keys and values for a run of tokens, [batch, tokens, ...] each.
struct LayerKeyValues {
  torch::Tensor k, v;
};

class ChunkModel {
 public:
  virtual ~ChunkModel() = default;
  virtual const StageLayers& stage(int index) const = 0;
  // The dimensions the chunk planner counts a chunk's cost on (data/chunk_plan.h).
  virtual GptDims cost_dims() const = 0;
  // Stage `stage` on a chunk: token ids [batch, tokens] (the stage with the embedding, at
  // `positions` [batch, tokens]) or hidden states [batch, tokens, hidden] in; `bias` [batch,
  // tokens, keys] over `past`'s keys (per layer of the stage; empty: none) followed by the
  // chunk's own. `present`, when given, receives the chunk's keys and values per layer.
  virtual torch::Tensor forward_chunk(int stage, const torch::Tensor& input, const torch::Tensor& positions,
                                      const torch::Tensor& bias, const std::vector<LayerKeyValues>& past,
                                      std::vector<LayerKeyValues>* present) = 0;
};

}  // namespace rondo
