#include "pipeline/schedule_csv.h"

#include <cmath>
#include <map>
#include <sstream>

#include "common/errors.h"

namespace rondo {
namespace {

// Every op one slot long, no transfer cost: slot index = start time.
StageCosts unit_slots(const PipelineSchedule& s) {
  auto c = s.split_backward ? uniform_stage_costs(s.num_stages, 1, 1.0, 2.0, 1.0)
                            : uniform_stage_costs(s.num_stages, 1, 1.0, 1.0, 0.0);
  if (s.num_backward_stages > 0) c.b.assign(static_cast<size_t>(s.num_backward_stages), 1.0);
  return c;
}

std::vector<std::string> split_cells(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  std::stringstream ss(line);
  while (std::getline(ss, cell, ',')) cells.push_back(cell);
  if (!line.empty() && line.back() == ',') cells.emplace_back();
  return cells;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// Cells of each rank's row: `cell(rank, op index)` placed at the op's unit-slot start.
template <typename Cell>
std::string slotted(const PipelineSchedule& s, Cell cell) {
  const auto slots = simulate_schedule(s, unit_slots(s));
  std::ostringstream out;
  for (size_t r = 0; r < slots.timeline.size(); ++r) {
    std::vector<std::string> row;
    for (size_t i = 0; i < slots.timeline[r].size(); ++i) {
      const auto slot = static_cast<size_t>(std::llround(slots.timeline[r][i].start));
      if (row.size() <= slot) row.resize(slot + 1);
      row[slot] = cell(r, i);
    }
    for (size_t c = 0; c < row.size(); ++c) out << (c ? "," : "") << row[c];
    out << "\n";
  }
  return out.str();
}

}  // namespace

std::string schedule_to_csv(const PipelineSchedule& s) {
  return slotted(s, [&](size_t r, size_t i) { return to_string(s.ranks[r][i]); });
}

std::string durations_to_csv(const PipelineSchedule& s, const SimulationResult& result) {
  return slotted(s, [&](size_t r, size_t i) {
    std::ostringstream v;
    v.precision(12);
    v << result.timeline[r][i].end - result.timeline[r][i].start;
    return v.str();
  });
}

PipelineSchedule schedule_from_csv(const std::string& csv, const std::string& name) {
  PipelineSchedule s;
  s.name = name;
  int max_stage = -1, max_mb = -1;
  const auto lines = lines_of(csv);
  for (size_t row = 0; row < lines.size(); ++row) {
    std::vector<ComputeAction> actions;
    const auto cells = split_cells(lines[row]);
    for (size_t col = 0; col < cells.size(); ++col) {
      const std::string& c = cells[col];
      if (c.empty()) continue;
      const auto letter = c.find_first_of("FBIW");
      const auto bad = [&] {
        return PlanError("action CSV row " + std::to_string(row + 1) + " column " + std::to_string(col + 1) +
                         ": '" + c + "' is not {stage}{F|B|I|W}{microbatch}");
      };
      if (letter == std::string::npos || letter == 0 || letter + 1 >= c.size()) throw bad();
      const std::string stage = c.substr(0, letter), mb = c.substr(letter + 1);
      const auto digits = [](const std::string& x) {
        return !x.empty() && x.find_first_not_of("0123456789") == std::string::npos;
      };
      if (!digits(stage) || !digits(mb)) throw bad();
      const ComputeKind kind = c[letter] == 'F'   ? ComputeKind::kF
                               : c[letter] == 'B' ? ComputeKind::kB
                               : c[letter] == 'I' ? ComputeKind::kI
                                                  : ComputeKind::kW;
      actions.push_back({kind, std::stoi(stage), std::stoi(mb)});
      max_stage = std::max(max_stage, actions.back().stage);
      max_mb = std::max(max_mb, actions.back().microbatch);
      s.split_backward = s.split_backward || kind == ComputeKind::kI || kind == ComputeKind::kW;
    }
    s.ranks.push_back(std::move(actions));
  }
  if (s.ranks.empty() || max_stage < 0) throw PlanError("action CSV holds no actions");
  s.pp = static_cast<int>(s.ranks.size());
  s.num_stages = max_stage + 1;
  s.microbatches = max_mb + 1;
  s.virtual_stages = s.num_stages % s.pp == 0 ? s.num_stages / s.pp : 1;
  s.stage_share.assign(static_cast<size_t>(s.num_stages), 1.0 / s.virtual_stages);
  return s;
}

StageCosts stage_costs_from_csv(const PipelineSchedule& s, const std::string& durations_csv) {
  const auto lines = lines_of(durations_csv);
  const auto slots = simulate_schedule(s, unit_slots(s));
  if (lines.size() != s.ranks.size()) throw PlanError("durations CSV rows do not match the action CSV");
  std::map<std::pair<int, int>, std::pair<double, int>> sums;  // (kind, stage) -> (sum, count)
  for (size_t r = 0; r < lines.size(); ++r) {
    const auto cells = split_cells(lines[r]);
    for (size_t i = 0; i < slots.timeline[r].size(); ++i) {
      const auto slot = static_cast<size_t>(std::llround(slots.timeline[r][i].start));
      if (slot >= cells.size() || cells[slot].empty()) {
        throw PlanError("durations CSV row " + std::to_string(r + 1) + " has no duration for " +
                        to_string(s.ranks[r][i]));
      }
      auto& acc = sums[{static_cast<int>(s.ranks[r][i].kind), s.ranks[r][i].stage}];
      acc.first += std::stod(cells[slot]);
      acc.second += 1;
    }
  }
  StageCosts c;
  c.f.assign(static_cast<size_t>(s.num_stages), 0);
  c.b = c.w = c.f;
  auto mean = [&](ComputeKind k, int st) {
    auto it = sums.find({static_cast<int>(k), st});
    return it == sums.end() ? 0.0 : it->second.first / it->second.second;
  };
  for (int st = 0; st < s.num_stages; ++st) {
    const auto u = static_cast<size_t>(st);
    c.f[u] = mean(ComputeKind::kF, st);
    if (s.split_backward) {
      c.w[u] = mean(ComputeKind::kW, st);
      c.b[u] = mean(ComputeKind::kI, st) + c.w[u];
    } else {
      c.b[u] = mean(ComputeKind::kB, st);
    }
  }
  return c;
}

}  // namespace rondo
