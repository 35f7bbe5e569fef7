#include "pipeline/stage_costs.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "common/errors.h"

namespace rondo {

double StageCosts::transfer_time() const {
  return p2p_latency + (p2p_bandwidth > 0 ? p2p_bytes / p2p_bandwidth : 0.0);
}

StageCosts uniform_stage_costs(int num_stages, int virtual_stages, double f, double b, double w) {
  StageCosts c;
  const double v = virtual_stages;
  c.f.assign(static_cast<size_t>(num_stages), f / v);
  c.b.assign(static_cast<size_t>(num_stages), b / v);
  c.w.assign(static_cast<size_t>(num_stages), w / v);
  return c;
}

StageCosts stage_costs_from_layers(const std::vector<double>& layer_forward, const std::vector<int>& bounds) {
  StageCosts c;
  for (size_t s = 0; s + 1 < bounds.size(); ++s) {
    const double f =
        std::accumulate(layer_forward.begin() + bounds[s], layer_forward.begin() + bounds[s + 1], 0.0);
    c.f.push_back(f);
    c.b.push_back(2 * f);
    c.w.push_back(f);
  }
  return c;
}

std::vector<int> partition_min_max(const std::vector<double>& costs, int parts,
                                   const std::vector<double>& memory, double memory_cap) {
  const int n = static_cast<int>(costs.size());
  if (parts < 1 || parts > n) {
    throw PlanError("cannot split " + std::to_string(n) + " layers into " + std::to_string(parts) +
                    " stages");
  }
  std::vector<double> prefix(static_cast<size_t>(n) + 1, 0.0), mem_prefix(static_cast<size_t>(n) + 1, 0.0);
  for (int i = 0; i < n; ++i) {
    prefix[static_cast<size_t>(i) + 1] = prefix[static_cast<size_t>(i)] + costs[static_cast<size_t>(i)];
    mem_prefix[static_cast<size_t>(i) + 1] =
        mem_prefix[static_cast<size_t>(i)] + (memory.empty() ? 0.0 : memory[static_cast<size_t>(i)]);
  }
  auto fits = [&](int a, int b) {
    return memory_cap <= 0 ||
           mem_prefix[static_cast<size_t>(b)] - mem_prefix[static_cast<size_t>(a)] <= memory_cap;
  };
  constexpr double kInf = std::numeric_limits<double>::infinity();
  // best[k][i]: the smallest possible largest stage when the first i layers form k stages.
  std::vector<std::vector<double>> best(static_cast<size_t>(parts) + 1,
                                        std::vector<double>(static_cast<size_t>(n) + 1, kInf));
  std::vector<std::vector<int>> cut(static_cast<size_t>(parts) + 1,
                                    std::vector<int>(static_cast<size_t>(n) + 1, -1));
  best[0][0] = 0;
  for (int k = 1; k <= parts; ++k) {
    for (int i = k; i <= n - (parts - k); ++i) {
      for (int j = k - 1; j < i; ++j) {
        if (best[static_cast<size_t>(k) - 1][static_cast<size_t>(j)] == kInf || !fits(j, i)) continue;
        const double v = std::max(best[static_cast<size_t>(k) - 1][static_cast<size_t>(j)],
                                  prefix[static_cast<size_t>(i)] - prefix[static_cast<size_t>(j)]);
        if (v < best[static_cast<size_t>(k)][static_cast<size_t>(i)]) {
          best[static_cast<size_t>(k)][static_cast<size_t>(i)] = v;
          cut[static_cast<size_t>(k)][static_cast<size_t>(i)] = j;
        }
      }
    }
  }
  if (best[static_cast<size_t>(parts)][static_cast<size_t>(n)] == kInf) {
    throw PlanError("no partition of " + std::to_string(n) + " layers into " + std::to_string(parts) +
                    " stages fits the memory cap of " + std::to_string(memory_cap));
  }
  std::vector<int> bounds(static_cast<size_t>(parts) + 1);
  bounds[static_cast<size_t>(parts)] = n;
  for (int k = parts, i = n; k > 0; --k) {
    i = cut[static_cast<size_t>(k)][static_cast<size_t>(i)];
    bounds[static_cast<size_t>(k) - 1] = i;
  }
  return bounds;
}

}  // namespace rondo
