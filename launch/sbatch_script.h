// The batch script `rondo sbatch` prints: a Slurm job that runs `rondo run` on its first node,
// which starts the workers with srun. Before the time limit Slurm sends USR1 to the script
// (--signal=B:USR1@S); the script passes it to rondo, whose workers finish their step,
// checkpoint and exit, and then requeues the job, which resumes from that checkpoint. Output
// goes to RUN_DIR/slurm-<job id>.out, appended across requeues.
#pragma once

#include <string>
#include <vector>

namespace rondo {

struct SbatchOptions {
  std::string rondo;                   // absolute path of the rondo binary
  std::string worker;                  // absolute path of rondo-worker
  std::string config_path;             // absolute; empty: the built-in default job
  std::vector<std::string> overrides;  // --set key=value, in order
  std::string run_dir;                 // absolute
  int nodes = 1;
  int ntasks_per_node = 1;
  std::string time;         // Slurm's --time; empty: the partition's default
  std::string partition;    // empty: the default partition
  int signal_lead_s = 120;  // USR1 this many seconds before the time limit
  std::string job_name = "rondo";
};

std::string sbatch_script(const SbatchOptions& options);

// `text` quoted for a POSIX shell (single quotes).
std::string shell_quote(const std::string& text);

}  // namespace rondo
