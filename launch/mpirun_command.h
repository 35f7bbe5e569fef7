// The mpirun command line that starts a job's workers on this machine (or on the hosts of a
// hostfile passed in `extra_args`).
#pragma once

#include <string>
#include <vector>

namespace rondo {

struct MpirunOptions {
  int num_ranks = 1;
  std::string worker;  // path of rondo-worker
  std::string run_dir;
  std::vector<std::string> extra_args;  // launch.mpirun_args, split on spaces
  bool as_root = false;                 // adds --allow-run-as-root
  // Cores each rank is bound to (its compute threads'), consecutive ranks on consecutive cores;
  // 0: no binding (ranks may outnumber cores).
  int bind_cores_per_rank = 0;
};

// How many cores to bind each rank to under `launch.bind` (`mode`: auto | none | core) for ranks
// of `threads` compute threads each, all on this machine of `cores` usable cores unless
// `extra_args` names hosts. auto binds when the ranks fit on this machine's cores and
// `extra_args` neither names hosts nor sets a binding or mapping of its own: a rank the scheduler
// moves between cores, or leaves on a core the kernel's interrupt work lands on, runs slower than
// its peers for stretches (docs/faults.md), which the fault detector then rightly names. core
// binds regardless (mpirun refuses ranks beyond the cores); none never does.
int mpirun_cores_per_rank(const std::string& mode, int ranks, int threads, int cores,
                          const std::vector<std::string>& extra_args);

std::vector<std::string> mpirun_command(const MpirunOptions& options);

// Splits a space-separated argument string (no quoting).
std::vector<std::string> split_args(const std::string& text);

}  // namespace rondo
