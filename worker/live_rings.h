// LiveRings: gradient rings sent to a running job (faults.policy replan: control command
// SET_RINGS). Every version received is kept (the control plane's thread adds them); each step's
// statistics carry the newest version this rank has (received()), and the step's minimum over the
// ranks is the version all have: agree() turns it, when newer than the one in force, into this
// rank's new order of its data-parallel group -- the same decision on every rank at the same step.
// Torch-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace rondo {

class LiveRings {
 public:
  // `group`: this rank's data-parallel group's world ranks, by group index; `rank`: its world rank.
  LiveRings(std::vector<int> group, int rank) : group_(std::move(group)), rank_(rank) {}

  // Any thread: version `version`'s rings, each a group's world ranks in ring order.
  void receive(uint64_t version, std::vector<std::vector<int>> rings);
  // The newest version received (0: none).
  uint64_t received() const { return received_.load(); }

  struct Change {
    uint64_t version = 0;
    std::vector<std::vector<int>> rings;  // as received
    std::vector<int> order;               // this rank's group, by group index in ring order
    std::string refused;                  // why there is no order for this rank's group ("" if there is)
  };
  // `agreed`: the minimum of received() over the ranks. The version newly in force, or nullopt
  // when it is not newer than the one in force.
  std::optional<Change> agree(uint64_t agreed);

 private:
  const std::vector<int> group_;
  const int rank_;
  std::mutex mu_;
  std::map<uint64_t, std::vector<std::vector<int>>> by_version_;
  std::atomic<uint64_t> received_{0};
  uint64_t in_force_ = 0;  // 0: the plan's
};

}  // namespace rondo
