// FlatAdamW: AdamW (decoupled weight decay, bias-corrected moments: the update rule of
// torch::optim::AdamW, op for op) over parameters and gradients that each live in one flat
// buffer, so that a step is a handful of vectorised passes over the whole model instead of about
// ten small kernels per parameter. Parameters with two or more dimensions decay; others do not.
//
// It keeps the parameters in one flat buffer -- its own, or `flat_params` when given (node-shared
// memory for stateless workers, with the moments there too) -- copying them in and making each
// parameter a view of its slice. Loading a
// module replaces parameter storage, so load() (which a checkpoint restore calls after loading the model)
// binds them again; step() refuses to run on unbound parameters. Checkpoints hold `step`, `exp_avg` and
// `exp_avg_sq` as flat tensors.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace rondo {

class FlatAdamW : public torch::optim::Optimizer {
 public:
  // `flat_grads` holds the parameters' gradients back to back, in `params` order, from element 0
  // (it may be longer); so does `flat_params` when defined, and `moments` ([2, >= n], zeroed:
  // exp_avg and exp_avg_sq) when the state must live in given memory. `trained` false marks a
  // frozen parameter (empty: none): never decayed, and with its gradient zero never moved.
  FlatAdamW(std::vector<torch::Tensor> params, torch::Tensor flat_grads, torch::optim::AdamWOptions options,
            torch::Tensor flat_params = {}, torch::Tensor moments = {}, std::vector<bool> trained = {});

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  // Copies the parameters' current values into the flat buffer and makes them views of it again.
  void bind_parameters();

  // The checkpointed state as an archive holds it (what save() writes and load() reads; a
  // re-partitioned checkpoint assembles one from several stages', worker/checkpoint_repartition.h).
  struct State {
    torch::Tensor step, exp_avg, exp_avg_sq;
  };
  static void write_state(torch::serialize::OutputArchive& archive, const State& state);
  // False when the archive holds no flat AdamW state.
  static bool read_state(torch::serialize::InputArchive& archive, State& state);

 private:
  std::vector<torch::Tensor> params_;
  std::vector<bool> decays_;
  torch::Tensor flat_params_, flat_grads_, exp_avg_, exp_avg_sq_;
  int64_t step_ = 0;
};

}  // namespace rondo
