#include "launch/launcher_report.h"

#include <regex>

namespace rondo {

std::string RankEnd::how() const {
  if (signal > 0) {
    return "killed by signal " + std::to_string(signal) +
           (signal_name.empty() ? "" : " (" + signal_name + ")");
  }
  return "exited with status " + std::to_string(exit_code);
}

std::optional<RankEnd> parse_mpirun_report(const std::string& text) {
  // Open MPI 4: "mpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 (Killed)."
  static const std::regex signalled(
      R"(process rank (\d+) with PID \d+ on node (\S+) exited on signal (\d+)(?: \(([^)]*)\))?)");
  // "... The first process to do so was:\n\n  Process name: [[4242,1],1]\n  Exit code: 3"
  static const std::regex exited(R"(Process name:\s*\[\[\d+,\d+\],(\d+)\]\s*Exit code:\s*(-?\d+))");
  std::smatch m;
  if (std::regex_search(text, m, signalled)) {
    RankEnd e;
    e.rank = std::stoi(m[1]);
    e.host = m[2];
    e.signal = std::stoi(m[3]);
    e.signal_name = m[4];
    return e;
  }
  if (std::regex_search(text, m, exited)) {
    RankEnd e;
    e.rank = std::stoi(m[1]);
    e.exit_code = std::stoi(m[2]);
    return e;
  }
  return parse_srun_report(text);
}

std::optional<RankEnd> parse_srun_report(const std::string& text) {
  // Slurm 22: "srun: error: HOST: task 1: Killed" / "...: task 1: Exited with exit code 3". The
  // first such line names the rank that ended the step; srun then terminates the others.
  static const std::regex line(
      R"(srun: error: (\S+): tasks? (\d+)(?:-\d+)?: (Killed|Exited with exit code (\d+)|[A-Z][a-z]+))");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), line); it != std::sregex_iterator(); ++it) {
    const auto& m = *it;
    const std::string what = m[3];
    if (what == "Terminated") continue;  // srun's own teardown of the other tasks
    RankEnd e;
    e.host = m[1];
    e.rank = std::stoi(m[2]);
    if (m[4].matched) {
      e.exit_code = std::stoi(m[4]);
    } else {
      e.signal_name = what;
      e.signal = what == "Killed" ? 9 : what == "Aborted" ? 6 : what == "Segmentation" ? 11 : -1;
    }
    return e;
  }
  return std::nullopt;
}

}  // namespace rondo
