// Verdict: what fault localisation concluded, as events.jsonl, the dashboard and /metrics show it:
// {"kind": "slow_rank" | "slow_link" | "hang" | "crash", "ranks": [...], "link": [src, dst],
// "step", "evidence": {...}}. A link names world ranks, sender first; -1 on one side when only
// that side is known (a slow sender's node: [src, -1]).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace rondo {

enum class FaultKind { kSlowRank, kSlowLink, kHang, kCrash };
const char* fault_kind_name(FaultKind kind);
inline constexpr FaultKind kFaultKinds[] = {FaultKind::kSlowRank, FaultKind::kSlowLink, FaultKind::kHang,
                                            FaultKind::kCrash};

struct Verdict {
  FaultKind kind = FaultKind::kSlowRank;
  std::vector<int> ranks;                   // the ranks at fault (a link's: none, it is the link)
  std::optional<std::pair<int, int>> link;  // slow_link, or a hang stalled on a connection
  int64_t step = 0;                         // the step it was reached at (the last step reported)
  nlohmann::json evidence = nlohmann::json::object();

  // The events.jsonl form, without "time" (the event sink stamps it).
  nlohmann::json to_json() const;
};

}  // namespace rondo
