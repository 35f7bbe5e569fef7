// TiedEmbeddings: model.tie_embeddings across pipeline stages, as Megatron-LM keeps them. The LM
// head computes with the token embedding's matrix. A rank holding both shares one tensor
// (worker/staged_model.h). Where the first and the last stage lie on different ranks, the last
// stage's lm_head.weight is a copy, initialised as the embedding is; every step, once the
// data-parallel reduction is done, the two ranks sum the copy's gradient and the embedding's, so
// both take the same update, and the global gradient norm counts the matrix once (on the
// embedding's rank). Synchronous runs of ranks bound to their stages.
#pragma once

#include <memory>
#include <vector>

#include "comms/collectives.h"
#include "comms/communicator.h"
#include "comms/timing_recorder.h"
#include "proto/plan.pb.h"
#include "worker/staged_model.h"

namespace rondo {

class TiedEmbeddings {
 public:
  // Collective over the world: a communicator for each replica whose first and last stages lie on
  // different ranks. Null where the plan does not tie or this rank is in no such pair.
  static std::unique_ptr<TiedEmbeddings> make(const plan::Plan& plan, int rank, Communicator& world,
                                              TimingRecorder* recorder);

  // Sums the tied matrix's gradient over the pair: the embedding's here, or the head's copy.
  void reduce(StagedModel& model);
  // The gradient of the head's copy (undefined on the embedding's rank): counted by the other.
  torch::Tensor copy_gradient(StagedModel& model) const;

 private:
  TiedEmbeddings(std::unique_ptr<Communicator> pair, std::vector<int> world_ranks, TimingRecorder* recorder,
                 bool holds_copy);
  torch::Tensor matrix(StagedModel& model) const;

  std::unique_ptr<Communicator> pair_;
  Collectives collectives_;
  bool holds_copy_;
};

}  // namespace rondo
