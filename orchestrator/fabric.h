// The cluster's fabric as the config describes it (topology.*): the leaf-spine model the traffic
// planner works on (comms/traffic_planner.h), each rank's host, and the links to keep traffic off.
#pragma once

#include <optional>
#include <set>
#include <vector>

#include "comms/traffic_planner.h"
#include "orchestrator/config.h"

namespace rondo {

struct Fabric {
  LeafSpine network;
  std::vector<int> host_of_rank;  // by world rank
  std::set<int> degraded;         // LeafSpine link numbers
  int channels = 1;
};

// nullopt when topology.leaves is 0. Throws ConfigError naming the key (a host beyond the fabric,
// a placement of the wrong length, a link that does not parse or does not exist).
std::optional<Fabric> fabric_of(const Config& config);

// The ring the traffic planner gives `members` (world ranks) on the fabric: each leaf left once,
// hosts kept together. Starts with the first member.
std::vector<int> fabric_ring(const Fabric& fabric, const std::vector<int>& members);

}  // namespace rondo
