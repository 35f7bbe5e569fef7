#include "worker/optimizer_factory.h"

#include "common/errors.h"
#include "proto/plan.pb.h"
#include "worker/flat_adamw.h"
#include "worker/muon.h"
#include "worker/staged_model.h"

namespace rondo {

namespace {

// `items` without the frozen ones (`trained` false; empty: all train).
template <typename T>
std::vector<T> trained_only(std::vector<T> items, const std::vector<bool>& trained) {
  if (trained.empty()) return items;
  std::vector<T> out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (trained.at(i)) out.push_back(std::move(items[i]));
  }
  return out;
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const plan::TrainingSpec& t, OptimizerParameters in) {
  const auto adamw = torch::optim::AdamWOptions(t.lr())
                         .betas({t.adam_beta1(), t.adam_beta2()})
                         .eps(t.adam_eps())
                         .weight_decay(t.weight_decay());
  switch (t.optimizer()) {
    case plan::OPTIMIZER_MUON: {
      if (in.named.empty()) throw PlanError("training.optimizer muon: the run mode gave no parameter names");
      std::vector<torch::Tensor> matrices, others;
      std::vector<int> stacked;
      for (const auto& [name, param] : trained_only(in.named, in.trained)) {
        // LoRA's adapters are low-rank factors, not hidden matrices: AdamW's.
        const bool hidden = name.rfind("block", 0) == 0 && param.dim() == 2 && !is_lora_parameter(name);
        (hidden ? matrices : others).push_back(param);
        if (hidden) stacked.push_back(in.stacked_matrices ? in.stacked_matrices(name) : 1);
      }
      return std::make_unique<Muon>(std::move(matrices), std::move(others), adamw, std::move(stacked));
    }
    case plan::OPTIMIZER_ADAMW:
      return std::make_unique<FlatAdamW>(std::move(in.params), in.grads, adamw, in.flat_params, in.moments,
                                         std::move(in.trained));
    case plan::OPTIMIZER_SGD:
      return std::make_unique<torch::optim::SGD>(
          trained_only(std::move(in.params), in.trained),
          torch::optim::SGDOptions(t.lr()).weight_decay(t.weight_decay()));
    default:
      throw PlanError("plan field training.optimizer = " + std::to_string(t.optimizer()) +
                      " is not one this worker runs (a plan from another rondo?)");
  }
}

}  // namespace rondo
