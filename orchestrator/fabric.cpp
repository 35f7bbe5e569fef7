#include "orchestrator/fabric.h"

#include <algorithm>
#include <string>

#include "common/errors.h"

namespace rondo {
namespace {

// A whole non-negative number, or -1.
int64_t whole(const std::string& s) {
  if (s.empty() || s.size() > 9 ||
      !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(s);
}

std::vector<int> placement(const TopologyConfig& t, const LeafSpine& net, int64_t world) {
  const std::string key = "topology.rank_hosts";
  std::vector<int> hosts;
  if (t.rank_hosts.empty()) {
    for (int64_t r = 0; r < world; ++r) hosts.push_back(static_cast<int>(r / t.ranks_per_host));
    if (hosts.back() >= net.hosts()) {
      throw ConfigError("topology.ranks_per_host",
                        std::to_string(world) + " ranks at " + std::to_string(t.ranks_per_host) +
                            " a host need " + std::to_string(hosts.back() + 1) + " hosts, the fabric has " +
                            std::to_string(net.hosts()) + " (topology.leaves * topology.hosts_per_leaf)");
    }
    return hosts;
  }
  for (const auto& item : comma_items(t.rank_hosts)) {
    const int64_t h = whole(item);
    if (h < 0 || h >= net.hosts()) {
      throw ConfigError(
          key, "'" + item + "' is not a host of the fabric (0.." + std::to_string(net.hosts() - 1) + ")");
    }
    hosts.push_back(static_cast<int>(h));
  }
  if (static_cast<int64_t>(hosts.size()) != world) {
    throw ConfigError(key, "names " + std::to_string(hosts.size()) + " hosts for " + std::to_string(world) +
                               " ranks (parallel.world_size): one per rank");
  }
  return hosts;
}

// "leaf1>spine2", "spine2>leaf1", "host3>leaf", "leaf>host3" -> the link's number, or -1.
int parse_link(const std::string& item, const LeafSpine& net) {
  const auto gt = item.find('>');
  if (gt == std::string::npos) return -1;
  const std::string a = item.substr(0, gt), b = item.substr(gt + 1);
  const auto numbered = [](const std::string& s, const std::string& prefix, int count) -> int {
    if (s.rfind(prefix, 0) != 0) return -1;
    const int64_t n = whole(s.substr(prefix.size()));
    return n >= 0 && n < count ? static_cast<int>(n) : -1;
  };
  if (int h = numbered(a, "host", net.hosts()); h >= 0 && b == "leaf") return net.host_up(h);
  if (int h = numbered(b, "host", net.hosts()); h >= 0 && a == "leaf") return net.host_down(h);
  const int leaf_a = numbered(a, "leaf", net.leaves), spine_b = numbered(b, "spine", net.spines);
  if (leaf_a >= 0 && spine_b >= 0) return net.leaf_up(leaf_a, spine_b);
  const int spine_a = numbered(a, "spine", net.spines), leaf_b = numbered(b, "leaf", net.leaves);
  if (spine_a >= 0 && leaf_b >= 0) return net.spine_down(spine_a, leaf_b);
  return -1;
}

}  // namespace

std::optional<Fabric> fabric_of(const Config& config) {
  const auto& t = config.topology;
  if (t.leaves == 0) return std::nullopt;
  const auto positive = [](int64_t v, const std::string& key) {
    if (v < 1 || v > 1'000'000) throw ConfigError(key, "must be 1..1000000, got " + std::to_string(v));
  };
  positive(t.leaves, "topology.leaves");
  positive(t.hosts_per_leaf, "topology.hosts_per_leaf");
  positive(t.spines, "topology.spines");
  positive(t.ranks_per_host, "topology.ranks_per_host");
  positive(t.channels, "topology.channels");
  if (t.leaves * t.hosts_per_leaf > 1'000'000)
    throw ConfigError("topology.hosts_per_leaf", "more than a million hosts in all");
  if (!(t.host_gbps > 0)) throw ConfigError("topology.host_gbps", "must be > 0");
  if (!(t.spine_gbps > 0)) throw ConfigError("topology.spine_gbps", "must be > 0");
  Fabric f;
  f.network = {static_cast<int>(t.leaves), static_cast<int>(t.hosts_per_leaf), static_cast<int>(t.spines),
               t.host_gbps, t.spine_gbps};
  f.host_of_rank = placement(t, f.network, config.parallel.world_size);
  for (const auto& item : comma_items(t.degraded_links)) {
    const int link = parse_link(item, f.network);
    if (link < 0) {
      throw ConfigError(
          "topology.degraded_links",
          "'" + item + "' is not a link of the fabric (leafL>spineS, spineS>leafL, hostH>leaf, leaf>hostH)");
    }
    f.degraded.insert(link);
  }
  f.channels = static_cast<int>(t.channels);
  return f;
}

std::vector<int> fabric_ring(const Fabric& fabric, const std::vector<int>& members) {
  RingTraffic t;
  for (int r : members) t.host_of_rank.push_back(fabric.host_of_rank.at(static_cast<size_t>(r)));
  t.bytes = 1;
  t.channels = fabric.channels;
  const auto planned = plan_ring_traffic(fabric.network, t, fabric.degraded);
  std::vector<int> ring;
  for (int local : planned.ring) ring.push_back(members.at(static_cast<size_t>(local)));
  std::rotate(ring.begin(), std::find(ring.begin(), ring.end(), members.front()), ring.end());
  return ring;
}

}  // namespace rondo
