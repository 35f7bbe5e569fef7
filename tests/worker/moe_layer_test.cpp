// The mixture-of-experts MLP (parallelism/exec/moe_layer.h): the router's choices, capacity,
// dropped tokens and load-balancing loss against a direct token-by-token computation; the layer's
// output and the gradient the load-balancing loss adds; and expert parallelism over 2 and 4 ranks
// (threads over the in-process communicator) against the same layer on one rank, with and without
// tokens dropped by the capacity; and what it keeps for its backward against the planner's count.
#include <gtest/gtest.h>
#include <malloc.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <map>
#include <numeric>
#include <thread>
#include <vector>

#include "comms/collectives.h"
#include "comms/in_process_communicator.h"
#include "parallelism/cost_model.h"
#include "parallelism/exec/moe_layer.h"

namespace rondo {
namespace {

constexpr int64_t kHidden = 8, kFfn = 16;

class TestExpert : public ExpertMlp {
 public:
  explicit TestExpert(int64_t hidden = kHidden, int64_t ffn = kFfn)
      : fc(register_module("fc", torch::nn::Linear(hidden, ffn))),
        fc_out(register_module("fc_out", torch::nn::Linear(ffn, hidden))) {}
  torch::Tensor forward(const torch::Tensor& x) override { return fc_out(torch::gelu(fc(x))); }
  torch::nn::Linear fc, fc_out;
};

MoeOptions options(int64_t experts, int64_t topk, double capacity, double coeff = 0.0) {
  return {.hidden_size = kHidden,
          .num_experts = experts,
          .topk = topk,
          .capacity_factor = capacity,
          .aux_loss_coeff = coeff};
}

MoeMlp make_layer(const MoeOptions& o, std::shared_ptr<MoeRuntime> runtime = nullptr) {
  return MoeMlp(o, /*layer=*/0, std::move(runtime), [] { return std::make_shared<TestExpert>(); });
}

double relative_error(const torch::Tensor& got, const torch::Tensor& want) {
  return (got - want).abs().max().item<double>() / std::max(1e-12, want.abs().max().item<double>());
}

// One (token, expert) assignment as the direct computation sees it.
struct Assignment {
  int64_t token, expert;
  double gate;
};

// Top-k by logit, gates the softmax over the chosen logits, queues filled first choices first.
std::vector<Assignment> direct_routing(const torch::Tensor& logits, const MoeOptions& o,
                                       std::vector<int64_t>& routed) {
  const int64_t n = logits.size(0);
  const auto capacity = static_cast<int64_t>(std::ceil(o.capacity_factor * n * o.topk / o.num_experts));
  std::vector<std::vector<std::pair<int64_t, double>>> choices(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) {
    std::vector<int64_t> order(static_cast<size_t>(o.num_experts));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return logits[t][a].item<double>() > logits[t][b].item<double>();
    });
    double sum = 0;
    for (int64_t c = 0; c < o.topk; ++c)
      sum += std::exp(logits[t][order[static_cast<size_t>(c)]].item<double>());
    for (int64_t c = 0; c < o.topk; ++c) {
      const auto e = order[static_cast<size_t>(c)];
      choices[static_cast<size_t>(t)].emplace_back(e, std::exp(logits[t][e].item<double>()) / sum);
    }
  }
  routed.assign(static_cast<size_t>(o.num_experts), 0);
  std::vector<Assignment> kept;
  for (int64_t c = 0; c < o.topk; ++c) {
    for (int64_t t = 0; t < n; ++t) {
      const auto [e, gate] = choices[static_cast<size_t>(t)][static_cast<size_t>(c)];
      if (routed[static_cast<size_t>(e)]++ < capacity) kept.push_back({t, e, gate});
    }
  }
  std::stable_sort(kept.begin(), kept.end(),
                   [](const auto& a, const auto& b) { return a.expert < b.expert; });
  return kept;
}

