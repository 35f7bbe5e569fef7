// FlatAdamW against LibTorch's own AdamW: the same parameters after several steps (the same ops
// on the same values, so bitwise), decay only on matrices, and a save/load round trip that
// rebinds parameters a module load has replaced.
#include "worker/flat_adamw.h"

#include <gtest/gtest.h>

#include <sstream>

namespace rondo {
namespace {

struct Model {
  std::vector<torch::Tensor> params;
  torch::Tensor flat_grads;
};

// Two matrices and two vectors with gradients viewing one flat buffer (plus a spare slot).
Model make_model(uint64_t seed) {
  torch::manual_seed(seed);
  Model m;
  m.params = {torch::randn({5, 3}), torch::randn({3}), torch::randn({4, 2}), torch::randn({7})};
  int64_t n = 0;
  for (auto& p : m.params) n += p.numel();
  m.flat_grads = torch::zeros({n + 1});
  int64_t offset = 0;
  for (auto& p : m.params) {
    p.requires_grad_(true);
    p.mutable_grad() = m.flat_grads.narrow(0, offset, p.numel()).view_as(p);
    offset += p.numel();
  }
  return m;
}

void fill_grads(Model& m, int step) {
  torch::manual_seed(1000 + step);
  m.flat_grads.copy_(torch::randn(m.flat_grads.sizes()));
}

torch::optim::AdamWOptions options() {
  return torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1);
}

TEST(FlatAdamW, MatchesTorchAdamWBitwise) {
  Model a = make_model(7), b = make_model(7);
  FlatAdamW flat(a.params, a.flat_grads, options());
  // LibTorch's AdamW with the worker's former grouping: weight decay on matrices only.
  auto no_decay = std::make_unique<torch::optim::AdamWOptions>(options());
  no_decay->weight_decay(0.0);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{b.params[0], b.params[2]});
  groups.emplace_back(std::vector<torch::Tensor>{b.params[1], b.params[3]}, std::move(no_decay));
  torch::optim::AdamW reference(std::move(groups), options());
  for (int step = 1; step <= 6; ++step) {
    fill_grads(a, step);
    fill_grads(b, step);
    flat.step();
    reference.step();
    for (size_t i = 0; i < a.params.size(); ++i) {
      EXPECT_TRUE(torch::equal(a.params[i], b.params[i])) << "parameter " << i << " after step " << step;
    }
  }
}

TEST(FlatAdamW, DecaysMatricesOnly) {
  // No gradient and no momentum yet: the step is the weight decay alone.
  Model a = make_model(5);
  std::vector<torch::Tensor> before;
  for (const auto& p : a.params) before.push_back(p.detach().clone());
  FlatAdamW flat(a.params, a.flat_grads, options());
  flat.step();
  const double shrink = 1 - 0.01 * 0.1;
  EXPECT_TRUE(torch::allclose(a.params[0], before[0] * shrink, 1e-6, 0));
  EXPECT_TRUE(torch::allclose(a.params[2], before[2] * shrink, 1e-6, 0));
  EXPECT_TRUE(torch::equal(a.params[1], before[1]));
  EXPECT_TRUE(torch::equal(a.params[3], before[3]));
}

TEST(FlatAdamW, SaveLoadRoundTripRebindsParameters) {
  Model a = make_model(3), b = make_model(3);
  FlatAdamW first(a.params, a.flat_grads, options());
  for (int step = 1; step <= 3; ++step) {
    fill_grads(a, step);
    first.step();
  }
  std::stringstream buffer;
  torch::serialize::OutputArchive out;
  first.save(out);
  out.save_to(buffer);

  FlatAdamW second(b.params, b.flat_grads, options());
  // As a module load does: new storage for each parameter, holding a's values.
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < b.params.size(); ++i) b.params[i].set_(a.params[i].clone());
  }
  EXPECT_THROW(second.step(), std::exception);  // unbound parameters are refused
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  second.load(in);
  for (int step = 4; step <= 6; ++step) {
    fill_grads(a, step);
    fill_grads(b, step);
    first.step();
    second.step();
  }
  for (size_t i = 0; i < a.params.size(); ++i) EXPECT_TRUE(torch::equal(a.params[i], b.params[i])) << i;
}

TEST(FlatAdamW, RefusesAnotherOptimizersState) {
  Model a = make_model(1);
  torch::optim::AdamW other(a.params, options());
  std::stringstream buffer;
  torch::serialize::OutputArchive out;
  other.save(out);
  out.save_to(buffer);
  FlatAdamW flat(a.params, a.flat_grads, options());
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  try {
    flat.load(in);
    FAIL() << "loaded a torch::optim::AdamW state";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("not rondo's flat AdamW"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rondo
