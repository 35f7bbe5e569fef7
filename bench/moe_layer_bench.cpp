// An MoE layer's expert part under FSMoE-style pipelining (parallelism/exec/expert_pipeline.h):
// forward + backward time of one layer at pipeline degrees 1, 2, 4 and 8 on the ranks of one
// expert group, the degrees alternated over rounds in one run (the median of each), against the
// degree the cost model picks from a profiling pass (parallelism/exec/moe_profile.h): the chosen
// degree's measured time over the measured best.
//   mpirun -np N build/bench/rondo_moe_layer_bench [link_gbit_s [tokens [hidden [ffn [experts]]]]]
// link_gbit_s > 0 emulates a link of that speed for every transfer of the exchanges (0: the
// machine's own transport).
// ROUNDS (default 15): rounds of the alternation.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <vector>

#include <torch/torch.h>
#include <torch/version.h>

#include "comms/collectives.h"
#include "comms/mpi/mpi_communicator.h"
#include "parallelism/exec/moe_layer.h"
#include "parallelism/exec/moe_profile.h"

namespace {

class GeluExpert : public rondo::ExpertMlp {
 public:
  GeluExpert(int64_t hidden, int64_t ffn)
      : fc(register_module("fc", torch::nn::Linear(hidden, ffn))),
        fc_out(register_module("fc_out", torch::nn::Linear(ffn, hidden))) {}
  torch::Tensor forward(const torch::Tensor& x) override { return fc_out(torch::gelu(fc(x))); }
  torch::nn::Linear fc, fc_out;
};

double arg(int argc, char** argv, int i, double fallback) { return argc > i ? std::atof(argv[i]) : fallback; }

}  // namespace

