#include "orchestrator/plan_transfer_checks.h"

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

#include "common/errors.h"
#include "orchestrator/plan_views.h"

namespace rondo {

void validate_plan_transfers(const plan::Plan& p) {
  struct Key {
    uint64_t ranks, what;
    bool operator==(const Key&) const = default;
  };
  struct Hash {
    size_t operator()(const Key& k) const {
      return std::hash<uint64_t>()(k.ranks * 0x9E3779B97F4A7C15ull ^ k.what);
    }
  };
  std::unordered_map<Key, int, Hash> open;  // sends minus receives per transfer
  for (const auto& r : p.ranks()) {
    for (const auto& a : r.actions()) {
      const bool send = a.kind() == plan::ACTION_SEND_F || a.kind() == plan::ACTION_SEND_B;
      const bool recv = a.kind() == plan::ACTION_RECV_F || a.kind() == plan::ACTION_RECV_B;
      if (!send && !recv) continue;
      const uint64_t from = send ? r.rank() : static_cast<uint32_t>(a.peer());
      const uint64_t to = send ? static_cast<uint32_t>(a.peer()) : r.rank();
      const bool forward = a.kind() == plan::ACTION_SEND_F || a.kind() == plan::ACTION_RECV_F;
      const Key k{from << 32 | to, (uint64_t{forward} << 63) | (uint64_t{a.stage()} << 32) | a.microbatch()};
      open[k] += send ? 1 : -1;
    }
  }
  for (const auto& [k, balance] : open) {
    if (balance == 0) continue;
    const std::string what =
        std::string(k.what >> 63 ? "activations" : "gradients") + " of stage " +
        std::to_string((k.what >> 32) & 0x7FFFFFFF) + " microbatch " + std::to_string(k.what & 0xFFFFFFFF) +
        " from rank " + std::to_string(k.ranks >> 32) + " to rank " + std::to_string(k.ranks & 0xFFFFFFFF);
    throw PlanError("plan transfer mismatch: " + what +
                    (balance > 0 ? " is sent but never received" : " is received but never sent"));
  }
}

std::string blocking_send_deadlock(const plan::Plan& p) {
  const int n = p.ranks_size();
  std::vector<int> pos(static_cast<size_t>(n), 0);
  const auto is_transfer = [](plan::ActionKind k) {
    return k == plan::ACTION_SEND_F || k == plan::ACTION_SEND_B || k == plan::ACTION_RECV_F ||
           k == plan::ACTION_RECV_B;
  };
  // The action a rank stands at matches the peer's when they are the two ends of one transfer.
  const auto matches = [&](int r, int peer) {
    if (pos[static_cast<size_t>(peer)] >= p.ranks(peer).actions_size()) return false;
    const auto& a = p.ranks(r).actions(pos[static_cast<size_t>(r)]);
    const auto& b = p.ranks(peer).actions(pos[static_cast<size_t>(peer)]);
    if (b.peer() != r || a.stage() != b.stage() || a.microbatch() != b.microbatch()) return false;
    return (a.kind() == plan::ACTION_SEND_F && b.kind() == plan::ACTION_RECV_F) ||
           (a.kind() == plan::ACTION_RECV_F && b.kind() == plan::ACTION_SEND_F) ||
           (a.kind() == plan::ACTION_SEND_B && b.kind() == plan::ACTION_RECV_B) ||
           (a.kind() == plan::ACTION_RECV_B && b.kind() == plan::ACTION_SEND_B);
  };
  // Transfers stay inside a pipeline group, and every group runs the same actions: the first one
  // (tp = cp = dp = 0) decides. Collectives (ALLREDUCE, OPTIM) are left out: every rank reaches
  // them after its transfers.
  std::vector<int> group;
  for (const auto& r : p.ranks()) {
    if (r.coords().dp() == 0 && r.coords().tp() == 0 && r.coords().cp() == 0)
      group.push_back(static_cast<int>(r.rank()));
  }
  for (bool moved = true; moved;) {
    moved = false;
    for (int r : group) {
      auto& i = pos[static_cast<size_t>(r)];
      const auto& acts = p.ranks(r).actions();
      while (i < acts.size()) {
        const auto& a = acts[i];
        if (!is_transfer(a.kind())) {
          ++i;
          moved = true;
          continue;
        }
        if (!matches(r, a.peer())) break;
        ++i;
        ++pos[static_cast<size_t>(a.peer())];
        moved = true;
      }
    }
  }
  std::string stuck;
  for (int r : group) {
    const int i = pos[static_cast<size_t>(r)];
    if (i >= p.ranks(r).actions_size()) continue;
    stuck += (stuck.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + " blocked in " +
             action_to_string(p.ranks(r).actions(i)) + " (action " + std::to_string(i) + ")";
  }
  return stuck;
}

}  // namespace rondo
