// Rotary position embeddings (RoFormer; Llama, Qwen) and RMSNorm, the two pieces Llama-style
// blocks share with the attention: each query and key is rotated pair by pair by angles
// position x frequency (the "rotate half" layout Hugging Face's Llama uses: dimension i pairs with
// i + head_size / 2), with Llama 3's frequency scaling when its factor is above 1.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace rondo {

struct RotarySpec {
  double base = 10000.0;
  // Llama 3 ("rope_type": "llama3"): long wavelengths slowed by `scaling_factor`, short ones kept,
  // those between blended; 1: plain RoPE.
  double scaling_factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_positions = 8192;
};

// The head_size / 2 angular frequencies, float32, as Hugging Face computes them.
torch::Tensor rotary_frequencies(const RotarySpec& spec, int64_t head_size);

// Each token's rotation, cos and sin [.., seq, 1, head_size] (each frequency twice), for positions
// [seq] (every row alike) or [batch, seq]; `frequencies` from rotary_frequencies; on `like`'s device
// and dtype. Computed once per attention, shared by its queries and keys.
struct RotaryAngles {
  torch::Tensor cos, sin;
};
RotaryAngles rotary_angles(const torch::Tensor& positions, const torch::Tensor& frequencies,
                           const torch::Tensor& like);

// x [batch, seq, heads, head_size] rotated pair by pair (i with i + head_size / 2).
torch::Tensor rotate(const torch::Tensor& x, const RotaryAngles& angles);

// RMSNorm over the last dimension: x / sqrt(mean(x^2) + eps) * weight (weight starts at 1).
class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t size, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RmsNorm);

}  // namespace rondo
