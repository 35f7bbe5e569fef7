#include "pipeline/transfer_lowering.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>

namespace rondo {
namespace {

uint64_t action_key(const ComputeAction& a) {
  return (static_cast<uint64_t>(a.kind) << 58) | (static_cast<uint64_t>(a.stage) << 32) |
         static_cast<uint32_t>(a.microbatch);
}

StepKind transfer_kind(ComputeKind produced, bool send) {
  if (produced == ComputeKind::kF) return send ? StepKind::kSendF : StepKind::kRecvF;
  return send ? StepKind::kSendB : StepKind::kRecvB;
}

StepKind compute_kind(ComputeKind k) {
  switch (k) {
    case ComputeKind::kF:
      return StepKind::kF;
    case ComputeKind::kB:
      return StepKind::kB;
    case ComputeKind::kI:
      return StepKind::kI;
    case ComputeKind::kW:
      return StepKind::kW;
  }
  return StepKind::kF;
}

}  // namespace

std::vector<std::vector<PipelineStep>> lower_transfers(const PipelineSchedule& s) {
  std::unordered_map<uint64_t, int> rank_of;
  std::unordered_map<uint64_t, std::vector<int>> consumers;
  for (size_t r = 0; r < s.ranks.size(); ++r) {
    for (const auto& a : s.ranks[r]) rank_of[action_key(a)] = static_cast<int>(r);
  }
  for (size_t r = 0; r < s.ranks.size(); ++r) {
    for (const auto& a : s.ranks[r]) {
      for (const auto& in : action_inputs(s, a)) {
        auto& c = consumers[action_key(in)];
        if (std::find(c.begin(), c.end(), static_cast<int>(r)) == c.end()) c.push_back(static_cast<int>(r));
      }
    }
  }
  std::vector<std::vector<PipelineStep>> out(s.ranks.size());
  for (size_t r = 0; r < s.ranks.size(); ++r) {
    const int me = static_cast<int>(r);
    for (const auto& a : s.ranks[r]) {
      for (const auto& in : action_inputs(s, a)) {
        const int from = rank_of.at(action_key(in));
        if (from != me) out[r].push_back({transfer_kind(in.kind, false), in.stage, in.microbatch, from});
      }
      out[r].push_back({compute_kind(a.kind), a.stage, a.microbatch, -1});
      if (auto c = consumers.find(action_key(a)); c != consumers.end()) {
        for (int to : c->second) {
          if (to != me) out[r].push_back({transfer_kind(a.kind, true), a.stage, a.microbatch, to});
        }
      }
    }
  }
  return out;
}

}  // namespace rondo
