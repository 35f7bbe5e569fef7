// `rondo diagnose RUN_DIR`: fault localisation after the fact. Replays the step reports the
// coordinator recorded (RUN_DIR/timings.jsonl) through the same FaultDetector it runs live, and
// lists the verdicts, with the hangs and crashes the live run recorded in events.jsonl.
#pragma once

#include <optional>
#include <string>

namespace rondo {

// The detector's settings are the run's (RUN_DIR/config.yaml, faults.*) unless given here.
struct DiagnoseOptions {
  std::string run_dir;
  bool json = false;  // one verdict per line, as events.jsonl has them
  std::optional<double> slow_rank_share, slow_link_factor, slow_stage_factor;
  std::optional<int> window, persist;
};

// Prints the verdicts; returns 0 (none), 3 (some: the run had a fault) or 1 (no reports to read).
int run_diagnose(const DiagnoseOptions& options);

inline constexpr int kExitFaultsFound = 3;

}  // namespace rondo
