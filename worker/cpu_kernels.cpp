// Dispatch of worker/cpu_kernels.h to the unit built for the requested instruction set.
#include "worker/cpu_kernels.h"

namespace rondo::cpu_kernels {

Isa best_isa() {
  static const Isa best = [] {
#if defined(RONDO_CPU_KERNELS_X86)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
    return Isa::kScalar;
  }();
  return best;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kScalar:
      break;
  }
  return "scalar";
}

#if defined(RONDO_CPU_KERNELS_X86)
#define RONDO_CPU_KERNELS_DISPATCH(isa, call) \
  switch (isa) {                              \
    case Isa::kAvx512:                        \
      return avx512::call;                    \
    case Isa::kAvx2:                          \
      return avx2::call;                      \
    case Isa::kScalar:                        \
      break;                                  \
  }                                           \
  return scalar::call
#else
#define RONDO_CPU_KERNELS_DISPATCH(isa, call) return scalar::call
#endif

void gelu_forward(Isa isa, const float* x, float* y, int64_t n) {
  RONDO_CPU_KERNELS_DISPATCH(isa, gelu_forward(x, y, n));
}
void gelu_backward(Isa isa, const float* x, const float* y, const float* dy, float* dx, int64_t n) {
  RONDO_CPU_KERNELS_DISPATCH(isa, gelu_backward(x, y, dy, dx, n));
}
void softmax_forward(Isa isa, const float* x, const float* bias, float scale, float* y, int64_t rows,
                     int64_t cols) {
  RONDO_CPU_KERNELS_DISPATCH(isa, softmax_forward(x, bias, scale, y, rows, cols));
}
void softmax_backward(Isa isa, const float* y, const float* dy, float scale, float* dx, int64_t rows,
                      int64_t cols) {
  RONDO_CPU_KERNELS_DISPATCH(isa, softmax_backward(y, dy, scale, dx, rows, cols));
}

}  // namespace rondo::cpu_kernels
