#include "parallelism/moe_cost.h"

#include <algorithm>
#include <numeric>

#include "common/errors.h"

namespace rondo {

namespace {

constexpr double kDegreeMargin = 0.02;

}  // namespace

LinearCost LinearCost::fit(const std::vector<std::pair<double, double>>& samples) {
  if (samples.empty()) return {};
  double mean_n = 0, mean_t = 0;
  for (const auto& [n, t] : samples) {
    mean_n += n;
    mean_t += t;
  }
  mean_n /= static_cast<double>(samples.size());
  mean_t /= static_cast<double>(samples.size());
  double cov = 0, var = 0;
  for (const auto& [n, t] : samples) {
    cov += (n - mean_n) * (t - mean_t);
    var += (n - mean_n) * (n - mean_n);
  }
  LinearCost c;
  c.beta_s = var > 0 ? std::max(0.0, cov / var) : 0.0;
  c.alpha_s = std::max(0.0, mean_t - c.beta_s * mean_n);
  return c;
}

nlohmann::json MoeCosts::to_json() const {
  return {{"alltoall", {{"alpha_s", alltoall.alpha_s}, {"beta_s_per_byte", alltoall.beta_s}}},
          {"expert", {{"alpha_s", expert.alpha_s}, {"beta_s_per_flop", expert.beta_s}}},
          {"expert_backward",
           {{"alpha_s", expert_backward.alpha_s}, {"beta_s_per_flop", expert_backward.beta_s}}},
          {"source", source}};
}

MoeCosts MoeCosts::from_json(const nlohmann::json& j, const std::string& key) {
  try {
    MoeCosts c;
    c.alltoall = {j.at("alltoall").at("alpha_s").get<double>(),
                  j.at("alltoall").at("beta_s_per_byte").get<double>()};
    c.expert = {j.at("expert").at("alpha_s").get<double>(),
                j.at("expert").at("beta_s_per_flop").get<double>()};
    const auto& b = j.at("expert_backward");
    c.expert_backward = {b.at("alpha_s").get<double>(), b.at("beta_s_per_flop").get<double>()};
    c.source = j.value("source", std::string());
    if (c.alltoall.alpha_s < 0 || c.alltoall.beta_s < 0 || c.expert.alpha_s < 0 || c.expert.beta_s < 0 ||
        c.expert_backward.alpha_s < 0 || c.expert_backward.beta_s < 0)
      throw ConfigError(key, "a cost is negative");
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(
        key,
        std::string("not a moe_costs.json (alltoall and expert, alpha_s and beta_s_per_...): ") + e.what());
  }
}

MoeLayerWork moe_layer_work(double tokens, int64_t topk, double capacity_factor, int64_t hidden, int64_t ffn,
                            int64_t experts, int members) {
  return {.rows = tokens * static_cast<double>(topk) * std::min(1.0, capacity_factor),
          .hidden = hidden,
          .ffn = ffn,
          .local_experts = experts / std::max(1, members),
          .members = members};
}

double predict_expert_pipeline(const MoeCosts& costs, const MoeLayerWork& w, int degree, bool backward,
                               int atoms) {
  const double d = degree;
  const double calls = atoms > degree ? static_cast<double>(atoms) / d : 1.0;  // per expert and chunk
  const double off_rank = w.members > 1 ? static_cast<double>(w.members - 1) / w.members : 0.0;
  const double bytes = w.rows * static_cast<double>(w.hidden) * 4.0 * off_rank / d;
  const double exchange = w.members > 1 ? costs.alltoall.at(bytes) : 0.0;
  const double latency = w.members > 1 ? costs.alltoall.alpha_s : 0.0;
  // Two GEMMs of 2 * rows * hidden * ffn FLOPs each per expert call.
  const double flops = 4.0 * (w.rows / d / calls / static_cast<double>(w.local_experts)) *
                       static_cast<double>(w.hidden) * static_cast<double>(w.ffn);
  const double per_call = backward ? costs.expert_backward.at(flops) : costs.expert.at(flops);
  const double compute = static_cast<double>(w.local_experts) * calls * per_call;
  double total = 2.0 * exchange;  // the first chunk's way in, the last chunk's way out
  for (int c = 0; c < degree; ++c) {
    // A dispatch and a combine in flight together share the link's bandwidth but wait their
    // latency side by side.
    const int transfers = (c + 1 < degree ? 1 : 0) + (c > 0 ? 1 : 0);
    const double link = transfers == 0 ? 0.0 : latency + transfers * (exchange - latency);
    total += std::max(compute, link);
  }
  return total;
}

const std::vector<int>& moe_degree_candidates() {
  static const std::vector<int> degrees = [] {
    std::vector<int> d(16);
    std::iota(d.begin(), d.end(), 1);
    return d;
  }();
  return degrees;
}

const std::vector<int>& moe_profiled_degrees() {
  static const std::vector<int> degrees = {1, 2, 4, 8, 16};
  return degrees;
}

MoeDegreeChoice choose_moe_degrees(const MoeCosts& costs, const MoeLayerWork& work) {
  MoeDegreeChoice choice;
  for (int d : moe_degree_candidates()) {
    choice.forward_s[d] = predict_expert_pipeline(costs, work, d, false);
    choice.backward_s[d] = predict_expert_pipeline(costs, work, d, true);
  }
  struct Pair {
    int forward, backward;
    double seconds;
  };
  std::vector<Pair> pairs;
  double best = 0;
  for (int f : moe_degree_candidates()) {
    for (int b : moe_degree_candidates()) {
      const int atoms = std::lcm(f, b);
      const double s = predict_expert_pipeline(costs, work, f, false, atoms) +
                       predict_expert_pipeline(costs, work, b, true, atoms);
      pairs.push_back({f, b, s});
      if (pairs.size() == 1 || s < best) {
        best = s;
        choice.fastest_forward = f;
        choice.fastest_backward = b;
      }
    }
  }
  const auto chunks = [](const Pair& p) {
    return std::make_pair(p.forward + p.backward, std::lcm(p.forward, p.backward));
  };
  const Pair* chosen = nullptr;
  for (const auto& p : pairs) {
    if (p.seconds <= best * (1 + kDegreeMargin) && (!chosen || chunks(p) < chunks(*chosen))) chosen = &p;
  }
  choice.forward = chosen->forward;
  choice.backward = chosen->backward;
  choice.seconds = chosen->seconds;
  return choice;
}

}  // namespace rondo
