// run_process: starts a program in its own process group, copies its combined stdout/stderr to
// our stderr and to a log file, and waits with a deadline. On timeout or Ctrl-C (SIGINT or
// SIGTERM; with a monitor that takes interrupts, the second one) the whole group gets SIGTERM, then
// SIGKILL after a grace period; if we are killed outright, the program gets SIGTERM
// (PR_SET_PDEATHSIG).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace rondo {

struct ProcessResult {
  int exit_code = -1;  // exit status, or 128 + signal
  bool timed_out = false;
  bool interrupted = false;  // we got SIGINT/SIGTERM (twice, with on_interrupt) and stopped the child
  bool stopped = false;      // the monitor asked to stop it
};

inline constexpr std::chrono::duration<double> kKillGracePeriod{5.0};

// What the caller does while the process runs, about every 100 ms (both optional).
struct ProcessMonitor {
  // Returns true to stop the process group (SIGTERM, then SIGKILL after kKillGracePeriod).
  std::function<bool()> should_stop;
  // A status line redrawn in place below the echoed output; drawn only when stderr is a terminal.
  std::function<std::string()> status_line;
  // The first SIGINT or SIGTERM, handed over (the caller stops the program gently, e.g. after a
  // checkpoint); only a second one stops the group at once. Unset: the first one does.
  std::function<void(int signal)> on_interrupt;
};

// `log_file` may be empty (no copy). `echo` copies the output to our stderr as well.
ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::duration<double> timeout,
                          const std::string& log_file, bool echo = true, const ProcessMonitor& monitor = {});

}  // namespace rondo
