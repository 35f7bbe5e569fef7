// Fused float32 CPU kernels for the worker's elementwise hot spots, forward and backward: GELU in
// its exact (erf) form and attention's softmax with its scaling and mask. ATen runs each as several passes
// with general-purpose exp/erf; these compute each in one pass with short polynomials, on AVX-512, AVX2 or
// plain C++.
//
// The three instruction sets give bitwise equal results: every element goes through the same
// operations in the same order (explicit FMAs, no contraction), and row sums are accumulated in
// 16 lanes (element j into lane j % 16) reduced by one fixed tree. A job whose ranks run on
// different CPUs stays deterministic, and the vector code is tested against the scalar code bit for
// bit. No LibTorch here: worker/fused_ops.h wraps these as autograd functions.
//
// Accuracy (tests/worker/cpu_kernels_test.cpp, against double precision): GELU within
// 2e-7 max(1, |x|), its derivative within 3e-7, softmax within 4e-6 relative. exp is Cephes'
// polynomial; the normal CDF is erfc's Chebyshev fit (relative error 1.2e-7 in exact arithmetic).
#pragma once

#include <cstdint>

namespace rondo::cpu_kernels {

enum class Isa { kScalar, kAvx2, kAvx512 };

// The widest instruction set this CPU runs (AVX-512F; AVX2 with FMA; else scalar).
Isa best_isa();
const char* isa_name(Isa isa);

// y = x * Phi(x), Phi the standard normal CDF: torch::gelu's default (approximate="none").
void gelu_forward(Isa isa, const float* x, float* y, int64_t n);
// dx = dy * (Phi(x) + x * phi(x)), phi the standard normal density, given the forward's y: Phi(x)
// is y / x, so the backward needs one exp and no erf.
void gelu_backward(Isa isa, const float* x, const float* y, const float* dy, float* dx, int64_t n);

// Each of `rows` rows of `cols` contiguous values: with z = scale * x + bias (bias: the same
// shape as x, or null for none; scale > 0), y = exp(z - max(z)) / sum(exp(z - max(z))): attention's
// probabilities from raw scores and an additive mask in one pass. -inf entries of z get 0; a row of
// only -inf, or with a NaN, gets NaN (as torch::softmax).
void softmax_forward(Isa isa, const float* x, const float* bias, float scale, float* y, int64_t rows,
                     int64_t cols);
// dx = scale * y * (dy - sum(y * dy)) row by row, y the forward's output: the gradient of x.
void softmax_backward(Isa isa, const float* y, const float* dy, float scale, float* dx, int64_t rows,
                      int64_t cols);

// One instruction set's kernels (worker/cpu_kernels_impl.h, compiled once per set).
#define RONDO_CPU_KERNELS_DECLARE(ns)                                                          \
  namespace ns {                                                                               \
  void gelu_forward(const float* x, float* y, int64_t n);                                      \
  void gelu_backward(const float* x, const float* y, const float* dy, float* dx, int64_t n);   \
  void softmax_forward(const float* x, const float* bias, float scale, float* y, int64_t rows, \
                       int64_t cols);                                                          \
  void softmax_backward(const float* y, const float* dy, float scale, float* dx, int64_t rows, \
                        int64_t cols);                                                         \
  }
RONDO_CPU_KERNELS_DECLARE(scalar)
RONDO_CPU_KERNELS_DECLARE(avx2)
RONDO_CPU_KERNELS_DECLARE(avx512)
#undef RONDO_CPU_KERNELS_DECLARE

}  // namespace rondo::cpu_kernels
