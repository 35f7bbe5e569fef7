// StagedModel and the GPT family: selective recomputation changes what the forward keeps, not the
// numbers; checkpoint names and initialisation stay GPT's; the
// planner's parameter formula counts exactly what each stage of the real model holds.
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "parallelism/model_parameters.h"
#include "worker/gpt_family.h"
#include "worker/staged_model.h"

namespace rondo {
namespace {

// Loss and every parameter's gradient of one forward and backward on fixed tokens.
std::pair<double, std::vector<torch::Tensor>> loss_and_gradients(bool selective) {
  ModelShape shape{2, 32, 4, 64, 256, 16, selective};
  StagedModel model(gpt_family(), shape, /*seed=*/7);
  torch::manual_seed(3);
  const auto tokens = torch::randint(0, 256, {2, 17}, torch::kLong);
  const auto logits = model->forward_stage(0, tokens.slice(1, 0, 16));
  const auto loss = model->loss(logits, tokens.slice(1, 1, 17));
  loss.backward();
  std::vector<torch::Tensor> grads;
  for (const auto& p : model->parameters()) grads.push_back(p.grad().clone());
  return {loss.item<double>(), grads};
}

TEST(StagedModel, SelectiveRecomputationGivesTheSameGradientsBitwise) {
  const auto plain = loss_and_gradients(false), selective = loss_and_gradients(true);
  EXPECT_EQ(plain.first, selective.first);
  ASSERT_EQ(plain.second.size(), selective.second.size());
  for (size_t i = 0; i < plain.second.size(); ++i) {
    EXPECT_TRUE(torch::equal(plain.second[i], selective.second[i])) << "parameter " << i;
  }
}

TEST(StagedModel, PackedDocumentsGiveEachDocumentsOwnLogits) {
  // Three documents of 20, 30 and 14 tokens packed into one row of 64, beside a second row that
  // holds one document: every document's logits equal those of running it alone.
  ModelShape shape{2, 32, 4, 64, 256, 64};
  StagedModel model(gpt_family(), shape, /*seed=*/11);
  torch::manual_seed(5);
  const auto tokens = torch::randint(0, 256, {2, 64}, torch::kLong);
  auto documents = torch::zeros({2, 64}, torch::kLong);
  documents[0].slice(0, 20, 50).fill_(1);
  documents[0].slice(0, 50, 64).fill_(2);
  const auto packed = model->forward_stage(0, tokens, documents);
  for (const auto& [row, begin, end] :
       {std::tuple<int64_t, int64_t, int64_t>{0, 0, 20}, {0, 20, 50}, {0, 50, 64}, {1, 0, 64}}) {
    const auto alone = model->forward_stage(0, tokens[row].slice(0, begin, end).unsqueeze(0));
    const auto got = packed[row].slice(0, begin, end).unsqueeze(0);
    EXPECT_LT((got - alone).abs().max().item<double>(), 1e-5)
        << "row " << row << " tokens " << begin << "-" << end;
  }
  // Without documents the second and third documents see the first: different logits.
  const auto unpacked = model->forward_stage(0, tokens);
  EXPECT_GT((unpacked[0].slice(0, 20, 64) - packed[0].slice(0, 20, 64)).abs().max().item<double>(), 1e-3);
  // ... but the first document sees the same tokens either way.
  EXPECT_LT((unpacked[0].slice(0, 0, 20) - packed[0].slice(0, 0, 20)).abs().max().item<double>(), 1e-6);
}

TEST(StagedModel, ThePlannersParameterFormulaCountsEachStageExactly) {
  for (const auto& [layers, hidden, ffn, vocab, seq] :
       {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{4, 32, 64, 256, 16}, {3, 48, 80, 300, 24}}) {
    const ModelShape shape{layers, hidden, 4, ffn, vocab, seq};
    const GptDims dims{layers, hidden, ffn, vocab, seq};
    // Uneven stages: embedding with one block, the rest, and the LM head alone.
    const std::vector<StageLayers> stages = {{0, 0, 1, true, false},
                                             {1, 1, static_cast<int>(layers) - 1, false, false},
                                             {2, static_cast<int>(layers), 0, false, true}};
    int64_t total = 0;
    for (const auto& st : stages) {
      StagedModel part(gpt_family(), shape, std::vector<StageLayers>{st}, /*seed=*/1);
      int64_t held = 0;
      for (const auto& p : part->parameters()) held += p.numel();
      EXPECT_EQ(held, stage_parameters(dims, st.first_layer, st.num_layers, st.has_embedding, st.has_lm_head))
          << "stage " << st.index;
      total += held;
    }
    EXPECT_EQ(total, model_parameters(dims));
  }
}

// With MoE layers (0 and 2 of 4, 6 experts, this rank holding 3 of them at ep 2) a stage holds a
// router and its share of the experts in those layers: the formula counts them too.
TEST(StagedModel, ThePlannersParameterFormulaCountsAnExpertShare) {
  ModelShape shape{4, 32, 4, 64, 256, 16};
  shape.moe = {
      .hidden_size = 32, .num_experts = 6, .topk = 2, .capacity_factor = 1.0, .aux_loss_coeff = 0.01};
  shape.moe_layer_freq = 2;
  shape.moe_runtime = std::make_shared<MoeRuntime>(ExpertParallel{nullptr, nullptr, 2, 1});
  const GptDims dims{
      4, 32, 64, 256, 16, /*num_experts=*/6, /*experts_held=*/3, /*moe_topk=*/2, /*moe_layer_freq=*/2};
  for (const auto& st : std::vector<StageLayers>{{0, 0, 1, true, false}, {1, 1, 3, false, true}}) {
    StagedModel part(gpt_family(), shape, std::vector<StageLayers>{st}, /*seed=*/1);
    int64_t held = 0;
    for (const auto& p : part->parameters()) held += p.numel();
    EXPECT_EQ(held, stage_parameters(dims, st.first_layer, st.num_layers, st.has_embedding, st.has_lm_head))
        << "stage " << st.index;
  }
  EXPECT_EQ(StagedModel(gpt_family(), shape, 1)->moe_layers().size(), 2u);
}

// The checkpoint keys (and the seeds every parameter starts from) are the names GPT's parameters
// have had since plan version 2; a family's parts must not rename them, or old checkpoints stop
// loading (system.checkpoint_compat loads one written before the model became parts).
TEST(ModelFamily, GptKeepsItsParameterNamesAndOrder) {
  const ModelShape shape{2, 32, 4, 64, 256, 16};
  StagedModel model(model_family("gpt"), shape, /*seed=*/3);
  std::vector<std::string> names;
  for (const auto& item : model->named_parameters()) names.push_back(item.key());
  std::vector<std::string> want = {"token_embedding.weight", "position_embedding.weight"};
  for (const std::string b : {"block0.", "block1."}) {
    for (const char* leaf :
         {"ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
          "ln2.weight", "ln2.bias", "fc.weight", "fc.bias", "fc_out.weight", "fc_out.bias"}) {
      want.push_back(b + leaf);
    }
  }
  want.insert(want.end(), {"final_norm.weight", "final_norm.bias", "lm_head.weight"});
  EXPECT_EQ(names, want);
}

TEST(ModelFamily, AnUnknownFamilyIsRefusedNamingTheKeyAndTheFamilies) {
  EXPECT_EQ(model_family_names(), (std::vector<std::string>{"gpt", "llama", "qwen2", "qwen3"}));
  try {
    model_family("mamba");
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(
        std::string(e.what()).find(
            "model.family: no model family 'mamba' in this worker (families: gpt, llama, qwen2, qwen3)"),
        std::string::npos)
        << e.what();
  }
}

// Each parameter starts from the family's rule: residual projections at 0.02/sqrt(2 layers),
// other matrices at 0.02, biases zero, norms one.
TEST(ModelFamily, GptInitialisesEachParameterByItsRule) {
  const ModelShape shape{8, 64, 4, 256, 256, 16};
  StagedModel model(gpt_family(), shape, /*seed=*/9);
  for (const auto& item : model->named_parameters()) {
    const auto& name = item.key();
    const auto& p = item.value();
    if (name.find("ln") != std::string::npos || name.find("norm") != std::string::npos) {
      EXPECT_TRUE(torch::equal(p, name.ends_with("weight") ? torch::ones_like(p) : torch::zeros_like(p)))
          << name;
    } else if (p.dim() == 1) {
      EXPECT_EQ(p.abs().max().item<double>(), 0.0) << name;
    } else {
      const bool residual = name.ends_with("proj.weight") || name.ends_with("fc_out.weight");
      EXPECT_NEAR(p.std().item<double>(), residual ? 0.02 / 4.0 : 0.02, 0.002) << name;
    }
  }
}

}  // namespace
}  // namespace rondo
