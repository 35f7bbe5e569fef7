// The Llama-style families (worker/llama_family.h) against a forward written out here in double
// precision, head by head and pair by pair (RMSNorm, rotary positions, grouped-query attention,
// Qwen2's QKV biases, Qwen3's QK-norm, SwiGLU), Llama 3's frequency scaling against its piecewise rule,
// positions that restart with each packed document, and the planner's parameter formula against the real
// parts.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numbers>
#include <string>
#include <vector>

#include "parallelism/model_parameters.h"
#include "worker/llama_family.h"
#include "worker/staged_model.h"

namespace rondo {
namespace {

using torch::Tensor;

ModelShape tiny_shape(int64_t groups, RotarySpec rotary = {}) {
  ModelShape s{/*num_layers=*/2,          /*hidden_size=*/32,
               /*num_attention_heads=*/4, /*ffn_hidden_size=*/48,
               /*vocab_size=*/256,        /*seq_length=*/16};
  s.num_query_groups = groups;
  s.rotary = rotary;
  s.norm_epsilon = 1e-6;
  return s;
}

// Llama 3's rule, one frequency at a time.
std::vector<double> reference_frequencies(const RotarySpec& r, int64_t head) {
  std::vector<double> out;
  for (int64_t i = 0; i < head / 2; ++i) {
    const double f = 1.0 / std::pow(r.base, static_cast<double>(2 * i) / static_cast<double>(head));
    if (r.scaling_factor <= 1) {
      out.push_back(f);
      continue;
    }
    const double context = static_cast<double>(r.original_max_positions),
                 wavelength = 2 * std::numbers::pi / f;
    if (wavelength < context / r.high_freq_factor) {
      out.push_back(f);
    } else if (wavelength > context / r.low_freq_factor) {
      out.push_back(f / r.scaling_factor);
    } else {
      const double smooth =
          (context / wavelength - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      out.push_back((1 - smooth) * f / r.scaling_factor + smooth * f);
    }
  }
  return out;
}

Tensor rms(const Tensor& x, const Tensor& w, double eps) {
  return x / (x.pow(2).mean(-1, true) + eps).sqrt() * w;
}

// x [t, head] rotated pair (i, i + head / 2) by position x frequency i.
Tensor rotate(const Tensor& x, const std::vector<int64_t>& positions, const std::vector<double>& freq) {
  auto out = x.clone();
  const int64_t half = x.size(1) / 2;
  auto a = x.accessor<double, 2>();
  auto o = out.accessor<double, 2>();
  for (int64_t p = 0; p < x.size(0); ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle =
          static_cast<double>(positions[static_cast<size_t>(p)]) * freq[static_cast<size_t>(i)];
      const double x1 = a[p][i], x2 = a[p][i + half];
      o[p][i] = x1 * std::cos(angle) - x2 * std::sin(angle);
      o[p][i + half] = x2 * std::cos(angle) + x1 * std::sin(angle);
    }
  }
  return out;
}

// Logits [t, vocab] of one sequence at `positions`, from the model's own weights in double.
Tensor reference_logits(StagedModel& model, const ModelShape& s, bool qk_norm, const Tensor& tokens,
                        const std::vector<int64_t>& positions) {
  std::map<std::string, Tensor> w;
  for (const auto& p : model->named_parameters()) w[p.key()] = p.value().detach().to(torch::kFloat64);
  const int64_t t = tokens.size(0), h = s.hidden_size, heads = s.num_attention_heads,
                hd = s.head_size > 0 ? s.head_size : h / heads;
  const int64_t groups = s.num_query_groups > 0 ? s.num_query_groups : heads;
  const auto freq = reference_frequencies(s.rotary, hd);
  const double eps = s.norm_epsilon;
  auto x = w.at("token_embedding.weight").index_select(0, tokens);
  const auto mask = torch::full({t, t}, -INFINITY, torch::kFloat64).triu(1);
  for (int64_t l = 0; l < s.num_layers; ++l) {
    const std::string b = "block" + std::to_string(l) + ".";
    auto qkv = rms(x, w.at(b + "norm1.weight"), eps).matmul(w.at(b + "attn.qkv.weight").t());
    if (w.count(b + "attn.qkv.bias")) qkv = qkv + w.at(b + "attn.qkv.bias");
    std::vector<Tensor> outs;
    for (int64_t j = 0; j < heads; ++j) {
      const int64_t g = j / (heads / groups);
      auto q = qkv.slice(1, j * hd, (j + 1) * hd), k = qkv.slice(1, (heads + g) * hd, (heads + g + 1) * hd);
      const auto v = qkv.slice(1, (heads + groups + g) * hd, (heads + groups + g + 1) * hd);
      if (qk_norm) {
        q = rms(q, w.at(b + "attn.q_norm.weight"), eps);
        k = rms(k, w.at(b + "attn.k_norm.weight"), eps);
      }
      q = rotate(q.contiguous(), positions, freq);
      k = rotate(k.contiguous(), positions, freq);
      const auto scores = q.matmul(k.t()) / std::sqrt(static_cast<double>(hd)) + mask;
      outs.push_back(torch::softmax(scores, -1).matmul(v));
    }
    x = x + torch::cat(outs, 1).matmul(w.at(b + "attn.proj.weight").t());
    const auto n = rms(x, w.at(b + "norm2.weight"), eps);
    const auto gate = n.matmul(w.at(b + "gate.weight").t()), up = n.matmul(w.at(b + "up.weight").t());
    x = x + (gate * torch::sigmoid(gate) * up).matmul(w.at(b + "down.weight").t());
  }
  return rms(x, w.at("final_norm.weight"), eps).matmul(w.at("lm_head.weight").t());
}

double relative_error(const Tensor& got, const Tensor& want) {
  return (got.to(torch::kFloat64) - want).abs().max().item<double>() / want.abs().max().item<double>();
}

std::vector<int64_t> iota(int64_t n, int64_t from = 0) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(from + i);
  return v;
}

// Biases start at zero; random ones make the reference check them. Returns how many there are.
int randomise_biases(StagedModel& model) {
  torch::NoGradGuard no_grad;
  int biases = 0;
  for (auto& p : model->named_parameters()) {
    if (p.key().ends_with(".bias")) {
      EXPECT_EQ(p.value().abs().max().item<float>(), 0.0f) << p.key();
      p.value().normal_(0.0, 0.5);
      ++biases;
    }
  }
  return biases;
}

struct Case {
  const char* family;
  int64_t groups;
  RotarySpec rotary;
  int64_t head_size = 0;
};

TEST(LlamaFamily, LogitsEqualTheForwardWrittenOutHeadByHead) {
  const std::vector<Case> cases = {
      {"llama", 2, {}},                   // grouped-query attention
      {"llama", 4, {.base = 500000.0}},   // one key/value head per head
      {"qwen2", 2, {.base = 1000000.0}},  // biases on queries, keys and values
      {"qwen3", 1, {.base = 1000000.0}},
      {"qwen3", 2, {}, /*head_size=*/16},  // heads wider than hidden / heads, as Qwen3's  // one key/value
                                           // head for all, QK-norm
      {"llama", 2, {.scaling_factor = 8, .original_max_positions = 64}}};  // Llama 3 scaling
  for (const auto& c : cases) {
    auto shape = tiny_shape(c.groups, c.rotary);
    shape.head_size = c.head_size;
    StagedModel model(model_family(c.family), shape, /*seed=*/11);
    torch::manual_seed(5);
    EXPECT_EQ(randomise_biases(model), std::string(c.family) == "qwen2" ? 2 : 0) << c.family;
    const auto tokens = torch::randint(0, 256, {2, 16}, torch::kLong);
    const auto logits = model->forward_stage(0, tokens);
    for (int64_t row = 0; row < 2; ++row) {
      const auto want =
          reference_logits(model, shape, std::string(c.family) == "qwen3", tokens[row], iota(16));
      EXPECT_LT(relative_error(logits[row], want), 1e-5)
          << c.family << " groups " << c.groups << " row " << row;
    }
  }
}

TEST(LlamaFamily, Llama3FrequencyScalingFollowsItsRule) {
  // Head size 16, base 10000: wavelengths from 6.3 to 3.5e4 fall in all three bands of a
  // 64-token original context (short kept, between blended, long slowed).
  const RotarySpec spec{
      .scaling_factor = 8, .low_freq_factor = 1, .high_freq_factor = 4, .original_max_positions = 64};
  const auto got = rotary_frequencies(spec, 16);
  const auto want = reference_frequencies(spec, 16);
  ASSERT_EQ(got.numel(), 8);
  int kept = 0, slowed = 0;
  const auto plain = reference_frequencies(RotarySpec{}, 16);
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[static_cast<int64_t>(i)].item<double>(), want[i], 1e-6 * want[i]) << "frequency " << i;
    kept += want[i] == plain[i];
    slowed += std::abs(want[i] - plain[i] / 8) < 1e-12;
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(slowed, 0);
  EXPECT_LT(kept + slowed, 8);  // some blended
}