TEST(MoeRouting, MatchesADirectComputationWithTokensDropped) {
  torch::manual_seed(3);
  const auto o = options(4, 2, 0.75);
  const auto logits = torch::randn({12, 4});
  const auto r = route_tokens(logits, o);
  std::vector<int64_t> routed;
  const auto want = direct_routing(logits, o, routed);
  EXPECT_EQ(r.capacity, 5);  // ceil(0.75 * 12 * 2 / 4)
  EXPECT_EQ(r.routed, routed);
  ASSERT_EQ(r.token.numel(), static_cast<int64_t>(want.size()));
  ASSERT_LT(want.size(), 24u) << "the capacity must drop some assignments";
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(r.token[static_cast<int64_t>(i)].item<int64_t>(), want[i].token) << i;
    EXPECT_EQ(r.expert[static_cast<int64_t>(i)].item<int64_t>(), want[i].expert) << i;
    EXPECT_NEAR(r.gate[static_cast<int64_t>(i)].item<double>(), want[i].gate, 1e-6) << i;
  }
  int64_t kept = 0;
  for (size_t e = 0; e < 4; ++e) {
    EXPECT_EQ(r.kept[e], std::min<int64_t>(routed[e], 5));
    kept += r.kept[e];
  }
  EXPECT_EQ(kept, r.token.numel());
}

TEST(MoeRouting, LoadBalancingLossIsSwitchs) {
  torch::manual_seed(4);
  const auto o = options(4, 2, 2.0);
  const auto logits = torch::randn({10, 4});
  const auto r = route_tokens(logits, o);
  const auto probs = torch::softmax(logits, -1);
  double want = 0;
  for (int64_t e = 0; e < 4; ++e) {
    const double f = static_cast<double>(r.routed[static_cast<size_t>(e)]) / (10.0 * 2);
    want += f * probs.select(1, e).mean().item<double>();
  }
  EXPECT_NEAR(load_balancing_loss(r, 2).item<double>(), 4 * want, 1e-6);
  // Uniform routing and probabilities give exactly 1.
  MoeRouting uniform;
  uniform.probs = torch::full({8, 4}, 0.25);
  uniform.routed = {4, 4, 4, 4};
  EXPECT_NEAR(load_balancing_loss(uniform, 2).item<double>(), 1.0, 1e-6);
}

TEST(MoeMlp, OutputIsTheGatedSumOfTheKeptExperts) {
  torch::manual_seed(5);
  const auto o = options(4, 2, 0.75);
  auto layer = make_layer(o);
  const auto x = torch::randn({2, 6, kHidden});
  const auto out = layer->forward(x);
  const auto flat = x.reshape({-1, kHidden});
  const auto logits = layer->named_parameters()["router.weight"].matmul(flat.t()).t();
  std::vector<int64_t> routed, kept_per_token(12, 0);
  auto want = torch::zeros_like(flat);
  auto experts = layer->named_children();
  for (const auto& a : direct_routing(logits.detach(), o, routed)) {
    auto* expert = experts["expert" + std::to_string(a.expert)]->as<TestExpert>();
    want[a.token] += a.gate * expert->forward(flat[a.token].unsqueeze(0)).squeeze(0).detach();
    ++kept_per_token[static_cast<size_t>(a.token)];
  }
  const auto got = out.detach().reshape({-1, kHidden});
  EXPECT_LT(relative_error(got, want), 1e-5);
  EXPECT_LT(*std::min_element(kept_per_token.begin(), kept_per_token.end()), 2) << "some choices dropped";
  // A token whose every choice was dropped leaves with zeros (the block's residual passes it).
  for (int64_t t = 0; t < 12; ++t) {
    if (kept_per_token[static_cast<size_t>(t)] == 0) {
      EXPECT_EQ(got[t].abs().max().item<double>(), 0.0) << t;
    }
  }
}

TEST(MoeMlp, LoadBalancingLossReachesTheRouterThroughTheBackward) {
  torch::manual_seed(6);
  const double coeff = 0.3, scale = 0.25;
  auto runtime = std::make_shared<MoeRuntime>();
  runtime->set_loss_scale(scale);
  auto with_aux = make_layer(options(4, 2, 1.0, coeff), runtime);
  auto plain = make_layer(options(4, 2, 1.0, 0.0));
  {
    torch::NoGradGuard no_grad;
    for (auto& item : plain->named_parameters()) item.value().copy_(with_aux->named_parameters()[item.key()]);
  }
  const auto x = torch::randn({12, kHidden});
  const auto w = torch::randn({12, kHidden});
  (with_aux->forward(x) * w).sum().backward();
  // The same objective written out: the layer's output plus coeff * scale * the loss.
  const auto o = options(4, 2, 1.0);
  const auto aux =
      load_balancing_loss(route_tokens(plain->named_parameters()["router.weight"].matmul(x.t()).t(), o), 2);
  ((plain->forward(x) * w).sum() + coeff * scale * aux).backward();
  for (const auto& item : with_aux->named_parameters()) {
    EXPECT_LT(relative_error(item.value().grad(), plain->named_parameters()[item.key()].grad()), 1e-5)
        << item.key();
  }
  const auto load = runtime->take_load();
  ASSERT_EQ(load.count(0), 1u);
  EXPECT_NEAR(load.at(0).aux_loss, coeff * scale * aux.item<double>(), 1e-6);
  EXPECT_EQ(std::accumulate(load.at(0).routed.begin(), load.at(0).routed.end(), int64_t{0}), 24);
  EXPECT_TRUE(runtime->take_load().empty());  // taken
}

