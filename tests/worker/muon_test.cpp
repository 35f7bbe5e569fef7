// Muon (worker/muon.h): the Newton-Schulz output is U f(S) V^T for g = U S V^T, f within the
// documented band, close to the SVD polar factor U V^T; a step follows the documented rule for
// the hidden matrices and torch::optim::AdamW's for the rest; the state round-trips through a
// checkpoint archive.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "worker/muon.h"

namespace rondo {
namespace {

TEST(Muon, NewtonSchulzIsAPolarFactorWithSingularValuesInTheBand) {
  torch::manual_seed(11);
  for (const auto& shape : std::vector<std::vector<int64_t>>{{64, 128}, {128, 64}, {96, 96}, {32, 512}}) {
    const auto g = torch::randn(shape, torch::kFloat32);
    const auto [u, s, vh] = torch::linalg::svd(g, /*full_matrices=*/false, /*driver=*/c10::nullopt);
    const auto o = newton_schulz(g);
    ASSERT_EQ(o.sizes(), g.sizes());
    // In g's singular bases the output is diagonal ...
    const auto d = torch::mm(torch::mm(u.t(), o), vh.t());
    const auto diag = d.diagonal();
    const double off = (d - torch::diag(diag)).abs().max().item<double>();
    EXPECT_LT(off, 1e-4) << shape[0] << "x" << shape[1];
    // ... with every singular value of at least 1% of the largest mapped into [0.65, 1.2] ...
    const auto kept = s / s.max() >= 0.01;
    EXPECT_GE(diag.masked_select(kept).min().item<double>(), 0.65) << shape[0] << "x" << shape[1];
    EXPECT_LE(diag.masked_select(kept).max().item<double>(), 1.2) << shape[0] << "x" << shape[1];
    // ... so it lies near the polar factor U V^T (exact orthogonalisation).
    const auto polar = torch::mm(u, vh);
    EXPECT_LT(((o - polar).norm() / polar.norm()).item<double>(), 0.3) << shape[0] << "x" << shape[1];
  }
}

struct Params {
  torch::Tensor matrix, bias;
};

Params make_params() {
  torch::manual_seed(5);
  return {torch::randn({16, 24}).requires_grad_(true), torch::randn({24}).requires_grad_(true)};
}

void set_grads(Params& p, int step) {
  torch::manual_seed(100 + step);
  p.matrix.mutable_grad() = torch::randn({16, 24});
  p.bias.mutable_grad() = torch::randn({24});
}

const auto kOptions = torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1);

TEST(Muon, AStepFollowsTheRuleForMatricesAndAdamWForTheRest) {
  auto p = make_params();
  Muon muon({p.matrix}, {p.bias}, kOptions);
  // The reference: the rule written out for the matrix, torch's AdamW for the bias.
  auto w = p.matrix.detach().clone();
  auto bias = p.bias.detach().clone().requires_grad_(true);
  // Biases and norms do not decay (as FlatAdamW).
  torch::optim::AdamW adamw({bias}, torch::optim::AdamWOptions(kOptions).weight_decay(0.0));
  auto momentum = torch::zeros_like(w);
  for (int step = 1; step <= 3; ++step) {
    set_grads(p, step);
    bias.mutable_grad() = p.bias.grad().clone();
    const auto g = p.matrix.grad();
    momentum = kMuonMomentum * momentum + g;
    const auto o = newton_schulz(g + kMuonMomentum * momentum) * (kMuonRmsScale * std::sqrt(24.0));
    w = w - 0.01 * (o + 0.1 * w);
    muon.step();
    adamw.step();
    EXPECT_LE((p.matrix - w).abs().max().item<double>(), 1e-6) << "step " << step;
    EXPECT_LE((p.bias - bias).abs().max().item<double>(), 1e-6) << "step " << step;
  }
}

// A fused QKV weight [3h, h] is three matrices: each is orthogonalised and scaled on its own (as
// the reference implementations, which keep Q, K and V apart), not the stack as one.
TEST(Muon, StackedMatricesAreOrthogonalisedOneByOne) {
  torch::manual_seed(9);
  const auto u = torch::randn({3 * 16, 16});
  const auto split = muon_update(u, 3);
  for (int k = 0; k < 3; ++k) {
    const auto part = u.slice(0, 16 * k, 16 * (k + 1));
    const auto want = newton_schulz(part) * (kMuonRmsScale * std::sqrt(16.0));
    EXPECT_LE((split.slice(0, 16 * k, 16 * (k + 1)) - want).abs().max().item<double>(), 1e-6)
        << "matrix " << k;
  }
  // Each square part's singular values sit near 1 (times the scale); the stack's as one do not
  // follow from them: orthogonalising the stack mixes Q, K and V.
  const auto whole = muon_update(u, 1);
  EXPECT_GT((whole - split).abs().max().item<double>(), 1e-2);
  EXPECT_THROW(muon_update(u, 5), std::invalid_argument);
  // Through the optimizer: matrix 0 stacks 3, so its update is the split one.
  auto w = torch::zeros({48, 16}).requires_grad_(true);
  Muon muon({w}, {}, torch::optim::AdamWOptions(0.01).weight_decay(0.0), {3});
  w.mutable_grad() = u.clone();
  muon.step();
  // U = G + mu (mu B + G) with B = 0 at the first step: (1 + mu) G, and NS5 is scale-free.
  EXPECT_LE((w + 0.01 * split).abs().max().item<double>(), 1e-6);
}

TEST(Muon, StateRoundTripsThroughACheckpointArchive) {
  auto a = make_params(), b = make_params();
  Muon first({a.matrix}, {a.bias}, kOptions), second({b.matrix}, {b.bias}, kOptions);
  for (int step = 1; step <= 2; ++step) {
    set_grads(a, step);
    first.step();
  }
  std::stringstream buffer;
  {
    torch::serialize::OutputArchive out;
    first.save(out);
    out.save_to(buffer);
  }
  {
    torch::NoGradGuard no_grad;
    b.matrix.copy_(a.matrix);
    b.bias.copy_(a.bias);
  }
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  second.load(in);
  set_grads(a, 3);
  set_grads(b, 3);
  first.step();
  second.step();
  EXPECT_TRUE(torch::equal(a.matrix, b.matrix));
  EXPECT_TRUE(torch::equal(a.bias, b.bias));
  // A state of other shapes is refused, naming what is wrong.
  auto c = make_params();
  Muon other({torch::zeros({8, 8}, torch::requires_grad())}, {c.bias}, kOptions);
  torch::serialize::InputArchive again;
  buffer.seekg(0);
  again.load_from(buffer);
  EXPECT_THROW(other.load(again), std::runtime_error);
}

}  // namespace
}  // namespace rondo
