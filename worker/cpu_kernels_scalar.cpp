// worker/cpu_kernels_impl.h on single floats: the reference the vector units must equal bit for bit,
// and the path for CPUs without AVX2.
#include <cmath>
#include <cstring>

#include "worker/cpu_kernels.h"

namespace {

struct V {
  static constexpr int kWidth = 1;
  float v;
};
using M = bool;

V set1(float a) { return {a}; }
V load(const float* p) { return {*p}; }
void store(float* p, V a) { *p = a.v; }
// With one lane a block is never partial.
V load_partial(const float* p, int n, float fill) { return {n > 0 ? *p : fill}; }
void store_partial(float* p, V a, int n) {
  if (n > 0) *p = a.v;
}
V add(V a, V b) { return {a.v + b.v}; }
V sub(V a, V b) { return {a.v - b.v}; }
V mul(V a, V b) { return {a.v * b.v}; }
V div(V a, V b) { return {a.v / b.v}; }
V fma(V a, V b, V c) { return {std::fma(a.v, b.v, c.v)}; }
V fnma(V a, V b, V c) { return {std::fma(-a.v, b.v, c.v)}; }
V max(V a, V b) { return {a.v > b.v ? a.v : b.v}; }
V min(V a, V b) { return {a.v < b.v ? a.v : b.v}; }
V abs(V a) { return {std::fabs(a.v)}; }
V round(V a) { return {std::nearbyint(a.v)}; }
V pow2(V n) {
  const int32_t bits = (static_cast<int32_t>(n.v) + 127) << 23;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return {f};
}
M lt(V a, V b) { return a.v < b.v; }
M gt(V a, V b) { return a.v > b.v; }
M ge(V a, V b) { return a.v >= b.v; }
M unordered(V a, V b) { return std::isnan(a.v) || std::isnan(b.v); }
V select(M m, V if_set, V if_clear) { return m ? if_set : if_clear; }

}  // namespace

#define RONDO_CPU_KERNELS_ISA scalar
#include "worker/cpu_kernels_impl.h"
