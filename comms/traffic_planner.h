// Traffic planning on a leaf-spine fabric (C4P-style): the flows a job's ring all-reduce puts on
// the fabric, where they go, and how loaded that leaves each link. Plain C++, no I/O: `rondo plan
// --traffic` prints it for a config, bench/traffic_bench compares it with ECMP at scale.
//
// The fabric: `leaves` leaf switches of `hosts_per_leaf` hosts each, every leaf wired to each of
// `spines` spine switches. Links are directed (a NIC's send and receive are separate). A flow
// between hosts on one leaf crosses the sender's uplink and the receiver's downlink; between leaves
// it also crosses one spine, the one its path names. Ranks on one host talk through memory.
//
// plan_ring_traffic() orders the ring so that it leaves each leaf once (the fewest flows between
// leaves any ring can have) and gives each flow between leaves the spine that keeps the most
// loaded link least loaded, avoiding degraded links while any other spine is left; ecmp_ring_traffic()
// is what hashing does with the ring in rank order: a spine per flow, drawn at random.
#pragma once

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace rondo {

struct LeafSpine {
  int leaves = 1;
  int hosts_per_leaf = 1;
  int spines = 1;
  double host_gbps = 100;   // each host's link to its leaf, each direction
  double spine_gbps = 100;  // each leaf-spine link, each direction

  int hosts() const { return leaves * hosts_per_leaf; }
  int leaf_of(int host) const { return host / hosts_per_leaf; }
  // Directed links, numbered: host h up (h -> leaf) h, down (leaf -> h) hosts() + h; leaf l to
  // spine s 2 hosts() + l spines + s, spine s to leaf l 2 hosts() + leaves spines + l spines + s.
  int link_count() const { return 2 * hosts() + 2 * leaves * spines; }
  int host_up(int h) const { return h; }
  int host_down(int h) const { return hosts() + h; }
  int leaf_up(int leaf, int spine) const { return 2 * hosts() + leaf * spines + spine; }
  int spine_down(int spine, int leaf) const { return 2 * hosts() + leaves * spines + leaf * spines + spine; }
  double capacity_bytes_per_s(int link) const;
  std::string link_name(int link) const;  // "host 3 -> leaf 0", "leaf 1 -> spine 2", ...
};

struct Flow {
  int src_rank = -1, dst_rank = -1;
  int src_host = -1, dst_host = -1;
  double bytes = 0;
  int spine = -1;  // between leaves: the spine it crosses
};

struct TrafficPlan {
  std::vector<int> ring;     // ranks in ring order
  std::vector<Flow> flows;   // one per ring edge and channel
  std::vector<double> load;  // bytes per link
  // Seconds the busiest link needs for its bytes: the all-reduce's time on this fabric when links
  // share their capacity fairly (a fluid bound, latencies left out).
  double completion_s = 0;
  int busiest_link = -1;
  double max_link_bytes() const;
};

// A ring all-reduce of `bytes` per rank over ranks placed on `host_of_rank`, each ring edge split
// into `channels` parallel flows (NCCL's channels: flows that hash independently). A ring of n
// ranks moves 2 (n - 1) / n of the bytes over each edge.
struct RingTraffic {
  std::vector<int> host_of_rank;
  double bytes = 0;
  int channels = 1;
};

// The links loads and completion time of `flows` (their spines chosen) on the fabric.
void load_flows(const LeafSpine& fabric, TrafficPlan& plan);

TrafficPlan ecmp_ring_traffic(const LeafSpine& fabric, const RingTraffic& t, std::mt19937& rng);
TrafficPlan plan_ring_traffic(const LeafSpine& fabric, const RingTraffic& t,
                              const std::set<int>& degraded_links = {});
// A ring over `members` (world ranks, in their order) that uses none of the directed links in
// `avoid` when one exists: the members' order if it already does, else reversed, else the first
// found searching (exhaustively up to 9 members, then 20,000 seeded random orders). When none
// avoids them all, the order using the fewest. The first member stays first.
std::vector<int> ring_avoiding(const std::vector<int>& members, const std::set<std::pair<int, int>>& avoid);
// How many of the ring's edges (each member to the next, the last to the first) are in `avoid`.
int avoided_links_used(const std::vector<int>& ring, const std::set<std::pair<int, int>>& avoid);

// The fabric's lower bound for any ring and any paths: the busiest host link's unavoidable bytes,
// and each used leaf's uplinks sharing the fewest bytes any ring must send out of it.
double ring_lower_bound_s(const LeafSpine& fabric, const RingTraffic& t);
// The same for rings all-reducing at once (a plan's data-parallel groups): their unavoidable bytes
// add up on the hosts and leaves they share.
double rings_lower_bound_s(const LeafSpine& fabric, const std::vector<RingTraffic>& rings);

}  // namespace rondo
