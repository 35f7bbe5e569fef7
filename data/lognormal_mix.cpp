#include "data/lognormal_mix.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "common/errors.h"
#include "data/splitmix64.h"

namespace rondo {

namespace {

// A uniform double in (0, 1) from draw `n` of stream `stream`.
double uniform(uint64_t seed, uint64_t stream, uint64_t n) {
  const uint64_t bits = splitmix64(splitmix64(seed ^ (stream * 0xD1B54A32D192ED03ull)) ^ n) >> 11;
  return (static_cast<double>(bits) + 0.5) / 9007199254740992.0;  // 2^53
}

}  // namespace

std::vector<int64_t> lognormal_lengths(const LognormalMix& mix) {
  if (mix.documents < 1) throw ConfigError("data.lognormal_documents", "must be >= 1");
  if (!(mix.sigma >= 0)) throw ConfigError("data.lognormal_sigma", "must be >= 0");
  if (!std::isfinite(mix.mu)) throw ConfigError("data.lognormal_mu", "must be finite");
  if (mix.max_length < 1) throw ConfigError("data.lognormal_max_length", "must be >= 1");
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(mix.documents));
  for (int64_t i = 0; i < mix.documents; ++i) {
    // Box-Muller: one standard normal from two uniforms.
    const auto n = static_cast<uint64_t>(i);
    const double z = std::sqrt(-2.0 * std::log(uniform(mix.seed, 1, n))) *
                     std::cos(2.0 * std::numbers::pi * uniform(mix.seed, 2, n));
    const double length = std::exp(mix.mu + mix.sigma * z);
    out.push_back(
        std::clamp<int64_t>(static_cast<int64_t>(std::llround(std::min(length, 9e18))), 1, mix.max_length));
  }
  return out;
}

uint64_t lognormal_document_offset(const LognormalMix& mix, int64_t document, uint64_t size) {
  return size == 0
             ? 0
             : splitmix64(splitmix64(mix.seed ^ 0x5851F42D4C957F2Dull) ^ static_cast<uint64_t>(document)) %
                   size;
}

}  // namespace rondo
