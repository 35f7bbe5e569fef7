// What every rank needs to know of a step and no rank knows alone, as named fields: the sums over
// the world (gradient norm, loss, targets, compute and per-stage op seconds, chunk counts) and the
// maxima (memory, page faults, the compute span, the longest sequence, and requests from outside
// the loop, so that every rank takes them at the same step). Each travels as one vector of
// doubles through one small allreduce; to_values() and from_values() are each other's inverse.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

namespace rondo {

struct StepSums {
  double grad_norm_squared = 0;  // each stage's squares counted once (by its dp = 0 replica)
  double loss = 0;               // the last stages' scaled microbatch losses: the step's mean loss
  double compute_s = 0;          // every rank's compute seconds
  double targets = 0;            // counted targets (by the first pipeline rank of each replica)
  double chunks = 0, chunks_recomputed = 0;  // chunked training: chunks run, and run twice
  // Per stage, counted by replica 0 so each stage once: F, B (or I) and W seconds, and a stateless
  // backward's lead (the recomputation before its gradient arrives), per backward stage.
  std::vector<double> stage_f = {}, stage_b = {}, stage_w = {}, stage_b_lead = {};
  // Mixture of experts: the router's load and the load-balancing loss (worker/moe_training.h).
  std::vector<double> moe = {};

  std::vector<double> to_values() const;
  // Reads what to_values() wrote, for the same stage counts as this struct already holds.
  void from_values(const std::vector<double>& values);
};

struct StepMaxima {
  double max_rss_mb = 0;
  double page_faults = 0;
  double first_compute_ns_negated = 0;  // negated, so that one max gives the earliest start
  double last_compute_ns = 0;
  double longest_sequence = 0;
  double busiest_compute_s = 0;       // the compute seconds of the rank that computed longest
  double checkpoint_requested = 0;    // 1 on a rank asked to checkpoint after this step
  double stop_requested = 0;          // 1 on a rank asked to stop
  double rings_received_negated = 0;  // minus the newest ring version a rank has: max is -min

  static constexpr size_t kFields = 9;
  std::array<double, kFields> to_values() const;
  static StepMaxima from_values(const std::array<double, kFields>& values);
  // The span of the step's compute over every rank, seconds (0 before any compute).
  double compute_span_s() const { return (last_compute_ns + first_compute_ns_negated) * 1e-9; }
};

}  // namespace rondo
