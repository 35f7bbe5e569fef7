// What the launcher (mpirun) says about how a job's ranks ended: Open MPI names the first rank
// that was killed by a signal or exited non-zero, then tears the others down. rondo reads that
// out of the launcher's output to name the rank that ended the job.
#pragma once

#include <optional>
#include <string>

namespace rondo {

struct RankEnd {
  int rank = -1;
  int signal = 0;           // > 0: killed by this signal
  std::string signal_name;  // e.g. "Killed", when mpirun gives it
  int exit_code = 0;        // signal == 0: the non-zero exit status
  std::string host;         // when mpirun gives it

  // "killed by signal 9 (Killed)" or "exited with status 3".
  std::string how() const;
};

// The first rank the launcher reports as having ended the job (mpirun's words, else srun's), or
// nullopt when its output names none.
std::optional<RankEnd> parse_mpirun_report(const std::string& launcher_output);
std::optional<RankEnd> parse_srun_report(const std::string& launcher_output);

}  // namespace rondo
