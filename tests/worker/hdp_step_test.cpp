// An HDP step (worker/hdp_step.h) on 4 ranks played by threads: each rank runs the sub-batches the
// planner gives it -- short sequences packed alone, long ones split over groups of 2 to 4 ranks
// with ring attention round them -- and the ranks' losses and gradients, summed, equal one rank
// computing every sequence whole, within 1e-5 relative, under each policy's plan.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include "comms/in_process_communicator.h"
#include "parallelism/hdp_planner.h"
#include "worker/hdp_step.h"
#include "worker/model_family.h"
#include "worker/staged_model.h"

namespace rondo {
namespace {

constexpr int kRanks = 4;
const ModelShape kShape{2, 32, 4, 64, 64, 32};

double relative(const torch::Tensor& got, const torch::Tensor& want) {
  return (got - want).abs().max().item<double>() / std::max(1e-12, want.abs().max().item<double>());
}

void expect_hdp_step_equals_one_rank(HdpPolicy policy) {
  SCOPED_TRACE(hdp_policy_name(policy));
  // 32 tokens need 4 ranks at 8 per rank, 20 need 3, 12 two; the rest fit one.
  const std::vector<int64_t> lengths{32, 7, 5, 20, 3, 12, 9, 6, 2, 16};
  torch::manual_seed(11);
  std::vector<torch::Tensor> sequences;
  for (int64_t l : lengths) sequences.push_back(torch::randint(0, kShape.vocab_size, {l + 1}, torch::kInt64));
  const ContextParallelCost cost({.dims = {kShape.num_layers, kShape.hidden_size, kShape.ffn_hidden_size,
                                           kShape.vocab_size, kShape.seq_length},
                                  .device_flops = 1e9});
  const HdpPlan plan = plan_hdp(lengths, policy, {kRanks, 8}, cost);
  int grouped = 0;
  for (const auto& p : plan.placements) grouped += p.ranks.size() > 1;
  EXPECT_GE(grouped, 3);

  // One rank, every sequence whole: the mean loss over all targets and its gradients.
  StagedModel ref(model_family("gpt"), kShape, /*seed=*/5);
  int64_t targets = 0;
  for (int64_t l : lengths) targets += l;
  double ref_loss = 0;
  for (const auto& t : sequences) {
    const auto logits = ref->forward_stage(0, t.slice(0, 0, -1).unsqueeze(0));
    const auto loss = ref->loss(logits, t.slice(0, 1).unsqueeze(0), targets);
    loss.backward();
    ref_loss += loss.item<double>();
  }

  std::vector<StagedModel> models;
  for (int r = 0; r < kRanks; ++r) models.emplace_back(model_family("gpt"), kShape, /*seed=*/5);
  auto world = InProcessCommunicator::create_world(kRanks);
  std::vector<double> losses(kRanks, 0.0);
  std::vector<std::exception_ptr> errors(kRanks);
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r) {
    threads.emplace_back([&, r] {
      try {
        world[r]->set_timeout(std::chrono::seconds(20));
        losses[r] = hdp_forward_backward(models[r], sequences, plan, r, *world[r]);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  double loss = 0;
  for (double l : losses) loss += l;
  EXPECT_NEAR(loss, ref_loss, 1e-5 * ref_loss);
  const auto want = ref->parameters();
  for (size_t i = 0; i < want.size(); ++i) {
    auto sum = torch::zeros_like(want[i]);
    for (auto& m : models) {
      const auto g = m->parameters()[i].grad();
      if (g.defined()) sum += g;
    }
    EXPECT_LT(relative(sum, want[i].grad()), 1e-5) << "parameter " << i;
  }
}

TEST(HdpStep, RondoPlanOnFourRanksEqualsOneRank) { expect_hdp_step_equals_one_rank(HdpPolicy::kRondo); }
TEST(HdpStep, MegatronPlanOnFourRanksEqualsOneRank) { expect_hdp_step_equals_one_rank(HdpPolicy::kMegatron); }
TEST(HdpStep, StaticMeshOnFourRanksEqualsOneRank) { expect_hdp_step_equals_one_rank(HdpPolicy::kStatic); }

}  // namespace
}  // namespace rondo
