// The MoE pipeline degree the closed-form cost model chooses (parallelism/moe_cost.h, what `auto`
// runs), judged by brute force over a sweep of layer shapes: every pair of forward and backward
// degrees in 1..16 simulated event by event (parallelism/moe_pipeline_sim.h: the executor's order,
// a fluid link shared by the transfers in flight), against the chosen pair simulated the same way,
// a fixed degree 2 (a Tutel-style default) and no overlap (degree 1). Costs: each moe_costs.json
// named on the command line (a run's profiled, fitted alpha and beta), and without one a GPU-class
// set written out below.
//
//   rondo_moe_degree_sweep [--verbose] [moe_costs.json ...]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "parallelism/moe_cost.h"
#include "parallelism/moe_pipeline_sim.h"

namespace {

using rondo::MoeCosts;
using rondo::MoeLayerWork;

struct Shape {
  int64_t tokens, hidden, experts;
  int ep;
};

std::vector<Shape> shapes() {
  std::vector<Shape> out;
  for (int64_t tokens : {2048, 4096, 8192, 16384}) {
    for (int64_t hidden : {1024, 2048, 4096}) {
      for (int64_t experts : {8, 16, 64}) {
        for (int ep : {2, 4, 8, 16}) {
          if (ep <= experts) out.push_back({tokens, hidden, experts, ep});
        }
      }
    }
  }
  return out;
}

// An A100-class GPU (an expert GEMM at 200 TFLOP/s, 20 us a kernel call, its backward twice the
// work) on a 200 Gbit/s network (all-to-all 30 us + bytes at 25 GB/s).
MoeCosts gpu_class() {
  return {.alltoall = {30e-6, 1.0 / 25e9},
          .expert = {20e-6, 1.0 / 200e12},
          .expert_backward = {40e-6, 2.0 / 200e12},
          .source =
              "GPU-class figures: expert 200 TFLOP/s + 20 us a call (backward 2x), all-to-all 30 us + "
              "25 GB/s"};
}

MoeCosts read_costs(const char* path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(std::string("cannot read ") + path);
  nlohmann::json j;
  in >> j;
  auto costs = MoeCosts::from_json(j, path);
  costs.source = std::string(path) + ": " + costs.source;
  return costs;
}

struct Summary {
  std::vector<double> chosen_over_best, fastest_over_best, over_d2, over_d1, best_over_d2;
  int exact = 0;
};

double geomean(const std::vector<double>& v) {
  double log_sum = 0;
  for (double x : v) log_sum += std::log(x);
  return std::exp(log_sum / static_cast<double>(v.size()));
}

void print_range(const char* what, const std::vector<double>& v) {
  std::printf("  %-44s geomean %.3f, min %.3f, max %.3f\n", what, geomean(v),
              *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
}

void sweep(const MoeCosts& costs, bool verbose) {
  std::printf("costs: %s\n", costs.source.c_str());
  std::printf(
      "  all-to-all %.1f us + %.4f ns/byte; expert %.1f us + %.6f ns/FLOP, backward %.1f us + %.6f ns/FLOP\n",
      costs.alltoall.alpha_s * 1e6, costs.alltoall.beta_s * 1e9, costs.expert.alpha_s * 1e6,
      costs.expert.beta_s * 1e9, costs.expert_backward.alpha_s * 1e6, costs.expert_backward.beta_s * 1e9);
  if (verbose)
    std::printf("  %6s %6s %4s %3s  %7s %7s %9s %8s %8s\n", "tokens", "hidden", "E", "ep", "chosen", "best",
                "chosen/bf", "d2/chsn", "d1/chsn");
  Summary s;
  for (const auto& sh : shapes()) {
    const MoeLayerWork work = rondo::moe_layer_work(static_cast<double>(sh.tokens), 2, 1.0, sh.hidden,
                                                    4 * sh.hidden, sh.experts, sh.ep);
    const auto choice = rondo::choose_moe_degrees(costs, work);
    const auto best = rondo::best_simulated_degrees(costs, work, 16);
    const double chosen = rondo::simulate_degree_pair(costs, work, choice.forward, choice.backward);
    const double d2 = rondo::simulate_degree_pair(costs, work, 2, 2);
    const double d1 = rondo::simulate_degree_pair(costs, work, 1, 1);
    s.chosen_over_best.push_back(chosen / best.seconds);
    s.fastest_over_best.push_back(
        rondo::simulate_degree_pair(costs, work, choice.fastest_forward, choice.fastest_backward) /
        best.seconds);
    s.over_d2.push_back(d2 / chosen);
    s.over_d1.push_back(d1 / chosen);
    s.best_over_d2.push_back(d2 / best.seconds);
    if (choice.forward == best.forward && choice.backward == best.backward) ++s.exact;
    if (verbose)
      std::printf("  %6lld %6lld %4lld %3d  %3d/%-3d %3d/%-3d %9.4f %8.3f %8.3f\n",
                  static_cast<long long>(sh.tokens), static_cast<long long>(sh.hidden),
                  static_cast<long long>(sh.experts), sh.ep, choice.forward, choice.backward, best.forward,
                  best.backward, chosen / best.seconds, d2 / chosen, d1 / chosen);
  }
  const auto n = s.chosen_over_best.size();
  const auto within =
      std::count_if(s.chosen_over_best.begin(), s.chosen_over_best.end(), [](double r) { return r <= 1.02; });
  std::printf("  %zu shapes (tokens 2K-16K per rank, hidden 1K-4K, ffn 4x, 8-64 experts, top-2, ep 2-16)\n",
              n);
  std::printf(
      "  chosen pair within 2%% of the brute-force best: %lld of %zu (the same pair: %d); worst %.4f, mean "
      "%.4f\n",
      static_cast<long long>(within), n, s.exact,
      *std::max_element(s.chosen_over_best.begin(), s.chosen_over_best.end()),
      std::accumulate(s.chosen_over_best.begin(), s.chosen_over_best.end(), 0.0) / static_cast<double>(n));
  print_range("the model's fastest pair (no margin) / best:", s.fastest_over_best);
  print_range("speed-up of the chosen over fixed degree 2:", s.over_d2);
  print_range("speed-up of the chosen over no overlap (1):", s.over_d1);
  print_range("brute force's best over fixed degree 2:", s.best_over_d2);
}

}  // namespace

int main(int argc, char** argv) {
  bool verbose = false;
  std::vector<MoeCosts> sets;
  try {
    for (int i = 1; i < argc; ++i) {
      if (std::strcmp(argv[i], "--verbose") == 0) {
        verbose = true;
      } else {
        sets.push_back(read_costs(argv[i]));
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rondo_moe_degree_sweep: %s\n", e.what());
    return 2;
  }
  if (sets.empty()) sets.push_back(gpu_class());
  std::printf(
      "anchor: FSMoE (arXiv 2501.10714) reports 1.18-1.22x over Tutel / DeepSpeed-MoE on whole models\n");
  for (const auto& costs : sets) sweep(costs, verbose);
  return 0;
}
