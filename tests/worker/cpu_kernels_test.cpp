// worker/cpu_kernels.h: every instruction set this CPU runs gives the scalar unit's bits; the
// results are within float accuracy of double-precision references; special values behave as
// torch::gelu and torch::softmax.
#include "worker/cpu_kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

namespace rondo::cpu_kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<Isa> vector_isas() {
  std::vector<Isa> out;
  if (best_isa() == Isa::kAvx512) out.push_back(Isa::kAvx512);
  if (best_isa() != Isa::kScalar) out.push_back(Isa::kAvx2);
  return out;
}

// Values GELU sees in training, its far tails, and the special ones; 1,000 + 7 so that every unit
// ends in a partial block.
std::vector<float> gelu_inputs() {
  std::vector<float> x;
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int i = 0; i < 900; ++i) x.push_back(normal(gen));
  for (float v = -15.0f; v <= 15.0f; v += 0.37f) x.push_back(v);
  for (float v :
       {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-45f, 5.0f, -5.0f, 40.0f, -40.0f, 1e30f, -1e30f, kInf, -kInf, kNaN})
    x.push_back(v);
  x.resize(1007, 0.5f);
  return x;
}

bool same_bits(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want, const char* what,
                      Isa isa) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(same_bits(got[i], want[i]))
        << what << " on " << isa_name(isa) << " at " << i << ": " << got[i] << " vs scalar " << want[i];
  }
}

double phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double density(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI); }

TEST(CpuKernels, BestIsaIsNamed) {
  const std::string name = isa_name(best_isa());
  EXPECT_TRUE(name == "avx512" || name == "avx2" || name == "scalar") << name;
}

TEST(CpuKernels, GeluMatchesDoublePrecision) {
  const auto x = gelu_inputs();
  const auto n = static_cast<int64_t>(x.size());
  std::vector<float> y(n), dx(n);
  const std::vector<float> ones(n, 1.0f);
  gelu_forward(best_isa(), x.data(), y.data(), n);
  gelu_backward(best_isa(), x.data(), y.data(), ones.data(), dx.data(), n);
  double worst_value = 0, worst_slope = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    if (!std::isfinite(v) || std::fabs(v) > 1e6) continue;
    // Absolute error relative to the size of the terms: |x| for the value, 1 for the slope.
    worst_value = std::max(worst_value, std::fabs(y[i] - v * phi(v)) / std::max(1.0, std::fabs(v)));
    worst_slope = std::max(worst_slope, std::fabs(dx[i] - (phi(v) + v * density(v))));
  }
  std::printf("worst GELU error %.3g, GELU' error %.3g\n", worst_value, worst_slope);
  EXPECT_LT(worst_value, 2e-7) << "GELU";
  EXPECT_LT(worst_slope, 3e-7) << "GELU'";
}

TEST(CpuKernels, GeluSpecialValuesAsTorch) {
  const std::vector<float> x = {0.0f, kInf, -kInf, kNaN, 1e30f, -1e30f, -40.0f};
  std::vector<float> y(x.size());
  for (Isa isa : {Isa::kScalar, best_isa()}) {
    gelu_forward(isa, x.data(), y.data(), static_cast<int64_t>(x.size()));
    EXPECT_EQ(y[0], 0.0f);
    EXPECT_EQ(y[1], kInf);
    EXPECT_TRUE(std::isnan(y[2])) << "-inf * Phi(-inf) = -inf * 0, NaN as in torch";
    EXPECT_TRUE(std::isnan(y[3]));
    EXPECT_EQ(y[4], 1e30f);
    EXPECT_EQ(y[5], -0.0f);
    EXPECT_EQ(y[6], -0.0f);
  }
}

TEST(CpuKernels, GeluVectorUnitsGiveTheScalarBits) {
  const auto x = gelu_inputs();
  std::vector<float> dy(x.size());
  std::mt19937 gen(3);
  std::normal_distribution<float> normal;
  for (auto& v : dy) v = normal(gen);
  const auto n = static_cast<int64_t>(x.size());
  std::vector<float> y_ref(x.size()), dx_ref(x.size());
  gelu_forward(Isa::kScalar, x.data(), y_ref.data(), n);
  gelu_backward(Isa::kScalar, x.data(), y_ref.data(), dy.data(), dx_ref.data(), n);
  for (Isa isa : vector_isas()) {
    for (int64_t len : {n, int64_t{1}, int64_t{15}, int64_t{17}}) {
      std::vector<float> y(x.size(), 42.0f), dx(x.size(), 42.0f);
      gelu_forward(isa, x.data(), y.data(), len);
      gelu_backward(isa, x.data(), y_ref.data(), dy.data(), dx.data(), len);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_TRUE(same_bits(y[i], i < len ? y_ref[i] : 42.0f))
            << isa_name(isa) << " len " << len << " at " << i;
        ASSERT_TRUE(same_bits(dx[i], i < len ? dx_ref[i] : 42.0f))
            << isa_name(isa) << " len " << len << " at " << i;
      }
    }
  }
}

// Raw attention scores and a causal mask: row r attends to its first r % cols + 1 entries.
struct Scores {
  std::vector<float> x, bias;
};
Scores causal_scores(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 20.0f);
  Scores s;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      s.x.push_back(normal(gen));
      s.bias.push_back(c <= r % cols ? 0.0f : -kInf);
    }
  }
  return s;
}

