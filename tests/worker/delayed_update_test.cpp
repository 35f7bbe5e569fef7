// DelayedUpdate (worker/delayed_update.h), used the way the trainer uses it -- step t computes on
// version t % 2, then begin(t) updates the optimizer's weights on a thread -- against a reference
// written out from the rule: g_t = grad f_t(C_t), u_t = the optimizer's update from g_t at W(t),
// W(t+1) = W(t) - u_t (error_feedback: - (u_t - u_{t-1})), C_t = W(t-1) (weight_prediction:
// W(t-1) - u_{t-2}; velocity_prediction: W(t-1) - v_{t-2}, v the updates' moving average); for
// FlatAdamW and Muon, every correction. Also: a save/load round trip
// mid-run continues exactly.
#include <gtest/gtest.h>

#include <array>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "worker/delayed_update.h"
#include "worker/flat_adamw.h"
#include "worker/muon.h"

namespace rondo {
namespace {

using Weights = std::vector<torch::Tensor>;  // {matrix [8, 12], bias [12]}

constexpr int kSteps = 12;
const auto kOptions = torch::optim::AdamWOptions(0.02).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1);

Weights initial() {
  torch::manual_seed(3);
  return {torch::randn({8, 12}), torch::randn({12})};
}

Weights leaves(const Weights& w) {
  Weights out;
  for (const auto& t : w) out.push_back(t.detach().clone().requires_grad_(true));
  return out;
}

// Step t's loss on `w`, backpropagated into w's gradients.
double loss_and_grad(int t, const Weights& w) {
  torch::manual_seed(1000 + t);
  const auto x = torch::randn({16, 8}), y = torch::randn({16, 12});
  const auto loss = (torch::mm(x, w[0]) + w[1] - y).pow(2).mean();
  loss.backward();
  return loss.item<double>();
}

// The product's optimizers over `params`, whose gradients are `grads` back to back.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::string& kind, Weights params,
                                                        const torch::Tensor& grads) {
  if (kind == "muon") return std::make_unique<Muon>(Weights{params[0]}, Weights{params[1]}, kOptions);
  return std::make_unique<FlatAdamW>(params, grads, kOptions);
}

void view_grads(Weights& params, const torch::Tensor& flat) {
  int64_t offset = 0;
  for (auto& p : params) {
    p.mutable_grad() = flat.narrow(0, offset, p.numel()).view_as(p);
    offset += p.numel();
  }
}

// The setup the trainer builds: master weights with their optimizer, two compute versions.
struct Delayed {
  Weights master;
  torch::Tensor master_grads;
  std::array<Weights, 2> versions;
  std::array<torch::Tensor, 2> version_grads;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<DelayedUpdate> delayed;

  Delayed(const std::string& kind, DelayCorrection correction) {
    master = leaves(initial());
    master_grads = torch::zeros({8 * 12 + 12});
    view_grads(master, master_grads);
    optimizer = make_optimizer(kind, master, master_grads);
    std::array<Weights, 2> params;
    for (size_t k = 0; k < 2; ++k) {
      versions[k] = leaves(Weights{torch::zeros({8, 12}), torch::zeros({12})});
      version_grads[k] = torch::zeros_like(master_grads);
      view_grads(versions[k], version_grads[k]);
      params[k] = versions[k];
    }
    delayed = std::make_unique<DelayedUpdate>(*optimizer, master, params, correction);
  }

  double step(int t) {
    const auto& w = versions[static_cast<size_t>(DelayedUpdate::version(t))];
    const double loss = loss_and_grad(t, w);
    auto grads = version_grads[static_cast<size_t>(DelayedUpdate::version(t))];
    delayed->begin(t, [this, grads] {
      master_grads.copy_(grads);
      grads.zero_();
      optimizer->step();
      master_grads.zero_();
    });
    return loss;
  }
};

