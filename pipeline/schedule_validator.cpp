#include "pipeline/schedule_validator.h"

#include <map>
#include <tuple>

#include "common/errors.h"
#include "pipeline/schedule_simulator.h"

namespace rondo {

void validate_schedule(const PipelineSchedule& s) {
  const auto fail = [&](const std::string& rule, const std::string& what) {
    throw PlanError("schedule " + s.name + " is invalid: rule " + rule + ": " + what);
  };
  if (static_cast<int>(s.ranks.size()) != s.pp) {
    fail("1 (shape)",
         std::to_string(s.ranks.size()) + " action lists for " + std::to_string(s.pp) + " ranks");
  }
  const int total_mb = s.microbatches * s.iterations;
  // (kind, stage, microbatch) -> (rank, position)
  std::map<std::tuple<int, int, int>, std::pair<int, size_t>> where;
  for (int r = 0; r < s.pp; ++r) {
    const auto& list = s.ranks[static_cast<size_t>(r)];
    for (size_t i = 0; i < list.size(); ++i) {
      const auto& a = list[i];
      const std::string at =
          "rank " + std::to_string(r) + " action " + std::to_string(i) + " (" + to_string(a) + ")";
      const int stages =
          s.num_backward_stages > 0 && a.kind == ComputeKind::kB ? s.num_backward_stages : s.num_stages;
      if (a.stage < 0 || a.stage >= stages) fail("1 (shape)", at + ": stage out of range");
      if (a.microbatch < 0 || a.microbatch >= total_mb) fail("1 (shape)", at + ": microbatch out of range");
      const bool split_kind = a.kind == ComputeKind::kI || a.kind == ComputeKind::kW;
      if (s.split_backward ? a.kind == ComputeKind::kB : split_kind) {
        fail("2 (counts)", at + (s.split_backward ? ": B in a split-backward schedule"
                                                  : ": I/W in a schedule with full B"));
      }
      auto [it, inserted] = where.try_emplace({static_cast<int>(a.kind), a.stage, a.microbatch}, r, i);
      if (!inserted) {
        fail("2 (counts)", at + " repeats the action at rank " + std::to_string(it->second.first) +
                               " position " + std::to_string(it->second.second));
      }
    }
  }
  const std::vector<ComputeKind> kinds =
      s.split_backward ? std::vector<ComputeKind>{ComputeKind::kF, ComputeKind::kI, ComputeKind::kW}
                       : std::vector<ComputeKind>{ComputeKind::kF, ComputeKind::kB};
  for (ComputeKind k : kinds) {
    const int stages =
        s.num_backward_stages > 0 && k == ComputeKind::kB ? s.num_backward_stages : s.num_stages;
    for (int st = 0; st < stages; ++st) {
      for (int mb = 0; mb < total_mb; ++mb) {
        if (!where.count({static_cast<int>(k), st, mb})) {
          fail("2 (counts)", "stage " + std::to_string(st) + " never runs " + to_string({k, st, mb}));
        }
      }
    }
  }
  const ComputeKind backward = s.split_backward ? ComputeKind::kI : ComputeKind::kB;
  // With a separate backward partition a B does not pair with one F: rule 4 checks its order.
  for (const auto& [k, loc] : where) {
    if (s.num_backward_stages > 0) break;
    const auto [kind, st, mb] = k;
    auto before = [&](ComputeKind first, const char* what) {
      const auto& dep = where.at({static_cast<int>(first), st, mb});
      if (dep.first == loc.first && dep.second > loc.second) {
        fail("3 (order)", "rank " + std::to_string(loc.first) + " runs " +
                              to_string({static_cast<ComputeKind>(kind), st, mb}) + " before " +
                              to_string({first, st, mb}) + " " + what);
      }
    };
    if (static_cast<ComputeKind>(kind) == backward) before(ComputeKind::kF, "(backward before its forward)");
    if (static_cast<ComputeKind>(kind) == ComputeKind::kW) before(ComputeKind::kI, "(W before its I)");
  }
  try {
    auto unit = uniform_stage_costs(s.num_stages, s.virtual_stages, 1.0, 2.0, 1.0);
    if (s.num_backward_stages > 0) unit.b.assign(static_cast<size_t>(s.num_backward_stages), 2.0);
    simulate_schedule(s, unit);
  } catch (const PlanError& e) {
    fail("4 (progress)", e.what());
  }
}

}  // namespace rondo
