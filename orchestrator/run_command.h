// `rondo run`: plans a job, lays out its run directory (DESIGN.md "Run directory"), launches the
// workers through mpirun, waits with the job deadline, and reports the outcome. A failed job
// names the failing rank(s) and their logs.
#pragma once

#include <string>

#include "orchestrator/config.h"

namespace rondo {

struct RunOptions {
  std::string run_dir;      // empty: runs/<timestamp>
  std::string worker_path;  // empty: rondo-worker beside the rondo binary, or $RONDO_WORKER
};

// Returns the process exit status (0 success, 1 job failure).
int run_job(const Config& config, const RunOptions& options);

// Checks that the worker can execute this layout; throws ConfigError naming the key otherwise.
void check_executable(const Config& config);

}  // namespace rondo
