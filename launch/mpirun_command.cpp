#include "launch/mpirun_command.h"

#include <cstdlib>
#include <sstream>

namespace rondo {

std::vector<std::string> split_args(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

std::vector<std::string> mpirun_command(const MpirunOptions& o) {
  std::vector<std::string> cmd = {"mpirun", "-np", std::to_string(o.num_ranks)};
  if (o.as_root) cmd.push_back("--allow-run-as-root");
  if (o.bind_cores_per_rank > 0) {
    for (const char* a : {"--bind-to", "core", "--map-by"}) cmd.emplace_back(a);
    cmd.push_back("slot:PE=" + std::to_string(o.bind_cores_per_rank));
  } else {
    // Ranks may outnumber cores on small machines; each rank sets its own thread count, so no
    // binding (bound ranks would share one core).
    for (const char* a : {"--oversubscribe", "--bind-to", "none"}) cmd.emplace_back(a);
  }
  // The coordinator's environment for its workers (Open MPI forwards only what -x names).
  for (const char* v : {"RONDO_LOG", "RONDO_CONTROL_ADDRESS", "RONDO_JOB_TOKEN", "RONDO_ATTEMPT"}) {
    cmd.emplace_back("-x");
    cmd.emplace_back(v);
  }
  if (std::getenv("RONDO_CONTROL_CERT_SHA256") != nullptr) {  // the control plane serves TLS
    cmd.emplace_back("-x");
    cmd.emplace_back("RONDO_CONTROL_CERT_SHA256");
  }
  cmd.insert(cmd.end(), o.extra_args.begin(), o.extra_args.end());
  cmd.push_back(o.worker);
  cmd.push_back("--run-dir");
  cmd.push_back(o.run_dir);
  return cmd;
}

int mpirun_cores_per_rank(const std::string& mode, int ranks, int threads, int cores,
                          const std::vector<std::string>& extra_args) {
  if (mode == "none") return 0;
  if (mode == "core") return threads;
  // auto: only where mpirun places every rank on this machine by its own mapping.
  for (const auto& a : extra_args) {
    for (const char* own : {"--host", "-H", "--hostfile", "-hostfile", "--machinefile", "-machinefile",
                            "--default-hostfile", "--bind-to", "-bind-to", "--map-by", "-map-by", "--cpu-set",
                            "--cpus-per-proc", "--cpus-per-rank", "--rankfile", "-rf"}) {
      if (a == own || a.rfind(std::string(own) + "=", 0) == 0) return 0;
    }
  }
  return static_cast<int64_t>(ranks) * threads <= cores ? threads : 0;
}

}  // namespace rondo
