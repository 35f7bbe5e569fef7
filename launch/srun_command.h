// The srun command line that starts a job's workers as one Slurm job step (inside an allocation,
// or asking for one), with Open MPI wired up through PMIx.
#pragma once

#include <string>
#include <vector>

namespace rondo {

struct SrunOptions {
  int num_ranks = 1;
  std::string worker;  // path of rondo-worker
  std::string run_dir;
  std::vector<std::string> extra_args;  // launch.srun_args, split on spaces
};

// srun forwards the whole environment (RONDO_CONTROL_ADDRESS, RONDO_JOB_TOKEN, ...) by default.
std::vector<std::string> srun_command(const SrunOptions& options);

}  // namespace rondo