std::vector<float> normal_values(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (auto& e : v) e = normal(gen);
  return v;
}

constexpr float kScale = 0.1767767f;  // 1 / sqrt(32), a head of 32

TEST(CpuKernels, SoftmaxMatchesDoublePrecision) {
  for (int64_t cols : {1, 7, 16, 17, 128, 130}) {
    const int64_t rows = 2 * cols + 3;
    const auto s = causal_scores(rows, cols, static_cast<uint32_t>(cols));
    const auto dy = normal_values(s.x.size(), 11);
    std::vector<float> y(s.x.size()), dx(s.x.size());
    softmax_forward(best_isa(), s.x.data(), s.bias.data(), kScale, y.data(), rows, cols);
    softmax_backward(best_isa(), y.data(), dy.data(), kScale, dx.data(), rows, cols);
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<double> z(cols), p(cols);
      for (int64_t c = 0; c < cols; ++c) z[c] = double(kScale) * s.x[r * cols + c] + s.bias[r * cols + c];
      const double m = *std::max_element(z.begin(), z.end());
      double sum = 0, dot = 0, dot_size = 0;
      for (int64_t c = 0; c < cols; ++c) sum += p[c] = std::exp(z[c] - m);
      for (int64_t c = 0; c < cols; ++c) {
        dot += (p[c] /= sum) * dy[r * cols + c];
        dot_size += p[c] * std::fabs(dy[r * cols + c]);
      }
      for (int64_t c = 0; c < cols; ++c) {
        const size_t i = r * cols + c;
        if (z[c] == -kInf) {
          EXPECT_EQ(y[i], 0.0f);
          EXPECT_EQ(dx[i], 0.0f);
          continue;
        }
        // exp's 2 ulp, and the argument's rounding, relative to its size (|z| up to ~15 here).
        ASSERT_NEAR(y[i], p[c], 4e-6 * p[c] + 1e-12) << "cols " << cols << " row " << r << " col " << c;
        // Float rounding of the row's sum of y * dy, then of the difference.
        ASSERT_NEAR(dx[i], kScale * p[c] * (dy[i] - dot),
                    4e-6 * kScale * p[c] * (std::fabs(dy[i]) + dot_size) + 1e-12)
            << "cols " << cols << " row " << r << " col " << c;
      }
    }
  }
}

TEST(CpuKernels, SoftmaxWithoutBiasScalesOnly) {
  // No bias: y = softmax(scale * x); with scale 1 exactly the plain softmax.
  const auto s = causal_scores(9, 33, 4);
  std::vector<float> masked(s.x.size()), y_bias(s.x.size()), y_plain(s.x.size());
  for (size_t i = 0; i < s.x.size(); ++i) masked[i] = s.x[i] + s.bias[i];
  softmax_forward(best_isa(), s.x.data(), s.bias.data(), 1.0f, y_bias.data(), 9, 33);
  softmax_forward(best_isa(), masked.data(), nullptr, 1.0f, y_plain.data(), 9, 33);
  expect_same_bits(y_plain, y_bias, "softmax without bias", best_isa());
}

TEST(CpuKernels, SoftmaxSpecialRowsAsTorch) {
  // A row of only -inf and a row with a NaN give NaN; a huge spread gives exact 0 and 1.
  const std::vector<float> x = {-kInf, -kInf, -kInf, 1.0f, kNaN, 2.0f, 0.0f, -1000.0f, -kInf};
  std::vector<float> y(x.size());
  for (Isa isa : {Isa::kScalar, best_isa()}) {
    softmax_forward(isa, x.data(), nullptr, 1.0f, y.data(), 3, 3);
    for (int c = 0; c < 6; ++c) EXPECT_TRUE(std::isnan(y[c])) << isa_name(isa) << " " << c;
    EXPECT_EQ(y[6], 1.0f);
    EXPECT_EQ(y[7], 0.0f);
    EXPECT_EQ(y[8], 0.0f);
  }
}

TEST(CpuKernels, SoftmaxVectorUnitsGiveTheScalarBits) {
  for (int64_t cols : {1, 5, 8, 15, 16, 17, 31, 33, 128, 129}) {
    const int64_t rows = cols + 5;
    const auto s = causal_scores(rows, cols, 100 + static_cast<uint32_t>(cols));
    const auto dy = normal_values(s.x.size(), 5);
    for (const float* bias : {s.bias.data(), static_cast<const float*>(nullptr)}) {
      std::vector<float> y_ref(s.x.size()), dx_ref(s.x.size());
      softmax_forward(Isa::kScalar, s.x.data(), bias, kScale, y_ref.data(), rows, cols);
      softmax_backward(Isa::kScalar, y_ref.data(), dy.data(), kScale, dx_ref.data(), rows, cols);
      for (Isa isa : vector_isas()) {
        std::vector<float> y(s.x.size()), dx(s.x.size());
        softmax_forward(isa, s.x.data(), bias, kScale, y.data(), rows, cols);
        softmax_backward(isa, y_ref.data(), dy.data(), kScale, dx.data(), rows, cols);
        expect_same_bits(y, y_ref, "softmax", isa);
        expect_same_bits(dx, dx_ref, "softmax backward", isa);
      }
    }
  }
}

}  // namespace
}  // namespace rondo::cpu_kernels
