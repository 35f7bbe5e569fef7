// The cost model: a stage's backward is twice its forward plus what it recomputes; selective
// recomputation drops the scores from the activations and reruns only the attention cores; stage
// parameter counts add up to the model's.
#include "parallelism/cost_model.h"
#include "parallelism/model_flops.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace rondo {
namespace {

CostModel model_with(Recompute recompute) {
  return CostModel({.dims = {4, 64, 256, 1000, 128},
                    .num_attention_heads = 4,
                    .micro_batch_size = 2,
                    .recompute = recompute,
                    .device_flops = 1e12,
                    .devices_per_stage = 2});
}

TEST(CostModel, BackwardIsTwiceTheForwardPlusTheRecomputation) {
  const std::vector<StageLayers> stages = partition_layers_evenly(4, 2, 1);
  const auto none = model_with(Recompute::kNone), full = model_with(Recompute::kFull),
             selective = model_with(Recompute::kSelective);
  const auto plain = none.stage_costs(stages, 1e-5, 1e10);
  const auto rerun = full.stage_costs(stages, 1e-5, 1e10);
  const auto cores = selective.stage_costs(stages, 1e-5, 1e10);
  for (size_t i = 0; i < stages.size(); ++i) {
    const double f = none.forward_flops(stages[i]) / 2e12;  // two devices per stage
    EXPECT_DOUBLE_EQ(plain.f[i], f);
    EXPECT_DOUBLE_EQ(plain.b[i], 2 * f);
    EXPECT_DOUBLE_EQ(plain.w[i], f);
    EXPECT_DOUBLE_EQ(rerun.b[i], 3 * f);
    // Two layers a stage, each rerunning 4 s^2 h b FLOPs of attention.
    EXPECT_DOUBLE_EQ(cores.b[i], 2 * f + 2 * 4.0 * 128 * 128 * 64 * 2 / 2e12);
  }
  EXPECT_DOUBLE_EQ(plain.p2p_bytes, 2.0 * 128 * 64 * 4);
  EXPECT_DOUBLE_EQ(plain.p2p_latency, 1e-5);
}

TEST(CostModel, SelectiveRecomputationDropsTheScoresFromALayersActivations) {
  const double tokens = 256;
  // 34 s b h + 5 a s^2 b two-byte values (Korthikanti et al.), in float32.
  EXPECT_DOUBLE_EQ(model_with(Recompute::kNone).layer_activation_bytes(tokens),
                   tokens * 64 * (34 + 5.0 * 4 * 128 / 64) * 2);
  EXPECT_DOUBLE_EQ(model_with(Recompute::kSelective).layer_activation_bytes(tokens), tokens * 64 * 34 * 2);
}

// An MoE block computes the router and its tokens' top-k experts; a dense one its MLP.
TEST(CostModel, AnMoeBlockCostsItsTopKExperts) {
  const GptDims dense{4, 64, 256, 1000, 128};
  const GptDims moe{
      4, 64, 256, 1000, 128, /*num_experts=*/8, /*experts_held=*/4, /*moe_topk=*/2, /*moe_layer_freq=*/2};
  const double h = 64, f = 256;
  EXPECT_DOUBLE_EQ(block_linear_flops_per_token(moe, 0), 2 * (4 * h * h + 2 * 2 * h * f + h * 8));
  EXPECT_DOUBLE_EQ(block_linear_flops_per_token(moe, 1), block_linear_flops_per_token(dense, 1));
  EXPECT_DOUBLE_EQ(blocks_linear_flops_per_token(moe, 0, 4),
                   2 * block_linear_flops_per_token(moe, 0) + 2 * block_linear_flops_per_token(dense, 0));
  // Parameters: layers 0 and 2 hold a router and 4 of the 8 experts.
  const int64_t mlp = 64 * 256 + 256 + 256 * 64 + 64;
  EXPECT_EQ(block_parameters(moe, 2) - block_parameters(dense, 2), 64 * 8 + 3 * mlp);
  // The exchanges' exposed seconds land on each MoE block of a stage, forward and backward.
  const std::vector<StageLayers> stages = {{0, 0, 3, true, false}, {1, 3, 1, false, true}};
  const auto plain = CostModel({.dims = moe}).stage_costs(stages, 0, 1e9);
  const auto exchanged =
      CostModel({.dims = moe, .moe_exchange_forward_s = 0.5, .moe_exchange_backward_s = 1.0})
          .stage_costs(stages, 0, 1e9);
  EXPECT_DOUBLE_EQ(exchanged.f[0] - plain.f[0], 2 * 0.5);  // blocks 0 and 2
  EXPECT_DOUBLE_EQ(exchanged.b[0] - plain.b[0], 2 * 1.0);
  EXPECT_DOUBLE_EQ(exchanged.f[1], plain.f[1]);  // block 3 is dense
  EXPECT_DOUBLE_EQ(exchanged.w[0], plain.w[0]);
}

// An MoE block keeps its rows' activations in place of the dense MLP's: every token's top-k
// assignments within the capacity, each an expert's input and output, the gated output and the
// expert's two hidden ones.
TEST(CostModel, AnMoeBlockKeepsItsRowsActivations) {
  const GptDims moe{
      4, 64, 256, 1000, 128, /*num_experts=*/8, /*experts_held=*/4, /*moe_topk=*/2, /*moe_layer_freq=*/2};
  const double tokens = 256, h = 64, f = 256;
  const auto all_kept = CostModel({.dims = moe, .moe_capacity_factor = 1.5});
  EXPECT_DOUBLE_EQ(all_kept.moe_mlp_activation_bytes(tokens), tokens * (h + 8 + 2 * (3 * h + 2 * f)) * 4);
  EXPECT_DOUBLE_EQ(all_kept.moe_layer_extra_activation_bytes(tokens),
                   all_kept.moe_mlp_activation_bytes(tokens) - tokens * h * 18 * 2);
  // A capacity of half the assignments keeps half the rows.
  const auto half = CostModel({.dims = moe, .moe_capacity_factor = 0.5});
  EXPECT_DOUBLE_EQ(half.moe_mlp_activation_bytes(tokens), tokens * (h + 8 + 1 * (3 * h + 2 * f)) * 4);
  EXPECT_EQ(all_kept.moe_layers({0, 0, 3, true, false}), 2);  // blocks 0 and 2
  EXPECT_EQ(all_kept.moe_layers({1, 3, 1, false, true}), 0);
}

TEST(CostModel, StagesAddUpToTheModel) {
  const auto costs = model_with(Recompute::kNone);
  double sum = 0;
  for (const auto& st : model_atoms(4)) sum += costs.parameters(st);
  EXPECT_DOUBLE_EQ(sum, static_cast<double>(model_parameters(costs.spec().dims)));
  EXPECT_THROW(recompute_from_name("sometimes"), std::invalid_argument);
}

}  // namespace
}  // namespace rondo

namespace rondo {
namespace {

TEST(ModelParameters, TiedEmbeddingsCountTheMatrixOnceWhereOneStageHoldsBothEnds) {
  GptDims d{2, 64, 256, 1000, 32};
  d.llama_style = true;
  d.num_attention_heads = 4;
  d.num_query_groups = 4;
  const int64_t untied = model_parameters(d);
  d.tied_embeddings = true;
  EXPECT_EQ(model_parameters(d), untied - 1000 * 64);
  // Pipelined, the last stage keeps its copy: the stages add up to more than the model.
  EXPECT_EQ(stage_parameters(d, 0, 1, true, false) + stage_parameters(d, 1, 1, false, true), untied);
}

}  // namespace
}  // namespace rondo
