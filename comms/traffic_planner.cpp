#include "comms/traffic_planner.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

namespace rondo {

double LeafSpine::capacity_bytes_per_s(int link) const {
  return (link < 2 * hosts() ? host_gbps : spine_gbps) * 1e9 / 8;
}

std::string LeafSpine::link_name(int link) const {
  const int h = hosts();
  if (link < h) return "host " + std::to_string(link) + " -> leaf " + std::to_string(leaf_of(link));
  if (link < 2 * h)
    return "leaf " + std::to_string(leaf_of(link - h)) + " -> host " + std::to_string(link - h);
  const int fabric = link - 2 * h;
  const int half = leaves * spines;
  const int i = fabric % half, leaf = i / spines, spine = i % spines;
  return fabric < half ? "leaf " + std::to_string(leaf) + " -> spine " + std::to_string(spine)
                       : "spine " + std::to_string(spine) + " -> leaf " + std::to_string(leaf);
}

double TrafficPlan::max_link_bytes() const {
  return load.empty() ? 0 : *std::max_element(load.begin(), load.end());
}

namespace {

double edge_bytes(const RingTraffic& t) {
  const auto n = static_cast<double>(t.host_of_rank.size());
  return n > 1 ? 2 * (n - 1) / n * t.bytes : 0;
}

// One flow per ring edge and channel, spines not chosen yet.
std::vector<Flow> ring_flows(const RingTraffic& t, const std::vector<int>& ring) {
  std::vector<Flow> flows;
  const size_t n = ring.size();
  if (n < 2) return flows;
  const int channels = std::max(1, t.channels);
  for (size_t i = 0; i < n; ++i) {
    const int a = ring[i], b = ring[(i + 1) % n];
    for (int c = 0; c < channels; ++c) {
      flows.push_back({a, b, t.host_of_rank[static_cast<size_t>(a)], t.host_of_rank[static_cast<size_t>(b)],
                       edge_bytes(t) / channels, -1});
    }
  }
  return flows;
}

bool between_leaves(const LeafSpine& f, const Flow& flow) {
  return flow.src_host != flow.dst_host && f.leaf_of(flow.src_host) != f.leaf_of(flow.dst_host);
}

}  // namespace

void load_flows(const LeafSpine& f, TrafficPlan& plan) {
  plan.load.assign(static_cast<size_t>(f.link_count()), 0.0);
  const auto add = [&](int link, double bytes) { plan.load[static_cast<size_t>(link)] += bytes; };
  for (const auto& flow : plan.flows) {
    if (flow.src_host == flow.dst_host) continue;  // through memory
    add(f.host_up(flow.src_host), flow.bytes);
    add(f.host_down(flow.dst_host), flow.bytes);
    if (between_leaves(f, flow)) {
      add(f.leaf_up(f.leaf_of(flow.src_host), flow.spine), flow.bytes);
      add(f.spine_down(flow.spine, f.leaf_of(flow.dst_host)), flow.bytes);
    }
  }
  plan.completion_s = 0;
  plan.busiest_link = -1;
  for (int link = 0; link < f.link_count(); ++link) {
    const double s = plan.load[static_cast<size_t>(link)] / f.capacity_bytes_per_s(link);
    if (s > plan.completion_s) plan.completion_s = s, plan.busiest_link = link;
  }
}

TrafficPlan ecmp_ring_traffic(const LeafSpine& f, const RingTraffic& t, std::mt19937& rng) {
  TrafficPlan plan;
  plan.ring.resize(t.host_of_rank.size());
  std::iota(plan.ring.begin(), plan.ring.end(), 0);
  plan.flows = ring_flows(t, plan.ring);
  std::uniform_int_distribution<int> spine(0, f.spines - 1);
  for (auto& flow : plan.flows) {
    if (between_leaves(f, flow)) flow.spine = spine(rng);
  }
  load_flows(f, plan);
  return plan;
}

TrafficPlan plan_ring_traffic(const LeafSpine& f, const RingTraffic& t, const std::set<int>& degraded) {
  TrafficPlan plan;
  // The ring visits each leaf's ranks together, and each host's: it crosses every link it must once.
  plan.ring.resize(t.host_of_rank.size());
  std::iota(plan.ring.begin(), plan.ring.end(), 0);
  const auto host = [&](int r) { return t.host_of_rank[static_cast<size_t>(r)]; };
  std::stable_sort(plan.ring.begin(), plan.ring.end(), [&](int a, int b) {
    return std::pair(f.leaf_of(host(a)), host(a)) < std::pair(f.leaf_of(host(b)), host(b));
  });
  plan.flows = ring_flows(t, plan.ring);
  load_flows(f, plan);  // host links only so far: no flow has a spine yet
  // Largest flows first, each onto the spine whose two links end up least loaded (relative to
  // their capacity), a degraded link only when every spine has one on this path.
  std::vector<size_t> order;
  for (size_t i = 0; i < plan.flows.size(); ++i) {
    if (between_leaves(f, plan.flows[i])) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return plan.flows[a].bytes > plan.flows[b].bytes; });
  for (size_t i : order) {
    auto& flow = plan.flows[i];
    const int from = f.leaf_of(flow.src_host), to = f.leaf_of(flow.dst_host);
    double best = INFINITY;
    bool best_degraded = true;
    for (int s = 0; s < f.spines; ++s) {
      const int up = f.leaf_up(from, s), down = f.spine_down(s, to);
      const bool bad = degraded.contains(up) || degraded.contains(down);
      const double worst =
          std::max((plan.load[static_cast<size_t>(up)] + flow.bytes) / f.capacity_bytes_per_s(up),
                   (plan.load[static_cast<size_t>(down)] + flow.bytes) / f.capacity_bytes_per_s(down));
      if ((best_degraded && !bad) || (bad == best_degraded && worst < best)) {
        best = worst, best_degraded = bad, flow.spine = s;
      }
    }
    plan.load[static_cast<size_t>(f.leaf_up(from, flow.spine))] += flow.bytes;
    plan.load[static_cast<size_t>(f.spine_down(flow.spine, to))] += flow.bytes;
  }
  load_flows(f, plan);
  return plan;
}

