#include "faults/verdict.h"

namespace rondo {

const char* fault_kind_name(FaultKind kind) {
  switch (kind) {
    case FaultKind::kSlowRank:
      return "slow_rank";
    case FaultKind::kSlowLink:
      return "slow_link";
    case FaultKind::kHang:
      return "hang";
    case FaultKind::kCrash:
      return "crash";
  }
  return "?";
}

nlohmann::json Verdict::to_json() const {
  nlohmann::json j = {{"event", "fault"},
                      {"kind", fault_kind_name(kind)},
                      {"ranks", ranks},
                      {"step", step},
                      {"evidence", evidence}};
  if (link) j["link"] = {link->first, link->second};
  return j;
}

}  // namespace rondo