// ep ranks, each with its own tokens and E / ep experts, against one rank holding every expert
// run on each rank's tokens in turn: outputs and router gradients per rank, expert gradients
// summed over the ranks' tokens.
void expect_expert_parallel_equals_one_rank(int ep, double capacity_factor, ExpertDegrees degrees = {}) {
  SCOPED_TRACE("ep " + std::to_string(ep) + ", capacity factor " + std::to_string(capacity_factor) +
               ", degrees " + std::to_string(degrees.forward) + "/" + std::to_string(degrees.backward));
  torch::manual_seed(10 + ep);
  const auto o = options(8, 2, capacity_factor, 0.01);
  auto reference = make_layer(o);
  std::vector<torch::Tensor> x, w, want;
  std::map<std::string, torch::Tensor> expert_grads;
  std::vector<std::map<std::string, torch::Tensor>> router_grads(static_cast<size_t>(ep));
  int64_t dropped = 0;
  for (int r = 0; r < ep; ++r) {
    x.push_back(torch::randn({3, 5, kHidden}));
    w.push_back(torch::randn({3, 5, kHidden}));
    reference->zero_grad();
    const auto out = reference->forward(x.back());
    (out * w.back()).sum().backward();
    want.push_back(out.detach());
    for (const auto& item : reference->named_parameters()) {
      if (is_expert_parameter("block0." + item.key())) {
        auto& sum = expert_grads[item.key()];
        sum = sum.defined() ? sum + item.value().grad() : item.value().grad().clone();
      } else {
        router_grads[static_cast<size_t>(r)][item.key()] = item.value().grad().clone();
      }
    }
  }

  auto world = InProcessCommunicator::create_world(ep);
  std::vector<torch::Tensor> out(static_cast<size_t>(ep));
  std::vector<std::map<std::string, torch::Tensor>> grads(static_cast<size_t>(ep));
  std::vector<int64_t> kept(static_cast<size_t>(ep)), routed(static_cast<size_t>(ep));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(ep));
  std::vector<std::thread> threads;
  for (int r = 0; r < ep; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto& comm = *world[static_cast<size_t>(r)];
        comm.set_timeout(std::chrono::seconds(20));
        std::vector<int> all(static_cast<size_t>(ep));
        std::iota(all.begin(), all.end(), 0);
        auto back = comm.split(all);
        Collectives group(comm, nullptr), combine(*back, nullptr);
        auto runtime = std::make_shared<MoeRuntime>(ExpertParallel{&group, &combine, ep, r});
        runtime->set_degrees(degrees);
        int gaps = 0;  // FSMoE's gradient partitioning: work run between the backward's expert calls
        runtime->set_backward_gap([&gaps] { ++gaps; });
        auto layer = make_layer(o, runtime);
        {
          torch::NoGradGuard no_grad;
          for (auto& item : layer->named_parameters())
            item.value().copy_(reference->named_parameters()[item.key()]);
        }
        const auto y = layer->forward(x[static_cast<size_t>(r)]);
        EXPECT_EQ(gaps, 0) << "the forward has no gradients to reduce";
        (y * w[static_cast<size_t>(r)]).sum().backward();
        EXPECT_GE(gaps, degrees.backward) << "the backward's expert calls leave gaps for the reduction";
        out[static_cast<size_t>(r)] = y.detach();
        for (const auto& item : layer->named_parameters())
          grads[static_cast<size_t>(r)][item.key()] = item.value().grad();
        const auto load = runtime->take_load().at(0);
        kept[static_cast<size_t>(r)] = std::accumulate(load.kept.begin(), load.kept.end(), int64_t{0});
        routed[static_cast<size_t>(r)] = std::accumulate(load.routed.begin(), load.routed.end(), int64_t{0});
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  for (int r = 0; r < ep; ++r) {
    const auto& mine = grads[static_cast<size_t>(r)];
    EXPECT_EQ(static_cast<int64_t>(mine.size()), 1 + 4 * (8 / ep)) << "router + this rank's experts";
    EXPECT_LT(relative_error(out[static_cast<size_t>(r)], want[static_cast<size_t>(r)]), 1e-5)
        << "rank " << r;
    for (const auto& [name, g] : mine) {
      const auto& ref = is_expert_parameter("block0." + name) ? expert_grads.at(name)
                                                              : router_grads[static_cast<size_t>(r)].at(name);
      EXPECT_LT(relative_error(g, ref), 1e-5) << name << ", rank " << r;
    }
    dropped += routed[static_cast<size_t>(r)] - kept[static_cast<size_t>(r)];
  }
  if (capacity_factor < 1) {
    EXPECT_GT(dropped, 0) << "the capacity must drop tokens";
  } else {
    EXPECT_EQ(dropped, 0);
  }
}