// A packed row's second document starts again at position 0: its logits equal the document alone.
TEST(LlamaFamily, PositionsRestartWithEachPackedDocument) {
  for (const char* family : {"llama", "qwen2", "qwen3"}) {
    const auto shape = tiny_shape(2);
    StagedModel model(model_family(family), shape, /*seed=*/3);
    randomise_biases(model);
    torch::manual_seed(9);
    const auto tokens = torch::randint(0, 256, {1, 16}, torch::kLong);
    auto documents = torch::zeros({1, 16}, torch::kLong);
    documents.slice(1, 6, 16).fill_(1);
    const auto packed = model->forward_stage(0, tokens, documents);
    const auto alone = model->forward_stage(0, tokens.slice(1, 6, 16));
    EXPECT_LT((packed.slice(1, 6, 16) - alone).abs().max().item<double>(), 1e-5) << family;
    const auto want =
        reference_logits(model, shape, std::string(family) == "qwen3", tokens[0].slice(0, 6, 16), iota(10));
    EXPECT_LT(relative_error(alone[0], want), 1e-5) << family;
  }
}

TEST(LlamaFamily, ThePlannersParameterFormulaCountsEachStage) {
  for (const char* family : {"llama", "qwen2", "qwen3"}) {
    auto shape = tiny_shape(2);
    shape.num_layers = 4;
    shape.head_size = std::string(family) == "qwen3" ? 16 : 0;
    shape.moe = {
        .hidden_size = 32, .num_experts = 4, .topk = 2, .capacity_factor = 1.0, .aux_loss_coeff = 0.01};
    shape.moe_layer_freq = 2;
    shape.moe_runtime = std::make_shared<MoeRuntime>(ExpertParallel{nullptr, nullptr, 2, 0});
    GptDims dims{
        4, 32, 48, 256, 16, /*num_experts=*/4, /*experts_held=*/2, /*moe_topk=*/2, /*moe_layer_freq=*/2};
    dims.llama_style = true;
    dims.qk_norm = std::string(family) == "qwen3";
    dims.qkv_bias = std::string(family) == "qwen2";
    dims.num_attention_heads = 4;
    dims.num_query_groups = 2;
    dims.head_size = shape.head_size;
    for (const auto& st : std::vector<StageLayers>{{0, 0, 1, true, false}, {1, 1, 3, false, true}}) {
      StagedModel part(model_family(family), shape, std::vector<StageLayers>{st}, /*seed=*/1);
      int64_t held = 0;
      for (const auto& p : part->parameters()) held += p.numel();
      EXPECT_EQ(held, stage_parameters(dims, st.first_layer, st.num_layers, st.has_embedding, st.has_lm_head))
          << family << " stage " << st.index;
    }
  }
}

}  // namespace
}  // namespace rondo
