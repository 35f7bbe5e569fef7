#include "worker/step_statistics.h"

#include <stdexcept>

namespace rondo {

std::vector<double> StepSums::to_values() const {
  std::vector<double> v = {grad_norm_squared, loss, compute_s, targets, chunks, chunks_recomputed};
  for (const auto* part : {&stage_f, &stage_b, &stage_w, &stage_b_lead, &moe})
    v.insert(v.end(), part->begin(), part->end());
  return v;
}

void StepSums::from_values(const std::vector<double>& v) {
  constexpr size_t kScalars = 6;
  if (v.size() !=
      kScalars + stage_f.size() + stage_b.size() + stage_w.size() + stage_b_lead.size() + moe.size()) {
    throw std::invalid_argument("StepSums::from_values: " + std::to_string(v.size()) +
                                " values for another shape of step statistics");
  }
  grad_norm_squared = v[0];
  loss = v[1];
  compute_s = v[2];
  targets = v[3];
  chunks = v[4];
  chunks_recomputed = v[5];
  auto in = v.begin() + kScalars;
  for (auto* part : {&stage_f, &stage_b, &stage_w, &stage_b_lead, &moe}) {
    std::copy(in, in + static_cast<long>(part->size()), part->begin());
    in += static_cast<long>(part->size());
  }
}

std::array<double, StepMaxima::kFields> StepMaxima::to_values() const {
  return {max_rss_mb,           page_faults,      first_compute_ns_negated,
          last_compute_ns,      longest_sequence, busiest_compute_s,
          checkpoint_requested, stop_requested,   rings_received_negated};
}

StepMaxima StepMaxima::from_values(const std::array<double, kFields>& v) {
  return {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]};
}

}  // namespace rondo
