#include "worker/onednn_gemm.h"

#include <dnnl.hpp>

#include <map>
#include <string>
#include <tuple>

namespace rondo::onednn {

namespace {

struct Cached {
  dnnl::memory::desc a, b, bias, c;
  dnnl::matmul primitive;
  std::string implementation;  // empty: no brgemm kernel, not used
};

struct ThreadState {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::map<std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, bool>, Cached> cache;
};

ThreadState& state() {
  thread_local ThreadState s;
  return s;
}

using dims = dnnl::memory::dims;
constexpr auto kF32 = dnnl::memory::data_type::f32;

const Cached& lookup(const Gemm& g) {
  auto& s = state();
  const auto key = std::make_tuple(g.m, g.n, g.k, g.a_transposed, g.b_transposed, g.with_bias, g.accumulate);
  if (auto it = s.cache.find(key); it != s.cache.end()) return it->second;
  Cached c;
  c.a = dnnl::memory::desc({g.m, g.k}, kF32, g.a_transposed ? dims{1, g.m} : dims{g.k, 1});
  c.b = dnnl::memory::desc({g.k, g.n}, kF32, g.b_transposed ? dims{1, g.k} : dims{g.n, 1});
  c.c = dnnl::memory::desc({g.m, g.n}, kF32, dims{g.n, 1});
  if (g.with_bias) c.bias = dnnl::memory::desc({1, g.n}, kF32, dims{g.n, 1});
  dnnl::primitive_attr attr;
  if (g.accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  const auto desc =
      g.with_bias ? dnnl::matmul::desc(c.a, c.b, c.bias, c.c) : dnnl::matmul::desc(c.a, c.b, c.c);
  const dnnl::matmul::primitive_desc pd(desc, attr, s.engine);
  const std::string impl = pd.impl_info_str();
  if (impl.rfind("brg", 0) == 0) {
    c.primitive = dnnl::matmul(pd);
    c.implementation = impl;
  }
  return s.cache.emplace(key, std::move(c)).first->second;
}

}  // namespace

bool fast(const Gemm& g) { return !lookup(g).implementation.empty(); }

const char* implementation(const Gemm& g) { return lookup(g).implementation.c_str(); }

void run(const Gemm& g, const float* a, const float* b, const float* bias, float* c) {
  const Cached& p = lookup(g);
  auto& s = state();
  // oneDNN takes non-const handles; it does not write A, B or the bias.
  const dnnl::memory am(p.a, s.engine, const_cast<float*>(a)), bm(p.b, s.engine, const_cast<float*>(b)),
      cm(p.c, s.engine, c);
  if (g.with_bias) {
    const dnnl::memory biasm(p.bias, s.engine, const_cast<float*>(bias));
    p.primitive.execute(
        s.stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_BIAS, biasm}, {DNNL_ARG_DST, cm}});
  } else {
    p.primitive.execute(s.stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  }
  s.stream.wait();
}

}  // namespace rondo::onednn