int avoided_links_used(const std::vector<int>& ring, const std::set<std::pair<int, int>>& avoid) {
  int used = 0;
  for (size_t i = 0; ring.size() > 1 && i < ring.size(); ++i) {
    used += avoid.contains({ring[i], ring[(i + 1) % ring.size()]}) ? 1 : 0;
  }
  return used;
}

std::vector<int> ring_avoiding(const std::vector<int>& members, const std::set<std::pair<int, int>>& avoid) {
  std::vector<int> best = members;
  int best_used = avoided_links_used(best, avoid);
  if (best_used == 0 || members.size() < 3) return best;
  const auto consider = [&](const std::vector<int>& ring) {
    const int used = avoided_links_used(ring, avoid);
    if (used < best_used) best = ring, best_used = used;
    return best_used == 0;
  };
  std::vector<int> ring = members;
  std::reverse(ring.begin() + 1, ring.end());  // the same ring the other way round
  if (consider(ring)) return best;
  ring = members;
  if (members.size() <= 9) {
    std::sort(ring.begin() + 1, ring.end());
    do {
      if (consider(ring)) return best;
    } while (std::next_permutation(ring.begin() + 1, ring.end()));
    return best;
  }
  std::mt19937 rng(1);
  for (int k = 0; k < 20000; ++k) {
    std::shuffle(ring.begin() + 1, ring.end(), rng);
    if (consider(ring)) return best;
  }
  return best;
}

double rings_lower_bound_s(const LeafSpine& f, const std::vector<RingTraffic>& rings) {
  std::map<int, double> host_bytes;  // what each host must send (and receive), over all rings
  std::map<int, double> leaf_bytes;  // what must leave each leaf, over all rings
  double unsplit = 0;                // one ring's share of a leaf uplink, its flows spread at best
  for (const auto& t : rings) {
    std::set<int> hosts, leaves;
    for (int h : t.host_of_rank) hosts.insert(h), leaves.insert(f.leaf_of(h));
    const double edge = edge_bytes(t);
    // Every host of a ring over several hosts sends at least one edge's bytes, and receives them.
    if (hosts.size() > 1) {
      for (int h : hosts) host_bytes[h] += edge;
    }
    if (leaves.size() > 1) {
      // Every leaf sends at least one edge out, in `channels` flows over its spines at best evenly.
      for (int l : leaves) leaf_bytes[l] += edge;
      const int c = std::max(1, t.channels);
      unsplit = std::max(unsplit, std::ceil(static_cast<double>(c) / f.spines) * (edge / c));
    }
  }
  double host = 0, leaf = unsplit;
  for (const auto& [h, bytes] : host_bytes) host = std::max(host, bytes);
  for (const auto& [l, bytes] : leaf_bytes) leaf = std::max(leaf, bytes / f.spines);
  return std::max(host / (f.host_gbps * 1e9 / 8), leaf / (f.spine_gbps * 1e9 / 8));
}

double ring_lower_bound_s(const LeafSpine& f, const RingTraffic& t) { return rings_lower_bound_s(f, {t}); }

}  // namespace rondo
