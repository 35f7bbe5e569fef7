#include "worker/rotary_embedding.h"

#include <cmath>
#include <numbers>

namespace rondo {

torch::Tensor rotary_frequencies(const RotarySpec& spec, int64_t head_size) {
  const auto exponents = torch::arange(0, head_size, 2, torch::kLong).to(torch::kFloat32) / head_size;
  auto freq = 1.0 / torch::pow(spec.base, exponents);
  if (spec.scaling_factor <= 1.0) return freq;
  // Llama 3: a wavelength longer than the original context / low_freq_factor is divided by the
  // factor, one shorter than context / high_freq_factor kept, those between interpolated.
  const double context = static_cast<double>(spec.original_max_positions);
  const double low_wavelength = context / spec.low_freq_factor,
               high_wavelength = context / spec.high_freq_factor;
  const auto wavelength = 2 * std::numbers::pi / freq;
  const auto slowed = torch::where(wavelength > low_wavelength, freq / spec.scaling_factor, freq);
  const auto smooth =
      (context / wavelength - spec.low_freq_factor) / (spec.high_freq_factor - spec.low_freq_factor);
  const auto blended = (1 - smooth) * slowed / spec.scaling_factor + smooth * slowed;
  const auto medium = wavelength.ge(high_wavelength).logical_and(wavelength.le(low_wavelength));
  return torch::where(medium, blended, slowed);
}

RotaryAngles rotary_angles(const torch::Tensor& positions, const torch::Tensor& frequencies,
                           const torch::Tensor& like) {
  // angles [.., seq, head_size / 2] -> [.., seq, 1, head_size]
  const auto angles =
      positions.to(like.device(), torch::kFloat32).unsqueeze(-1) * frequencies.to(like.device());
  const auto both = torch::cat({angles, angles}, -1).unsqueeze(-2);
  return {both.cos().to(like.scalar_type()), both.sin().to(like.scalar_type())};
}

torch::Tensor rotate(const torch::Tensor& x, const RotaryAngles& a) {
  const int64_t half = x.size(-1) / 2;
  const auto rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * a.cos + rotated * a.sin;
}

RmsNormImpl::RmsNormImpl(int64_t size, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({size}));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps_) * weight;
}

}  // namespace rondo