int main(int argc, char** argv) {
  rondo::MpiRuntime mpi(&argc, &argv);
  auto world = rondo::MpiCommunicator::world();
  const double link_gbit = arg(argc, argv, 1, 0);
  const auto tokens = static_cast<int64_t>(arg(argc, argv, 2, 2048));
  const auto hidden = static_cast<int64_t>(arg(argc, argv, 3, 256));
  const auto ffn = static_cast<int64_t>(arg(argc, argv, 4, 1024));
  const auto experts = static_cast<int64_t>(arg(argc, argv, 5, 8));
  const int n = world->size(), rank = world->rank();
  torch::set_num_threads(1);
  std::vector<int> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  auto combine_comm = world->split(all);
  rondo::Collectives dispatch(*world, nullptr), combine(*combine_comm, nullptr);
  for (auto* c : {&dispatch, &combine}) c->set_emulated_link_bandwidth(link_gbit * 1e9 / 8);
  auto runtime = std::make_shared<rondo::MoeRuntime>(rondo::ExpertParallel{&dispatch, &combine, n, rank});
  const rondo::MoeOptions options{.hidden_size = hidden,
                                  .num_experts = experts,
                                  .topk = 2,
                                  .capacity_factor = 1.0,
                                  .aux_loss_coeff = 0.0};
  torch::manual_seed(1);
  rondo::MoeMlp layer(options, 0, runtime, [&] { return std::make_shared<GeluExpert>(hidden, ffn); });
  torch::manual_seed(100 + rank);
  const auto x = torch::randn({tokens, hidden}).requires_grad_(true);
  const auto w = torch::randn({tokens, hidden});

  const auto step = [&](rondo::ExpertDegrees d) {
    runtime->set_degrees(d);
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    (layer->forward(x) * w).sum().backward();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);  // the slowest rank's
    return s;
  };
  // What `auto` does: profile, predict, pick.
  const rondo::MoeLayerWork work{.rows = static_cast<double>(tokens * 2),
                                 .hidden = hidden,
                                 .ffn = ffn,
                                 .local_experts = experts / n,
                                 .members = n};
  const auto costs = rondo::profile_moe_costs(dispatch, layer->expert(0), work);
  const auto choice = rondo::choose_moe_degrees(costs, work);
  // The experts alone: each local expert's forward and backward on its share of the rows a rank
  // receives, no exchange, no routing. What a layer takes beyond it is its exposed exchange (and
  // the routing and gathers around it).
  const int64_t local = experts / n, rows_each = tokens * 2 / local;
  const auto expert_rows = torch::randn({rows_each, hidden}).requires_grad_(true);
  const auto expert_grad = torch::randn({rows_each, hidden});
  const auto experts_alone = [&] {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t l = 0; l < local; ++l) layer->expert(l).forward(expert_rows).backward(expert_grad);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return s;
  };
  // Every degree, the chosen pair (0) and the experts alone (-1), alternated round by round.
  const std::vector<int> measured = {1, 2, 4, 8};
  std::vector<int> degrees = measured;
  degrees.push_back(0);
  degrees.push_back(-1);
  const auto run = [&](int d) {
    if (d < 0) return experts_alone();
    return step(d ? rondo::ExpertDegrees{d, d} : rondo::ExpertDegrees{choice.forward, choice.backward});
  };
  std::map<int, std::vector<double>> times;
  for (int d : degrees) run(d);  // warm-up
  const char* rounds_env = std::getenv("ROUNDS");
  const int rounds = rounds_env ? std::max(1, std::atoi(rounds_env)) : 15;
  for (int round = 0; round < rounds; ++round) {
    for (int d : degrees) times[d].push_back(run(d));
  }
  std::map<int, double> median;
  for (auto& [d, t] : times) {
    std::sort(t.begin(), t.end());
    median[d] = t[t.size() / 2];
  }
  if (rank == 0) {
    const char* coretype = std::getenv("OPENBLAS_CORETYPE");
    const auto parallel = at::get_parallel_info();
    const auto backend = parallel.find("ATen parallel backend");
    std::printf("torch %s; %d intra-op, %d inter-op threads; %s; OPENBLAS_CORETYPE=%s; glibc malloc\n",
                TORCH_VERSION, at::get_num_threads(), at::get_num_interop_threads(),
                backend == std::string::npos
                    ? ""
                    : parallel.substr(backend, parallel.find('\n', backend) - backend).c_str(),
                coretype ? coretype : "(unset)");
    std::printf(
        "ranks %d, link %s, tokens %lld per rank (top-2 of %lld experts, capacity 1.0), hidden %lld, ffn "
        "%lld, "
        "torch threads %d\n",
        n, link_gbit > 0 ? (std::to_string(link_gbit) + " Gbit/s emulated").c_str() : "the machine's",
        static_cast<long long>(tokens), static_cast<long long>(experts), static_cast<long long>(hidden),
        static_cast<long long>(ffn), torch::get_num_threads());
    std::printf(
        "fitted: all-to-all %.1f us + %.3f ns/byte; expert %.1f us + %.4f ns/FLOP, its backward %.1f us + "
        "%.4f ns/FLOP\n",
        costs.alltoall.alpha_s * 1e6, costs.alltoall.beta_s * 1e9, costs.expert.alpha_s * 1e6,
        costs.expert.beta_s * 1e9, costs.expert_backward.alpha_s * 1e6, costs.expert_backward.beta_s * 1e9);
    std::printf("experts alone (forward + backward, no exchange): %.2f ms\n", median[-1] * 1e3);
    std::printf("%8s %14s %16s %18s\n", "degree", "measured_ms", "predicted_ms", "beyond_experts_ms");
    int best = 1;
    for (int d : measured) {
      if (median[d] < median[best]) best = d;
      std::printf("%8d %14.2f %16.2f %18.2f\n", d, median[d] * 1e3,
                  (choice.forward_s.at(d) + choice.backward_s.at(d)) * 1e3, (median[d] - median[-1]) * 1e3);
    }
    std::printf(
        "chosen: forward %d, backward %d: %.2f ms (%.2f ms beyond the experts); measured best %d; "
        "chosen / best %.3f\n",
        choice.forward, choice.backward, median[0] * 1e3, (median[0] - median[-1]) * 1e3, best,
        median[0] / median[best]);
  }
  return 0;
}
