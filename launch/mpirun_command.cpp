#include "launch/mpirun_command.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

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

namespace {

// mpirun options that place ranks on hosts or cores themselves (any number of leading dashes, with
// or without "=value"), and MCA parameters that do.
bool places_ranks_itself(const std::vector<std::string>& args) {
  static const std::set<std::string> options = {"host",
                                                "H",
                                                "hostfile",
                                                "machinefile",
                                                "default-hostfile",
                                                "add-host",
                                                "add-hostfile",
                                                "rankfile",
                                                "rf",
                                                "bind-to",
                                                "map-by",
                                                "rank-by",
                                                "cpu-set",
                                                "cpu-list",
                                                "cpus-per-proc",
                                                "cpus-per-rank",
                                                "npernode",
                                                "N",
                                                "npersocket",
                                                "ppr",
                                                "use-hwthread-cpus"};
  for (size_t i = 0; i < args.size(); ++i) {
    const auto start = args[i].find_first_not_of('-');
    if (start == 0 || start == std::string::npos) continue;  // a value, not an option
    const std::string name = args[i].substr(start, args[i].find('=') - start);
    if (options.contains(name)) return true;
    if ((name == "mca" || name == "gmca") && i + 1 < args.size() &&
        (args[i + 1].rfind("hwloc_base_binding", 0) == 0 || args[i + 1].rfind("rmaps_base", 0) == 0))
      return true;
  }
  return false;
}

}  // namespace

int mpirun_cores_per_rank(const std::string& mode, int ranks, int threads, int cores,
                          const std::vector<std::string>& extra_args) {
  if (mode == "none" || ranks < 1) return 0;
  const int share = std::max(threads, cores / ranks);
  if (mode == "core") return share;
  // auto: only where mpirun places every rank on this machine by its own mapping.
  if (places_ranks_itself(extra_args)) return 0;
  return static_cast<int64_t>(ranks) * threads <= cores ? share : 0;
}

int usable_physical_cores() {
  cpu_set_t usable;
  if (::sched_getaffinity(0, sizeof(usable), &usable) != 0) return 0;
  std::set<std::pair<std::string, std::string>> cores;  // (package, core) of each usable CPU
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &usable)) continue;
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(c) + "/topology/";
    std::ifstream package(dir + "physical_package_id"), core(dir + "core_id");
    std::string p, k;
    if (!(package >> p) || !(core >> k)) return 0;
    cores.emplace(p, k);
  }
  return static_cast<int>(cores.size());
}

}  // namespace rondo