TEST(MoeExpertParallel, TwoRanksEqualOne) { expect_expert_parallel_equals_one_rank(2, 8.0); }
TEST(MoeExpertParallel, FourRanksEqualOne) { expect_expert_parallel_equals_one_rank(4, 8.0); }
TEST(MoeExpertParallel, TwoRanksEqualOneWithTokensDropped) { expect_expert_parallel_equals_one_rank(2, 0.5); }
TEST(MoeExpertParallel, FourRanksEqualOneWithTokensDropped) {
  expect_expert_parallel_equals_one_rank(4, 0.5);
}
// FSMoE's pipeline: chunks of the exchanges overlapping the experts' compute, forward and backward
// degrees of their own (1, 2 and 4), tokens dropped or not.
TEST(MoeExpertParallel, PipelinedInTwoAndFourChunksEqualsOneRank) {
  for (int ep : {2, 4}) {
    for (double capacity : {0.5, 8.0}) {
      expect_expert_parallel_equals_one_rank(ep, capacity, {2, 2});
      expect_expert_parallel_equals_one_rank(ep, capacity, {4, 4});
      expect_expert_parallel_equals_one_rank(ep, capacity, {4, 2});
      expect_expert_parallel_equals_one_rank(ep, capacity, {1, 4});
    }
  }
}

// What the layer keeps for its backward, counted by glibc's allocator, against what the planner
// predicts for an MoE MLP (parallelism/cost_model.h): the input, the router's probabilities and,
// for each kept assignment, an expert's input, GELU's input and output, the expert's output and the
// gated output.
TEST(MoeMlp, KeepsTheActivationsThePlannerPredicts) {
  static constexpr int64_t hidden = 64, ffn = 256, experts = 8, tokens = 1024;
  const auto in_use = [] {
    const auto m = mallinfo2();
    return static_cast<double>(m.uordblks + m.hblkhd);
  };
  for (double capacity : {2.0, 0.5}) {
    const MoeOptions o{.hidden_size = hidden, .num_experts = experts, .topk = 2, .capacity_factor = capacity};
    auto layer = MoeMlp(o, 0, nullptr, [] { return std::make_shared<TestExpert>(hidden, ffn); });
    const double before = in_use();
    const auto x = torch::randn({4, tokens / 4, hidden});
    const auto y = layer->forward(x);
    const double kept = in_use() - before - static_cast<double>(y.numel() * 4);
    GptDims dims{1, hidden, ffn, 256, tokens / 4};
    dims.num_experts = experts;
    dims.moe_topk = 2;
    const CostModel costs({.dims = dims, .moe_capacity_factor = capacity});
    const double predicted = costs.moe_mlp_activation_bytes(tokens);
    EXPECT_NEAR(kept / predicted, 1.0, 0.1)
        << "capacity " << capacity << ": kept " << kept << " bytes, predicted " << predicted;
    y.sum().backward();
  }
}

TEST(MoeMlp, NamesExpertsByTheirIndexInTheLayer) {
  EXPECT_TRUE(is_expert_parameter("block0.expert3.fc.weight"));
  EXPECT_TRUE(is_expert_parameter("block12.expert10.fc_out.bias"));
  EXPECT_FALSE(is_expert_parameter("block0.router.weight"));
  EXPECT_FALSE(is_expert_parameter("block0.fc.weight"));
  EXPECT_FALSE(is_expert_parameter("block0.experts"));
  auto layer = make_layer(options(4, 1, 1.0));
  std::vector<std::string> names;
  for (const auto& child : layer->named_children()) names.push_back(child.key());
  EXPECT_EQ(names, (std::vector<std::string>{"router", "expert0", "expert1", "expert2", "expert3"}));
}

}  // namespace
}  // namespace rondo
