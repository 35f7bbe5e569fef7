// Traffic planning on simulated leaf-spine fabrics (comms/traffic_planner.h): a ring all-reduce on
// a job placed on a random half of the hosts (fragmented, as a busy cluster's scheduler leaves
// it), each ring edge in 1-8 flows. Random ECMP with the ranks in host order and in the
// scheduler's (random) order, against rondo's plan: the most loaded link's bytes and the
// completion time, each over the fabric's lower bound; the median and worst of the trials.
//
//   rondo_traffic_bench [--trials N] [--seed S]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "comms/traffic_planner.h"

namespace {

struct Stats {
  std::vector<double> v;
  double median() {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
  double worst() const { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }
};

}  // namespace

int main(int argc, char** argv) {
  int trials = 20;
  unsigned seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--trials")) trials = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--seed")) seed = static_cast<unsigned>(std::atoi(argv[i + 1]));
  }
  std::printf(
      "%d trials per row, seed %u; each host 100 Gb/s, each leaf-spine link 100 Gb/s (non-blocking)\n",
      trials, seed);
  std::printf("%-10s %8s %6s | %-28s | %-28s | %-28s\n", "fabric", "channels", "ranks",
              "ECMP, ranks in host order", "ECMP, scheduler's order", "rondo");
  for (int size : {8, 16}) {
    rondo::LeafSpine fabric{
        .leaves = size, .hosts_per_leaf = size, .spines = size, .host_gbps = 100, .spine_gbps = 100};
    for (int channels : {1, 2, 4, 8}) {
      std::mt19937 rng(seed);
      Stats sorted_ecmp, random_ecmp, planned;
      for (int t = 0; t < trials; ++t) {
        std::vector<int> hosts(static_cast<size_t>(fabric.hosts()));
        for (size_t h = 0; h < hosts.size(); ++h) hosts[h] = static_cast<int>(h);
        std::shuffle(hosts.begin(), hosts.end(), rng);
        hosts.resize(hosts.size() / 2);
        rondo::RingTraffic random_order{.host_of_rank = hosts, .bytes = 1e9, .channels = channels};
        auto host_order = random_order;
        std::sort(host_order.host_of_rank.begin(), host_order.host_of_rank.end());
        const double bound = rondo::ring_lower_bound_s(fabric, random_order);
        sorted_ecmp.v.push_back(rondo::ecmp_ring_traffic(fabric, host_order, rng).completion_s / bound);
        random_ecmp.v.push_back(rondo::ecmp_ring_traffic(fabric, random_order, rng).completion_s / bound);
        planned.v.push_back(rondo::plan_ring_traffic(fabric, random_order).completion_s / bound);
      }
      const auto cell = [](Stats& s) {
        static char buf[64];
        std::snprintf(buf, sizeof(buf), "%.2fx bound (worst %.2fx)", s.median(), s.worst());
        return std::string(buf);
      };
      std::printf("%2dx%-2d hosts %8d %6d | %-28s | %-28s | %-28s\n", size, size, channels,
                  fabric.hosts() / 2, cell(sorted_ecmp).c_str(), cell(random_ecmp).c_str(),
                  cell(planned).c_str());
    }
  }
  return 0;
}
