#include "worker/live_rings.h"

#include <algorithm>

namespace rondo {

void LiveRings::receive(uint64_t version, std::vector<std::vector<int>> rings) {
  std::lock_guard lock(mu_);
  by_version_[version] = std::move(rings);
  if (version > received_) received_ = version;
}

std::optional<LiveRings::Change> LiveRings::agree(uint64_t agreed) {
  if (agreed <= in_force_) return std::nullopt;
  in_force_ = agreed;
  Change change{agreed, {}, {}, {}};
  {
    std::lock_guard lock(mu_);
    change.rings = by_version_[agreed];  // every rank has it: the minimum says so
  }
  const auto mine = std::find_if(change.rings.begin(), change.rings.end(), [&](const std::vector<int>& r) {
    return std::find(r.begin(), r.end(), rank_) != r.end();
  });
  if (mine == change.rings.end() || mine->size() != group_.size()) {
    change.refused = "no ring of this rank's group";
    return change;
  }
  for (int r : *mine) {
    const auto at = std::find(group_.begin(), group_.end(), r);
    if (at == group_.end()) {
      change.refused = "rank " + std::to_string(r) + " is not in this rank's group";
      change.order.clear();
      return change;
    }
    change.order.push_back(static_cast<int>(at - group_.begin()));
  }
  return change;
}

}  // namespace rondo