// The rule written out, with its own optimizer of the same kind stepping a scratch copy.
std::vector<double> reference(const std::string& kind, DelayCorrection correction, Weights& final_weights) {
  auto scratch = leaves(initial());
  auto scratch_grads = torch::zeros({8 * 12 + 12});
  view_grads(scratch, scratch_grads);
  auto optimizer = make_optimizer(kind, scratch, scratch_grads);
  std::vector<Weights> w{initial()};  // w[t] = W(t)
  std::vector<Weights> u;             // u[t] = u_t
  std::vector<Weights> velocity;      // velocity[t] = v_t = 0.9 v_{t-1} + 0.1 u_t, v_{-1} = 0
  std::vector<double> losses;
  torch::NoGradGuard outside;
  for (int t = 0; t < kSteps; ++t) {
    Weights compute;
    const Weights& base = w[static_cast<size_t>(std::max(0, t - 1))];
    for (size_t i = 0; i < base.size(); ++i) {
      auto c = base[i].clone();
      if (correction == DelayCorrection::kWeightPrediction && t >= 2) c -= u[static_cast<size_t>(t - 2)][i];
      if (correction == DelayCorrection::kVelocityPrediction && t >= 2)
        c -= velocity[static_cast<size_t>(t - 2)][i];
      compute.push_back(c);
    }
    auto at = leaves(compute);
    {
      torch::AutoGradMode grad(true);
      losses.push_back(loss_and_grad(t, at));
    }
    for (size_t i = 0; i < scratch.size(); ++i) {
      scratch[i].copy_(w.back()[i]);
      scratch[i].mutable_grad().copy_(at[i].grad());
    }
    optimizer->step();
    Weights ut, next;
    for (size_t i = 0; i < scratch.size(); ++i) {
      ut.push_back(w.back()[i] - scratch[i]);
      auto n = w.back()[i] - ut[i];
      if (correction == DelayCorrection::kErrorFeedback && t >= 1) n -= ut[i] - u.back()[i];
      next.push_back(n);
    }
    Weights vt;
    for (size_t i = 0; i < ut.size(); ++i)
      vt.push_back(0.1 * ut[i] + (velocity.empty() ? torch::zeros_like(ut[i]) : 0.9 * velocity.back()[i]));
    velocity.push_back(vt);
    u.push_back(ut);
    w.push_back(next);
  }
  final_weights = w.back();
  return losses;
}

double rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-12); }

class DelayedUpdateRule : public testing::TestWithParam<std::tuple<std::string, DelayCorrection>> {};

TEST_P(DelayedUpdateRule, FollowsTheDelayedRuleStepByStep) {
  const auto& [kind, correction] = GetParam();
  Weights want_final;
  const auto want = reference(kind, correction, want_final);
  Delayed d(kind, correction);
  for (int t = 0; t < kSteps; ++t) {
    const double got = d.step(t);
    EXPECT_LT(rel(got, want[static_cast<size_t>(t)]), 1e-5)
        << "step " << t << ": " << got << " vs " << want[t];
  }
  d.delayed->wait();
  for (size_t i = 0; i < want_final.size(); ++i) {
    const double diff = ((d.master[i].detach() - want_final[i]).norm() / want_final[i].norm()).item<double>();
    EXPECT_LT(diff, 1e-5) << "parameter " << i << " after " << kSteps << " steps";
  }
  // W(-1) = W(0): the second step computes on the initial weights, as the first.
  EXPECT_LT(rel(want[1], loss_and_grad(1, leaves(initial()))), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(OptimizersAndCorrections, DelayedUpdateRule,
                         testing::Combine(testing::Values("adamw", "muon"),
                                          testing::Values(DelayCorrection::kNone,
                                                          DelayCorrection::kErrorFeedback,
                                                          DelayCorrection::kWeightPrediction,
                                                          DelayCorrection::kVelocityPrediction)),
                         [](const auto& info) {
                           const auto c = std::get<1>(info.param);
                           return std::get<0>(info.param) +
                                  std::string(c == DelayCorrection::kNone            ? "_none"
                                              : c == DelayCorrection::kErrorFeedback ? "_error_feedback"
                                              : c == DelayCorrection::kWeightPrediction
                                                  ? "_weight_prediction"
                                                  : "_velocity_prediction");
                         });

TEST(DelayedUpdate, ASaveAndLoadMidRunContinuesExactly) {
  for (const auto correction : {DelayCorrection::kErrorFeedback, DelayCorrection::kWeightPrediction,
                                DelayCorrection::kVelocityPrediction}) {
    Delayed whole("muon", correction);
    std::vector<double> want;
    for (int t = 0; t < kSteps; ++t) want.push_back(whole.step(t));

    Delayed first("muon", correction);
    for (int t = 0; t < 5; ++t) first.step(t);
    first.delayed->wait();
    std::stringstream bytes;
    {
      torch::serialize::OutputArchive archive;
      first.delayed->save(archive);
      archive.save_to(bytes);
    }
    Delayed resumed("muon", correction);
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < first.master.size(); ++i) resumed.master[i].copy_(first.master[i]);
      torch::serialize::InputArchive archive;
      archive.load_from(bytes);
      resumed.delayed->load(archive);
    }
    for (int t = 5; t < kSteps; ++t) {
      EXPECT_EQ(resumed.step(t), want[static_cast<size_t>(t)]) << "step " << t;
    }
    resumed.delayed->wait();
    whole.delayed->wait();
  }
}

}  // namespace
}  // namespace rondo
