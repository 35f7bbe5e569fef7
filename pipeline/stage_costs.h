// StageCosts: how long each op of each stage takes, and what a point-to-point transfer costs.
// Built either from uniform per-rank costs (--f/--b/--w) or from per-layer forward costs grouped
// into stages; consumed by the greedy generators and the simulator.
#pragma once

#include <string>
#include <vector>

namespace rondo {

struct StageCosts {
  // Per stage: forward, full backward, and the weight-gradient part of the backward
  // (input-gradient I = b - w). With a separate backward partition (RoundPipe), b holds the
  // backward stages' durations, recomputation included, and w is unused.
  std::vector<double> f, b, w;
  // Per backward stage (empty: none): the leading part of b that does not wait for the incoming
  // gradient and so may run before it arrives: recomputation, or the fused LM-head forward of
  // RoundPipe's backward stage 0. The simulator aligns it to end when the gradient arrives.
  std::vector<double> b_lead;
  double p2p_latency = 0.0;    // alpha, seconds (or the cost unit)
  double p2p_bandwidth = 0.0;  // beta, bytes per unit; 0: infinite
  double p2p_bytes = 0.0;      // bytes of one microbatch's boundary activation
  // Stateless workers (RoundPipe) keep weights in host memory: before a task of a stage the
  // worker does not hold, the stage's weights cross a host link of `host_bandwidth` bytes per
  // unit, starting when the worker's previous task starts (one prefetch buffer); after its last
  // consecutive backward task of a stage, the gradients go back. Empty or 0: free.
  std::vector<double> forward_weight_bytes, backward_weight_bytes;  // per forward / backward stage
  double host_bandwidth = 0.0;

  bool empty() const { return f.empty(); }
  int num_stages() const { return static_cast<int>(f.size()); }
  // alpha + bytes / beta: the time of one transfer between different ranks.
  double transfer_time() const;
  double i(int stage) const { return b[static_cast<size_t>(stage)] - w[static_cast<size_t>(stage)]; }
  double lead(int stage) const {
    return static_cast<size_t>(stage) < b_lead.size() ? b_lead[static_cast<size_t>(stage)] : 0.0;
  }
};

// Every rank's share of layers takes F forward, B full backward, W weight-gradient; with v
// stages per rank each stage takes 1/v of these.
StageCosts uniform_stage_costs(int num_stages, int virtual_stages, double f, double b, double w);

// Stages from per-layer forward costs: stage s holds layers [bounds[s], bounds[s+1]); its
// backward is twice its forward, half of that weight-gradient.
StageCosts stage_costs_from_layers(const std::vector<double>& layer_forward, const std::vector<int>& bounds);

// Contiguous partition of `costs` into `parts` stages minimising the largest stage sum, where a
// stage's memory (sum of `memory` over its layers, if given) must stay within `memory_cap`
// (<= 0: no cap). Returns the boundaries (parts + 1 values, first 0, last costs.size()); throws
// PlanError if no partition fits the cap.
std::vector<int> partition_min_max(const std::vector<double>& costs, int parts,
                                   const std::vector<double>& memory = {}, double memory_cap = 0.0);

}  // namespace rondo
