// The optimizer a plan asks for (training.optimizer), built once at setup over the parameters a
// run mode hands it. AdamW (FlatAdamW: parameters, gradients and moments in flat buffers), SGD,
// or Muon (the hidden layers' 2-D weight matrices; everything else on AdamW). Torch translation
// units only.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace rondo {

namespace plan {
class TrainingSpec;
}

struct OptimizerParameters {
  std::vector<torch::Tensor> params = {};  // in the order of `grads`
  torch::Tensor grads = {};                // their gradients back to back (AdamW steps them in place)
  // AdamW only, optional: where it keeps the parameters and its two moments (node-shared
  // storage of stateless workers); otherwise it allocates them.
  torch::Tensor flat_params = {}, moments = {};
  // Muon only: every parameter of the model by name; the hidden blocks' ("block...") 2-D weights
  // are its matrices, each made of `stacked_matrices(name)` matrices stacked along its rows (the
  // model family's; unset: 1).
  std::vector<std::pair<std::string, torch::Tensor>> named = {};
  std::function<int(const std::string&)> stacked_matrices = {};
  // Per parameter of `params` (and `named`), whether it trains (empty: all). A frozen one (LoRA's
  // base weights, kept in a stateless worker's flat range) is never updated: AdamW neither decays
  // it nor moves it (its gradient stays zero), Muon and SGD leave it out.
  std::vector<bool> trained = {};
};

// Throws PlanError for Muon without `named` (it tells the matrices apart by name).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const plan::TrainingSpec& training,
                                                        OptimizerParameters parameters);

}  // namespace rondo
