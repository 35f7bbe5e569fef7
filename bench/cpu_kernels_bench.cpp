// The CPU kernels behind training.cpu_kernels fused, timed alone: the fused GELU and attention
// softmax on every instruction set this CPU runs, and oneDNN's GEMMs against OpenBLAS's (sgemm_, the
// BLAS LibTorch calls) at the demo model's linear-layer shapes. One thread; medians of 200 runs.
//
//   OMP_NUM_THREADS=1 build/bench/rondo_cpu_kernels_bench
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "worker/cpu_kernels.h"
#include "worker/onednn_gemm.h"

extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc);

namespace {

using namespace rondo;

template <class F>
double median_us(F f, int runs = 200) {
  for (int i = 0; i < 10; ++i) f();
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - a).count());
  }
  std::nth_element(t.begin(), t.begin() + runs / 2, t.end());
  return t[runs / 2];
}

std::vector<float> random_values(size_t n, float scale, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (auto& e : v) e = normal(gen);
  return v;
}

// Row-major C [m, n] = op(A) op(B) (+ C) through the column-major Fortran interface.
void openblas_gemm(const onednn::Gemm& g, const float* a, const float* b, float* c) {
  const int m = static_cast<int>(g.m), n = static_cast<int>(g.n), k = static_cast<int>(g.k);
  const int lda = g.a_transposed ? m : k, ldb = g.b_transposed ? k : n;
  const float one = 1.0f, beta = g.accumulate ? 1.0f : 0.0f;
  sgemm_(g.b_transposed ? "T" : "N", g.a_transposed ? "T" : "N", &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c,
         &n);
}

// The elementwise kernels on each instruction set: a layer's GELU input [4 x 128, 512] and
// attention scores [16, 128, 128] (causal).
void elementwise_table() {
  const int64_t n = 4 * 128 * 512, rows = 16 * 128, cols = 128;
  const auto x = random_values(n, 2.0f, 1), dy = random_values(n, 1.0f, 2);
  std::vector<float> bias(128 * 128), y(n), dx(n);
  for (int64_t r = 0; r < 128; ++r)
    for (int64_t c = 0; c < 128; ++c) bias[r * 128 + c] = c <= r ? 0.0f : -__builtin_inff();
  std::vector<cpu_kernels::Isa> isas = {cpu_kernels::Isa::kScalar};
  if (cpu_kernels::best_isa() != cpu_kernels::Isa::kScalar) isas.push_back(cpu_kernels::Isa::kAvx2);
  if (cpu_kernels::best_isa() == cpu_kernels::Isa::kAvx512) isas.push_back(cpu_kernels::Isa::kAvx512);
  std::printf("| kernel | elements |");
  for (auto isa : isas) std::printf(" %s (us) |", cpu_kernels::isa_name(isa));
  std::printf("\n| --- | --- |");
  for (size_t i = 0; i < isas.size(); ++i) std::printf(" --- |");
  std::printf("\n");
  struct Row {
    const char* name;
    int64_t elements;
    void (*run)(cpu_kernels::Isa, const std::vector<float>&, const std::vector<float>&,
                const std::vector<float>&, std::vector<float>&, std::vector<float>&);
  };
  const Row rows_[] = {
      {"GELU forward", n,
       [](cpu_kernels::Isa i, const auto& x, const auto&, const auto&, auto& y, auto&) {
         cpu_kernels::gelu_forward(i, x.data(), y.data(), static_cast<int64_t>(x.size()));
       }},
      {"GELU backward", n,
       [](cpu_kernels::Isa i, const auto& x, const auto& dy, const auto&, auto& y, auto& dx) {
         cpu_kernels::gelu_backward(i, x.data(), y.data(), dy.data(), dx.data(),
                                    static_cast<int64_t>(x.size()));
       }},
      {"softmax forward (scale, causal mask)", rows * cols,
       [](cpu_kernels::Isa i, const auto& x, const auto&, const auto& bias, auto& y, auto&) {
         for (int b = 0; b < 16; ++b)
           cpu_kernels::softmax_forward(i, x.data() + b * 128 * 128, bias.data(), 0.177f,
                                        y.data() + b * 128 * 128, 128, 128);
       }},
      {"softmax backward", rows * cols,
       [](cpu_kernels::Isa i, const auto&, const auto& dy, const auto&, auto& y, auto& dx) {
         cpu_kernels::softmax_backward(i, y.data(), dy.data(), 0.177f, dx.data(), 16 * 128, 128);
       }},
  };
  for (const auto& r : rows_) {
    std::printf("| %s | %ld |", r.name, static_cast<long>(r.elements));
    for (auto isa : isas) {
      const double us =
          median_us([&] { r.run(isa, x, dy, bias, y, dx); }, isa == cpu_kernels::Isa::kScalar ? 20 : 200);
      std::printf(" %.1f |", us);
    }
    std::printf("\n");
  }
}

// The GEMMs of the demo model's linear layers on one microbatch of 4 x 128 tokens, oneDNN's
// against OpenBLAS's.
void gemm_table() {
  struct Shape {
    const char* layer;
    int64_t in, out;
  };
  const Shape shapes[] = {
      {"qkv", 128, 384}, {"proj", 128, 128}, {"fc", 128, 512}, {"fc_out", 512, 128}, {"lm_head", 128, 256}};
  const int64_t m = 512;
  std::printf(
      "\n| layer | GEMM | oneDNN (us) | OpenBLAS (us) | oneDNN GFLOP/s | OpenBLAS GFLOP/s |\n| --- | --- | "
      "--- | --- | --- | --- |\n");
  double total_onednn = 0, total_openblas = 0;
  for (const auto& s : shapes) {
    const onednn::Gemm gemms[] = {{m, s.out, s.in, false, true, false, false},
                                  {m, s.in, s.out, false, false, false, false},
                                  {s.out, s.in, m, true, false, false, true}};
    const char* names[] = {"forward x W^T", "input gradient g W", "weight gradient W.grad += g^T x"};
    for (int i = 0; i < 3; ++i) {
      const auto& g = gemms[i];
      const auto a = random_values(g.m * g.k, 1.0f, 3), b = random_values(g.k * g.n, 1.0f, 4);
      std::vector<float> c(g.m * g.n);
      const double flops = 2.0 * g.m * g.n * g.k;
      const double t_onednn =
          onednn::fast(g) ? median_us([&] { onednn::run(g, a.data(), b.data(), nullptr, c.data()); }) : 0;
      const double t_openblas = median_us([&] { openblas_gemm(g, a.data(), b.data(), c.data()); });
      total_onednn += t_onednn;
      total_openblas += t_openblas;
      std::printf("| %s | %s | %.1f | %.1f | %.0f | %.0f |\n", s.layer, names[i], t_onednn, t_openblas,
                  t_onednn > 0 ? flops / t_onednn / 1e3 : 0.0, flops / t_openblas / 1e3);
    }
  }
  std::printf("| all | per layer set | %.0f | %.0f | oneDNN/OpenBLAS time %.2f | (%s) |\n", total_onednn,
              total_openblas, total_onednn / total_openblas,
              onednn::implementation({m, 384, 128, false, true, false, false}));
}

}  // namespace

int main() {
  using CoreName = char* (*)();
  auto corename = reinterpret_cast<CoreName>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* threads = std::getenv("OMP_NUM_THREADS");
  std::printf("# best instruction set %s; OpenBLAS core %s; OMP_NUM_THREADS=%s\n",
              cpu_kernels::isa_name(cpu_kernels::best_isa()), corename ? corename() : "?",
              threads ? threads : "unset");
  elementwise_table();
  gemm_table();
  return 0;
}
