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
};

std::vector<std::string> mpirun_command(const MpirunOptions& options);

// Splits a space-separated argument string (no quoting).
std::vector<std::string> split_args(const std::string& text);

}  // namespace rondo
