#include "parallelism/exec/moe_profile.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "comms/collectives.h"

namespace rondo {

namespace {

constexpr int kRepeats = 7;

// The fastest of kRepeats runs of `run`, each after an untimed `prepare`: the operation's own cost,
// as free of other processes' interference as the runs get.
template <typename F, typename P = void (*)()>
double fastest_seconds(
    F&& run, P&& prepare = [] {}) {
  prepare();
  run();  // warm-up
  std::vector<double> s;
  for (int i = 0; i < kRepeats; ++i) {
    prepare();
    const auto t0 = std::chrono::steady_clock::now();
    run();
    s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return *std::min_element(s.begin(), s.end());
}

// Rows per call at each candidate degree.
std::vector<int64_t> sizes(double rows) {
  std::vector<int64_t> out;
  for (int d : moe_profiled_degrees()) out.push_back(std::max<int64_t>(1, static_cast<int64_t>(rows / d)));
  return out;
}

}  // namespace

MoeCosts profile_moe_costs(Collectives& group, ExpertMlp& expert, const MoeLayerWork& work) {
  const int members = group.comm().size();
  const int64_t hidden = work.hidden, ffn = work.ffn;
  std::vector<std::pair<double, double>> exchange, compute, backward;
  for (int64_t rows : sizes(work.rows)) {
    const int64_t per_member = std::max<int64_t>(1, rows / members);
    auto send = torch::randn({per_member * members, hidden});
    auto recv = torch::empty_like(send);
    const std::vector<size_t> counts(static_cast<size_t>(members), static_cast<size_t>(per_member * hidden));
    const double bytes = static_cast<double>(per_member * hidden * 4 * (members - 1));
    exchange.emplace_back(bytes, fastest_seconds([&] {
                            group
                                .start_alltoallv(send.data_ptr<float>(), counts, recv.data_ptr<float>(),
                                                 counts, DType::kFloat32)
                                ->wait();
                          }));
  }
  for (int64_t rows : sizes(work.rows / static_cast<double>(work.local_experts))) {
    const auto x = torch::randn({rows, hidden}).requires_grad_(true);
    const double flops = 4.0 * static_cast<double>(rows * hidden * ffn);
    {
      torch::NoGradGuard no_grad;
      compute.emplace_back(flops, fastest_seconds([&] { expert.forward(x); }));
    }
    torch::Tensor y;
    const auto g = torch::randn({rows, hidden});
    backward.emplace_back(flops, fastest_seconds([&] { y.backward(g); }, [&] { y = expert.forward(x); }));
  }
  for (auto& p : expert.parameters()) {
    if (p.grad().defined()) p.mutable_grad().zero_();
  }
  MoeCosts costs{.alltoall = LinearCost::fit(exchange),
                 .expert = LinearCost::fit(compute),
                 .expert_backward = LinearCost::fit(backward),
                 .source = ""};
  // The slowest member's figures, so that every member picks the same degrees.
  double worst[6] = {costs.alltoall.alpha_s, costs.alltoall.beta_s,         costs.expert.alpha_s,
                     costs.expert.beta_s,    costs.expert_backward.alpha_s, costs.expert_backward.beta_s};
  group.comm().native_allreduce(worst, 6, DType::kFloat64, ReduceOp::kMax);
  costs.alltoall = {worst[0], worst[1]};
  costs.expert = {worst[2], worst[3]};
  costs.expert_backward = {worst[4], worst[5]};
  costs.source = "profiled on the " + std::to_string(members) + " ranks of an expert group (the fastest of " +
                 std::to_string(kRepeats) + " runs at each degree's sizes, the slowest member's fit)";
  return costs;
}

}  // namespace rondo
