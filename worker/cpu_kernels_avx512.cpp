// worker/cpu_kernels_impl.h on 16 floats (AVX-512F); compiled with -mavx512f -mfma, run only where
// best_isa() says so.
// GCC 12's AVX-512 intrinsics fill unused lanes from a self-initialised variable, which -Wall
// reports wherever they are inlined (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "worker/cpu_kernels.h"

namespace {

struct V {
  static constexpr int kWidth = 16;
  __m512 v;
};
using M = __mmask16;

V set1(float a) { return {_mm512_set1_ps(a)}; }
V load(const float* p) { return {_mm512_loadu_ps(p)}; }
void store(float* p, V a) { _mm512_storeu_ps(p, a.v); }
__mmask16 first_lanes(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
V load_partial(const float* p, int n, float fill) {
  return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), first_lanes(n), p)};
}
void store_partial(float* p, V a, int n) { _mm512_mask_storeu_ps(p, first_lanes(n), a.v); }
V add(V a, V b) { return {_mm512_add_ps(a.v, b.v)}; }
V sub(V a, V b) { return {_mm512_sub_ps(a.v, b.v)}; }
V mul(V a, V b) { return {_mm512_mul_ps(a.v, b.v)}; }
V div(V a, V b) { return {_mm512_div_ps(a.v, b.v)}; }
V fma(V a, V b, V c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
V fnma(V a, V b, V c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; }
// VMAXPS / VMINPS return the second operand unless the first compares greater / less.
V max(V a, V b) { return {_mm512_max_ps(a.v, b.v)}; }
V min(V a, V b) { return {_mm512_min_ps(a.v, b.v)}; }
V abs(V a) { return {_mm512_abs_ps(a.v)}; }
V round(V a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
V pow2(V n) {
  const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(e, 23))};
}
M lt(V a, V b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ); }
M gt(V a, V b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ); }
M ge(V a, V b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ); }
M unordered(V a, V b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_UNORD_Q); }
V select(M m, V if_set, V if_clear) { return {_mm512_mask_blend_ps(m, if_clear.v, if_set.v)}; }

}  // namespace

#define RONDO_CPU_KERNELS_ISA avx512
#include "worker/cpu_kernels_impl.h"
