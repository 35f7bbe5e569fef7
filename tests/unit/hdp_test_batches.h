// What the HDP planner tests plan: a 7B-class model's cost and batches of a lognormal mix.
#pragma once

#include <cstdint>
#include <vector>

#include "data/hdp_batches.h"
#include "data/lognormal_mix.h"
#include "parallelism/context_parallel_cost.h"

namespace rondo::testing {

// A 7B-class GPT on devices of 400 TFLOP/s joined at 100 GB/s.
inline ContextParallelCost seven_b() {
  return ContextParallelCost({.dims = {32, 4096, 16384, 32000, 262144},
                              .device_flops = 400e12,
                              .link_bytes_per_s = 100e9,
                              .link_latency_s = 1e-5});
}

// Lengths of a lognormal mix (median 2,048, sigma 1.6) cut at `longest`, filling `tokens`.
inline std::vector<int64_t> mixed_batch(int64_t tokens, int64_t longest, uint64_t seed) {
  HdpBatches draw(lognormal_lengths({20000, 7.625, 1.6, 4000000, seed}), tokens, longest, seed);
  return draw.next();
}

}  // namespace rondo::testing
