// The kernels of worker/cpu_kernels.h written once over a vector type, included by one translation
// unit per instruction set (cpu_kernels_scalar.cpp, _avx2.cpp, _avx512.cpp), each compiled with its
// own -m flags and -ffp-contract=off. Before including it, a unit defines, in an anonymous
// namespace: `V` (a vector of V::kWidth floats, kWidth dividing 16), `M` (a lane mask) and
//   set1, load, store, load_partial(p, n, fill) (lanes from n on hold fill), store_partial(p, v, n),
//   add, sub, mul, div, fma(a, b, c) = a * b + c and fnma(a, b, c) = c - a * b (one rounding),
//   max(a, b) = a > b ? a : b, min(a, b) = a < b ? a : b, abs, round (to nearest even),
//   pow2(n) = 2^n for integral n in [-126, 127], lt, gt, ge, unordered, select(m, if_set, if_clear).
// It includes nothing itself: an -m flag must not leak into an inline function another unit uses.
//
// Every operation is IEEE-rounded and the units use the same sequence, so results are bitwise
// equal across instruction sets; sums accumulate element j in lane j % 16 and reduce by one tree.

namespace {

constexpr int kLanes = 16;
constexpr int kAccumulators = kLanes / V::kWidth;

// exp(x) for float: n = round(x / ln 2), r = x - n ln 2 (two-part ln 2), Cephes'
// polynomial for exp(r), times 2^n. Below -87.34 (where exp leaves the normal range) 0; above 88
// +inf (so that n stays <= 127; the kernels only take exp of values <= 0); NaN stays NaN.
[[gnu::always_inline]] inline V exp_approx(V x) {
  const V lo = set1(-87.33654f), hi = set1(88.0f);
  const V xc = min(max(x, lo), hi);
  const V n = round(mul(xc, set1(1.44269504088896341f)));
  V r = fnma(n, set1(0.693359375f), xc);
  r = fnma(n, set1(-2.12194440e-4f), r);
  V p = set1(1.9875691500e-4f);
  p = fma(p, r, set1(1.3981999507e-3f));
  p = fma(p, r, set1(8.3334519073e-3f));
  p = fma(p, r, set1(4.1665795894e-2f));
  p = fma(p, r, set1(1.6666665459e-1f));
  p = fma(p, r, set1(5.0000001201e-1f));
  V y = add(fma(p, mul(r, r), r), set1(1.0f));
  y = mul(y, pow2(n));
  y = select(lt(x, lo), set1(0.0f), y);
  y = select(gt(x, hi), set1(__builtin_inff()), y);
  return select(unordered(x, x), x, y);
}

// Phi(x), the standard normal CDF, as erfc: with a = |x| / sqrt(2) and t = 1 / (1 + a / 2),
// erfc(a) = t exp(-a^2 + P(t)) (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7), and
// Phi(x) = erfc(a) / 2 for x < 0, 1 - erfc(a) / 2 otherwise.
[[gnu::always_inline]] inline V normal_cdf(V x) {
  const V a = abs(mul(x, set1(0.70710678118654752f)));
  const V t = div(set1(1.0f), fma(a, set1(0.5f), set1(1.0f)));
  V p = set1(0.17087277f);
  p = fma(p, t, set1(-0.82215223f));
  p = fma(p, t, set1(1.48851587f));
  p = fma(p, t, set1(-1.13520398f));
  p = fma(p, t, set1(0.27886807f));
  p = fma(p, t, set1(-0.18628806f));
  p = fma(p, t, set1(0.09678418f));
  p = fma(p, t, set1(0.37409196f));
  p = fma(p, t, set1(1.00002368f));
  p = fma(p, t, set1(-1.26551223f));
  const V half_erfc = mul(set1(0.5f), mul(t, exp_approx(fnma(a, a, p))));
  return select(ge(x, set1(0.0f)), sub(set1(1.0f), half_erfc), half_erfc);
}

[[gnu::always_inline]] inline V gelu_value(V x) { return mul(x, normal_cdf(x)); }

// Phi(x) + x phi(x) given y = x Phi(x): Phi = y / x (1/2 where |x| < 1e-30, below which y / x
// loses Phi to underflow and Phi(x) rounds to 1/2 anyway), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
[[gnu::always_inline]] inline V gelu_slope(V x, V y) {
  const V cdf = select(lt(abs(x), set1(1e-30f)), set1(0.5f), div(y, x));
  const V density = mul(exp_approx(mul(mul(x, x), set1(-0.5f))), set1(0.39894228040143268f));
  return fma(x, density, cdf);
}

// The 16 lanes reduced by one tree: (0+8, 1+9, ...), then (0+4, ...), (0+2, ...), 0+1.
float reduce_lanes(const V (&acc)[kAccumulators], bool take_max) {
  float lanes[kLanes];
  for (int i = 0; i < kAccumulators; ++i) store(lanes + i * V::kWidth, acc[i]);
  for (int w = kLanes / 2; w >= 1; w /= 2) {
    for (int i = 0; i < w; ++i) {
      const float a = lanes[i], b = lanes[i + w];
      lanes[i] = take_max ? (a > b ? a : b) : a + b;
    }
  }
  return lanes[0];
}

// z = scale * x + bias (one rounding; no bias: scale * x) of the row's elements [j, j + count).
template <bool kBias>
[[gnu::always_inline]] inline V scores(const float* x, const float* bias, V scale, int64_t j, int count) {
  if (count == V::kWidth) return kBias ? fma(load(x + j), scale, load(bias + j)) : mul(load(x + j), scale);
  // Padding lanes: x = -inf, bias = 0, so z = -inf (scale > 0).
  const V xs = load_partial(x + j, count, -__builtin_inff());
  return kBias ? fma(xs, scale, load_partial(bias + j, count, 0.0f)) : mul(xs, scale);
}

template <bool kBias>
float row_max(const float* x, const float* bias, V scale, int64_t cols) {
  V acc[kAccumulators];
  for (auto& a : acc) a = set1(-__builtin_inff());
  int64_t j = 0;
  int block = 0;
  for (; j + V::kWidth <= cols; j += V::kWidth, block = (block + 1) % kAccumulators) {
    acc[block] = max(acc[block], scores<kBias>(x, bias, scale, j, V::kWidth));
  }
  if (j < cols) acc[block] = max(acc[block], scores<kBias>(x, bias, scale, j, static_cast<int>(cols - j)));
  return reduce_lanes(acc, true);
}

// y = exp(z - m), returning the sum of y.
template <bool kBias>
float exp_row(const float* x, const float* bias, V scale, float m, float* y, int64_t cols) {
  V acc[kAccumulators];
  for (auto& a : acc) a = set1(0.0f);
  const V vm = set1(m);
  int64_t j = 0;
  int block = 0;
  for (; j + V::kWidth <= cols; j += V::kWidth, block = (block + 1) % kAccumulators) {
    const V e = exp_approx(sub(scores<kBias>(x, bias, scale, j, V::kWidth), vm));
    store(y + j, e);
    acc[block] = add(acc[block], e);
  }
  if (j < cols) {
    const int n = static_cast<int>(cols - j);
    // Padding lanes hold -inf: exp gives 0 (or NaN in a row that is NaN anyway).
    const V e = exp_approx(sub(scores<kBias>(x, bias, scale, j, n), vm));
    store_partial(y + j, e, n);
    acc[block] = add(acc[block], e);
  }
  return reduce_lanes(acc, false);
}

float dot_row(const float* a, const float* b, int64_t cols) {
  V acc[kAccumulators];
  for (auto& s : acc) s = set1(0.0f);
  int64_t j = 0;
  int block = 0;
  for (; j + V::kWidth <= cols; j += V::kWidth, block = (block + 1) % kAccumulators) {
    acc[block] = add(acc[block], mul(load(a + j), load(b + j)));
  }
  if (j < cols) {
    const int n = static_cast<int>(cols - j);
    acc[block] = add(acc[block], mul(load_partial(a + j, n, 0.0f), load_partial(b + j, n, 0.0f)));
  }
  return reduce_lanes(acc, false);
}

// f(i, count) on blocks of V::kWidth elements (the last one possibly partial), four blocks per
// iteration so that their independent dependency chains overlap.
template <class F>
[[gnu::always_inline]] inline void map_elements(int64_t n, F f) {
  int64_t i = 0;
  for (; i + 4 * V::kWidth <= n; i += 4 * V::kWidth) {
    f(i, V::kWidth);
    f(i + V::kWidth, V::kWidth);
    f(i + 2 * V::kWidth, V::kWidth);
    f(i + 3 * V::kWidth, V::kWidth);
  }
  for (; i + V::kWidth <= n; i += V::kWidth) f(i, V::kWidth);
  if (i < n) f(i, static_cast<int>(n - i));
}

void gelu_forward_impl(const float* x, float* y, int64_t n) {
  map_elements(n, [&](int64_t i, int count) {
    if (count == V::kWidth) {
      store(y + i, gelu_value(load(x + i)));
    } else {
      store_partial(y + i, gelu_value(load_partial(x + i, count, 0.0f)), count);
    }
  });
}

void gelu_backward_impl(const float* x, const float* y, const float* dy, float* dx, int64_t n) {
  map_elements(n, [&](int64_t i, int count) {
    if (count == V::kWidth) {
      store(dx + i, mul(load(dy + i), gelu_slope(load(x + i), load(y + i))));
    } else {
      const V slope = gelu_slope(load_partial(x + i, count, 0.0f), load_partial(y + i, count, 0.0f));
      store_partial(dx + i, mul(load_partial(dy + i, count, 0.0f), slope), count);
    }
  });
}

void scale_row(float* y, float s, int64_t cols) {
  const V vs = set1(s);
  map_elements(cols, [&](int64_t j, int count) {
    if (count == V::kWidth) {
      store(y + j, mul(load(y + j), vs));
    } else {
      store_partial(y + j, mul(load_partial(y + j, count, 0.0f), vs), count);
    }
  });
}

template <bool kBias>
void softmax_forward_impl(const float* x, const float* bias, float scale, float* y, int64_t rows,
                          int64_t cols) {
  const V vs = set1(scale);
  for (int64_t r = 0; r < rows; ++r, x += cols, y += cols) {
    const float* b = kBias ? bias + r * cols : nullptr;
    const float sum = exp_row<kBias>(x, b, vs, row_max<kBias>(x, b, vs, cols), y, cols);
    scale_row(y, 1.0f / sum, cols);
  }
}

void softmax_backward_impl(const float* y, const float* dy, float scale, float* dx, int64_t rows,
                           int64_t cols) {
  const V vs = set1(scale);
  for (int64_t r = 0; r < rows; ++r, y += cols, dy += cols, dx += cols) {
    const V dot = set1(dot_row(y, dy, cols));
    map_elements(cols, [&](int64_t j, int count) {
      if (count == V::kWidth) {
        store(dx + j, mul(mul(load(y + j), sub(load(dy + j), dot)), vs));
      } else {
        const V g = mul(load_partial(y + j, count, 0.0f), sub(load_partial(dy + j, count, 0.0f), dot));
        store_partial(dx + j, mul(g, vs), count);
      }
    });
  }
}

}  // namespace

// The unit's entry points, in namespace rondo::cpu_kernels::RONDO_CPU_KERNELS_ISA.
namespace rondo::cpu_kernels::RONDO_CPU_KERNELS_ISA {
void gelu_forward(const float* x, float* y, int64_t n) { gelu_forward_impl(x, y, n); }
void gelu_backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) {
  gelu_backward_impl(x, y, dy, dx, n);
}
void softmax_forward(const float* x, const float* bias, float scale, float* y, int64_t rows, int64_t cols) {
  if (bias) {
    softmax_forward_impl<true>(x, bias, scale, y, rows, cols);
  } else {
    softmax_forward_impl<false>(x, nullptr, scale, y, rows, cols);
  }
}
void softmax_backward(const float* y, const float* dy, float scale, float* dx, int64_t rows, int64_t cols) {
  softmax_backward_impl(y, dy, scale, dx, rows, cols);
}
}  // namespace rondo::cpu_kernels::RONDO_CPU_KERNELS_ISA
