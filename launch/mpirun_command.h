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
// of `threads` compute threads each, on this machine's `cores` usable physical cores (Open MPI's
// unit; usable_physical_cores()). Each rank gets its share of the cores, at least its threads:
// its helper threads (communication, heartbeats, the asynchronous update) run there too.
// auto binds when the ranks fit and `extra_args` neither names hosts nor sets a binding or mapping
// of its own (the caller passes "none" where the environment gives mpirun hosts or a policy):
// ranks kept on their cores differ less from each other, and the fault detector judges them
// against each other (on a 2-core VM: no false alarm in 3,000 clean rank-steps bound, one
// unbound; bench/RESULTS.md). core binds regardless (mpirun refuses ranks beyond the cores); none
// never does.
int mpirun_cores_per_rank(const std::string& mode, int ranks, int threads, int cores,
                          const std::vector<std::string>& extra_args);

// The physical cores this process may run on (hyperthreads of one core counted once, as Open MPI
// binds); 0 when the machine's topology cannot be read.
int usable_physical_cores();

std::vector<std::string> mpirun_command(const MpirunOptions& options);

// Splits a space-separated argument string (no quoting).
std::vector<std::string> split_args(const std::string& text);

}  // namespace rondo
