// Muon: momentum orthogonalised by a Newton-Schulz iteration, for the 2-D weight matrices of the
// hidden layers; AdamW for everything else (embeddings, norms, biases, the LM head). docs/optimizers.md
// gives the rule, the constants and where each comes from:
//   hidden matrix W with gradient G:  B <- mu B + G;  U <- G + mu B (Nesterov);
//                                     O <- NS5(U) * 0.2 * sqrt(max(rows, cols));
//                                     W <- W - lr (O + weight_decay W)
//   NS5: X <- U / (|U|_F + 1e-7), transposed to be wide; 5 times X <- a X + (b A + c A A) X with
//        A = X X^T and (a, b, c) = (3.4445, -4.7750, 2.0315).
// The other parameters follow torch::optim::AdamW's rule with the same learning rate, decaying
// only those of two or more dimensions (as FlatAdamW does). Both parts
// read each parameter's gradient where the trainer put it (p.grad()). Checkpoints hold the step,
// every momentum buffer and both AdamW moments.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace rondo {

// The Newton-Schulz iteration's constants (Jordan et al. 2024, "Muon").
inline constexpr double kMuonA = 3.4445, kMuonB = -4.7750, kMuonC = 2.0315;
inline constexpr int kMuonSteps = 5;
inline constexpr double kMuonMomentum = 0.95;
inline constexpr double kMuonRmsScale = 0.2;  // Moonlight's update scale (Liu et al. 2025)

// The orthogonalised, scaled update of a matrix from its Nesterov momentum `u`: NS5 of each of the
// `stacked` matrices u stacks along its rows, times 0.2 * sqrt(max(rows, cols)) of that matrix.
torch::Tensor muon_update(const torch::Tensor& u, int stacked = 1);

// NS5(g) for a 2-D matrix: an approximation of its polar factor U V^T (g = U S V^T) whose singular
// values lie near 1 (docs/optimizers.md measures the band), computed in float32.
torch::Tensor newton_schulz(const torch::Tensor& g, int steps = kMuonSteps);

class Muon : public torch::optim::Optimizer {
 public:
  // `matrices`: the hidden layers' 2-D weights; `others`: the rest, trained by AdamW with
  // `adamw`'s betas, eps and weight decay. The learning rate is `adamw.lr()` for both (set each
  // step through param_groups()). `stacked[i]` (empty: all 1): how many matrices matrices[i]
  // stacks along its rows (a fused QKV weight: 3); each is orthogonalised and scaled on its own.
  Muon(std::vector<torch::Tensor> matrices, std::vector<torch::Tensor> others,
       torch::optim::AdamWOptions adamw, std::vector<int> stacked = {});

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  std::vector<torch::Tensor> matrices_, others_;
  std::vector<int> stacked_;
  std::vector<torch::Tensor> momentum_, exp_avg_, exp_avg_sq_;
  double beta1_, beta2_, eps_, weight_decay_;
  int64_t step_ = 0;
};

}  // namespace rondo
