#include "parallelism/context_parallel_cost.h"

#include <algorithm>

#include "parallelism/model_flops.h"

namespace rondo {

namespace {

// Linear layers, embedding and LM head over `tokens` tokens, forward and backward (3x forward).
double linear_flops(const GptDims& d, double tokens) {
  return 3 * tokens *
         (blocks_linear_flops_per_token(d, 0, d.num_layers) + embedding_flops_per_token(d) +
          lm_head_flops_per_token(d));
}

}  // namespace

double ContextParallelCost::compute_seconds(int64_t tokens, int64_t degree) const {
  const auto& d = spec_.dims;
  const double share = static_cast<double>(tokens) / static_cast<double>(degree);
  const double attention =
      3 * static_cast<double>(d.num_layers) * attention_flops(d, share, static_cast<double>(tokens));
  return (linear_flops(d, share) + attention) / spec_.device_flops;
}

double ContextParallelCost::seconds(int64_t tokens, int64_t degree, bool across_hosts) const {
  if (degree <= 1) return compute_seconds(tokens, 1);
  const double rate = across_hosts && spec_.cross_host_bytes_per_s > 0 ? spec_.cross_host_bytes_per_s
                                                                       : spec_.link_bytes_per_s;
  const auto& d = spec_.dims;
  const double share = static_cast<double>(tokens) / static_cast<double>(degree);
  const double steps = static_cast<double>(degree - 1);
  // One ring step: this rank's queries against one block of keys, while the next block arrives.
  const double block = attention_flops(d, share, share) / spec_.device_flops;
  const double kv_bytes = 2 * share * static_cast<double>(d.hidden_size) * spec_.bytes_per_value;
  const double forward = block + steps * std::max(block, spec_.link_latency_s + kv_bytes / rate);
  const double backward = 2 * block + steps * std::max(2 * block, spec_.link_latency_s + 2 * kv_bytes / rate);
  return linear_flops(d, share) / spec_.device_flops +
         static_cast<double>(d.num_layers) * (forward + backward);
}

}  // namespace rondo
