// worker/onednn_gemm.h: every layout the linear layers use (transposed operands, bias, accumulation)
// against a double-precision reference.
#include "worker/onednn_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace rondo::onednn {
namespace {

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (auto& e : v) e = normal(gen);
  return v;
}

void check(const Gemm& g) {
  const std::string what = "m " + std::to_string(g.m) + " n " + std::to_string(g.n) + " k " +
                           std::to_string(g.k) + (g.a_transposed ? " A^T" : "") +
                           (g.b_transposed ? " B^T" : "") + (g.with_bias ? " +bias" : "") +
                           (g.accumulate ? " +=" : "");
  if (!fast(g)) GTEST_SKIP() << "oneDNN has no brgemm kernel for " << what << " on this CPU: ATen runs it";
  EXPECT_EQ(std::string(implementation(g)).rfind("brg", 0), 0u) << implementation(g);
  const auto a = random_values(g.m * g.k, 1), b = random_values(g.k * g.n, 2), bias = random_values(g.n, 3);
  const auto c0 = random_values(g.m * g.n, 4);
  auto c = c0;
  run(g, a.data(), b.data(), g.with_bias ? bias.data() : nullptr, c.data());
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      double want = 0, size = 0;
      for (int64_t p = 0; p < g.k; ++p) {
        const double x = a[g.a_transposed ? p * g.m + i : i * g.k + p];
        const double y = b[g.b_transposed ? j * g.k + p : p * g.n + j];
        want += x * y;
        size += std::fabs(x * y);
      }
      if (g.with_bias) want += bias[j];
      if (g.accumulate) want += c0[i * g.n + j];
      ASSERT_NEAR(c[i * g.n + j], want, 1e-6 * (size + 1) + 1e-6) << what << " at " << i << ", " << j;
    }
  }
}

TEST(OnednnGemm, EveryLayoutOfTheLinearLayers) {
  for (bool a_t : {false, true}) {
    for (bool b_t : {false, true}) {
      for (bool bias : {false, true}) {
        for (bool acc : {false, true}) check({37, 29, 53, a_t, b_t, bias, acc});
      }
    }
  }
}

TEST(OnednnGemm, TheDemoModelsShapes) {
  check({512, 384, 128, false, true, true, false});    // qkv forward: x W^T + b
  check({512, 128, 384, false, false, false, false});  // its input gradient: g W
  check({384, 128, 512, true, false, false, true});    // its weight gradient: W.grad += g^T x
}

}  // namespace
}  // namespace rondo::onednn
