// Float32 GEMMs for the linear layers on CPU through oneDNN's matmul, whose brgemm kernels run the
// model's shapes about 10% faster than OpenBLAS on the same core (bench/RESULTS.md). oneDNN is the
// libdnnl that LibTorch itself links; no LibTorch here. A primitive is built once per shape and
// kept per thread; shapes for which oneDNN has no brgemm kernel on this CPU report so, and the
// caller keeps ATen's GEMM.
#pragma once

#include <cstdint>

namespace rondo::onednn {

// C [m, n] = op(A) op(B) (+ bias[n]) (+ C when `accumulate`), every matrix dense and row-major:
// A stored [m, k], or [k, m] when `a_transposed`; B stored [k, n], or [n, k] when `b_transposed`.
struct Gemm {
  int64_t m = 0, n = 0, k = 0;
  bool a_transposed = false, b_transposed = false;
  bool with_bias = false;
  bool accumulate = false;
};

// Whether oneDNN runs `g` with a brgemm kernel here (built and cached on first ask).
bool fast(const Gemm& g);
// Runs `g` (fast(g) must hold); bias is read only with g.with_bias.
void run(const Gemm& g, const float* a, const float* b, const float* bias, float* c);

// The kernel oneDNN chose for `g`, e.g. "brg:avx512_core" ("" when it has none).
const char* implementation(const Gemm& g);

}  // namespace rondo::onednn
