// The cost model FSMoE picks an MoE layer's pipeline degree with (parallelism/exec/expert_pipeline.h):
// every operation costs alpha + beta * n — an all-to-all by the bytes a rank sends to others, an
// expert's forward and its backward each by the forward's FLOPs (fitted apart: a backward's weight
// gradients reduce over the chunk's rows, and few rows make them slow) —
// and a pipeline of d chunks takes
//   T(d) = D + sum_c max(C, comm_c) + B,
// D and B a chunk's dispatch and combine, C a chunk's expert compute (every local expert once),
// comm_c the link's work while chunk c computes (chunk c+1's dispatch and chunk c-1's combine: their
// bytes one after the other, their latencies side by side). The choice is judged against an event
// simulation of the same pipeline (parallelism/moe_pipeline_sim.h, bench/moe_degree_sweep.cpp).
// alpha and beta come from a profiling pass on the job's own ranks
// (moe_costs.json, parallelism/exec/moe_profile.h) or, for `rondo plan` without one, from the
// config's device and link figures. Torch-free.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace rondo {

struct LinearCost {
  double alpha_s = 0;  // per call
  double beta_s = 0;   // per unit (byte, FLOP)
  double at(double n) const { return alpha_s + beta_s * n; }
  // Least squares over (n, seconds) samples, alpha and beta clamped at 0.
  static LinearCost fit(const std::vector<std::pair<double, double>>& samples);
};

struct MoeCosts {
  LinearCost alltoall;         // one all-to-all: n = bytes this rank sends to the others
  LinearCost expert;           // one expert's forward: n = its FLOPs
  LinearCost expert_backward;  // the same call's backward, by the forward's FLOPs
  std::string source;          // "profiled on ranks ..." or "config: ..."

  nlohmann::json to_json() const;
  // Throws ConfigError naming `key` and the file for a malformed one.
  static MoeCosts from_json(const nlohmann::json& j, const std::string& key);
};

// One MoE layer's expert part on one rank, per microbatch.
struct MoeLayerWork {
  double rows = 0;  // (token, expert) assignments the rank sends (as many arrive, balanced)
  int64_t hidden = 0, ffn = 0;
  int64_t local_experts = 1;
  int members = 1;  // the expert group's ranks
};

// The work of a microbatch of `tokens` tokens routed to `topk` of `experts` experts, at most
// capacity_factor * tokens * topk / experts each, over an expert group of `members` ranks: what
// both `rondo plan` and the workers' degree choice predict from.
MoeLayerWork moe_layer_work(double tokens, int64_t topk, double capacity_factor, int64_t hidden, int64_t ffn,
                            int64_t experts, int members);

// Predicted seconds of the layer's expert part at pipeline degree `degree`, forward or backward.
// `atoms` (0: `degree`): the pieces the rows are cut into for both directions (the least common
// multiple of the forward's and the backward's degrees), each expert called atoms / degree times per
// chunk, paying its alpha each time.
double predict_expert_pipeline(const MoeCosts& costs, const MoeLayerWork& work, int degree, bool backward,
                               int atoms = 0);

// The degrees the choice considers (1..16), and those whose sizes the profiling pass measures
// (1, 2, 4, 8, 16: the fit covers the rest).
const std::vector<int>& moe_degree_candidates();
const std::vector<int>& moe_profiled_degrees();
// The pair of degrees predicted fastest: every forward and backward degree together (they share
// the cut into atoms), the one with the fewest chunks among those within 2% of the fastest, since
// each chunk costs bookkeeping the model leaves out (gathers, buffers, one more autograd call).
struct MoeDegreeChoice {
  std::map<int, double> forward_s, backward_s;  // per candidate degree d, both directions at d
  int forward = 1, backward = 1;
  double seconds = 0;                             // the chosen pair's forward + backward
  int fastest_forward = 1, fastest_backward = 1;  // the pair predicted fastest, margin aside
};
MoeDegreeChoice choose_moe_degrees(const MoeCosts& costs, const MoeLayerWork& work);

}  // namespace rondo
