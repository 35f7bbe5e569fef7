// run_process: starts a program in its own process group, copies its combined stdout/stderr to
// our stderr and to a log file, and waits with a deadline. On timeout or Ctrl-C the whole group
// gets SIGTERM, then SIGKILL after a grace period.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace rondo {

struct ProcessResult {
  int exit_code = -1;  // exit status, or 128 + signal
  bool timed_out = false;
  bool interrupted = false;  // we got SIGINT/SIGTERM and stopped the child
};

inline constexpr std::chrono::duration<double> kKillGracePeriod{5.0};

// `log_file` may be empty (no copy). `echo` copies the output to our stderr as well.
ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::duration<double> timeout,
                          const std::string& log_file, bool echo = true);

}  // namespace rondo
