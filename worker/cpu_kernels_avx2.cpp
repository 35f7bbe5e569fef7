// worker/cpu_kernels_impl.h on 8 floats (AVX2 with FMA); compiled with -mavx2 -mfma, run only where
// best_isa() says so.
#include <immintrin.h>

#include "worker/cpu_kernels.h"

namespace {

struct V {
  static constexpr int kWidth = 8;
  __m256 v;
};
using M = __m256;

V set1(float a) { return {_mm256_set1_ps(a)}; }
V load(const float* p) { return {_mm256_loadu_ps(p)}; }
void store(float* p, V a) { _mm256_storeu_ps(p, a.v); }
__m256i first_lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
V load_partial(const float* p, int n, float fill) {
  const __m256i m = first_lanes(n);
  return {_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m))};
}
void store_partial(float* p, V a, int n) { _mm256_maskstore_ps(p, first_lanes(n), a.v); }
V add(V a, V b) { return {_mm256_add_ps(a.v, b.v)}; }
V sub(V a, V b) { return {_mm256_sub_ps(a.v, b.v)}; }
V mul(V a, V b) { return {_mm256_mul_ps(a.v, b.v)}; }
V div(V a, V b) { return {_mm256_div_ps(a.v, b.v)}; }
V fma(V a, V b, V c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
V fnma(V a, V b, V c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
// MAXPS / MINPS return the second operand unless the first compares greater / less.
V max(V a, V b) { return {_mm256_max_ps(a.v, b.v)}; }
V min(V a, V b) { return {_mm256_min_ps(a.v, b.v)}; }
V abs(V a) { return {_mm256_and_ps(a.v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)))}; }
V round(V a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
V pow2(V n) {
  const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(e, 23))};
}
M lt(V a, V b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ); }
M gt(V a, V b) { return _mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ); }
M ge(V a, V b) { return _mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ); }
M unordered(V a, V b) { return _mm256_cmp_ps(a.v, b.v, _CMP_UNORD_Q); }
V select(M m, V if_set, V if_clear) { return {_mm256_blendv_ps(if_clear.v, if_set.v, m)}; }

}  // namespace

#define RONDO_CPU_KERNELS_ISA avx2
#include "worker/cpu_kernels_impl.h"
