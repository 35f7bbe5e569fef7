// `rondo run`: plans a job, lays out its run directory (DESIGN.md "Run directory"), serves the
// control plane (and the dashboard), launches the workers through mpirun, watches them, and
// relaunches from the latest checkpoint when a rank dies, hangs or loses its peers (up to
// launch.max_restarts). A failed attempt names the rank, its host and pid, and how it ended.
#pragma once

#include <string>

#include "launch/sbatch_script.h"
#include "orchestrator/config.h"

namespace rondo {

struct RunOptions {
  std::string run_dir;          // empty: runs/<timestamp>
  std::string worker_path;      // empty: rondo-worker beside the rondo binary, or $RONDO_WORKER
  int64_t dashboard_port = -1;  // >= 0 overrides launch.dashboard_port
  double linger_s = 0;          // keep the dashboard up this long after the job ends
};

// Returns the process exit status (0 success, 1 job failure).
int run_job(const Config& config, const RunOptions& options);

// `rondo sbatch`: absolute paths for the config, the run directory (default runs/<timestamp>; it is
// created, since Slurm opens the job's output there), rondo itself and the worker (default: beside
// rondo), and the overrides.
SbatchOptions complete_sbatch_options(SbatchOptions options, const std::string& config_path,
                                      const std::vector<std::string>& overrides);

// Checks that the worker can execute this layout; throws ConfigError naming the key otherwise.
void check_executable(const Config& config);

// rondo-worker: `given`, else $RONDO_WORKER, else beside this program (or in the build tree's
// worker/); throws naming RONDO_WORKER when there is none.
std::string find_worker(const std::string& given);

}  // namespace rondo
