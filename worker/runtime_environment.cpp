#include "worker/runtime_environment.h"

#include <dlfcn.h>
#include <mpi.h>
#include <sched.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <set>

namespace rondo {

namespace {

bool contains_any(const std::string& s, std::initializer_list<const char*> needles) {
  for (const char* n : needles) {
    if (s.find(n) != std::string::npos) return true;
  }
  return false;
}

// The kernel family OpenBLAS chose when it loaded (from the CPU, or OPENBLAS_CORETYPE); "" when
// the BLAS is not OpenBLAS.
std::string openblas_core() {
  using CoreName = char* (*)();
  auto fn = reinterpret_cast<CoreName>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* name = fn ? fn() : nullptr;
  return name ? name : "";
}

// The CPUs this process may run on, as ranges ("0", "0-3,8"): the cores the launcher bound it to.
std::string cpu_affinity() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return "unknown";
  std::string out;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &set) || (c > 0 && CPU_ISSET(c - 1, &set))) continue;
    int last = c;
    while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, &set)) ++last;
    if (!out.empty()) out += ',';
    out += std::to_string(c);
    if (last > c) out.append(1, '-').append(std::to_string(last));
  }
  return out;
}

}  // namespace

nlohmann::json runtime_environment(const std::string& malloc_policy, const std::string& cpu_kernels) {
  std::set<std::string> blas, allocators;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string name = path.substr(path.rfind('/') + 1);
    if (contains_any(name, {"blas", "lapack", "mkl_", "libgomp", "libomp", "libiomp"})) blas.insert(path);
    if (contains_any(name, {"jemalloc", "tcmalloc", "mimalloc"})) allocators.insert(path);
  }
  nlohmann::json env_vars = nlohmann::json::object();
  for (const char* name : {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "MKL_NUM_THREADS",
                           "LD_PRELOAD", "MALLOC_TOP_PAD_", "MALLOC_TRIM_THRESHOLD_",
                           "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX", "MALLOC_CONF"}) {
    if (const char* v = std::getenv(name)) env_vars[name] = v;
  }
  char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int len = 0;
  MPI_Get_library_version(mpi_version, &len);
  std::string mpi(mpi_version, static_cast<size_t>(len));
  if (const auto nl = mpi.find_first_of(",\n"); nl != std::string::npos) mpi.resize(nl);
  return {
      {"torch_version", TORCH_VERSION},
      {"mpi_library", mpi},
      {"blas_libraries", blas},
      {"openblas_core", openblas_core()},
      {"preloaded_allocators", allocators},
      {"malloc_policy", malloc_policy},
      {"cpu_kernels", cpu_kernels},
      {"intra_op_threads", at::get_num_threads()},
      {"inter_op_threads", at::get_num_interop_threads()},
      {"cpu_affinity", cpu_affinity()},
      {"environment", env_vars},
  };
}

std::string runtime_environment_summary(const nlohmann::json& env) {
  std::string blas;
  for (const auto& b : env["blas_libraries"]) {
    const std::string path = b.get<std::string>();
    blas += (blas.empty() ? "" : ", ") + path.substr(path.rfind('/') + 1);
  }
  const std::string core = env["openblas_core"].get<std::string>();
  if (!core.empty()) blas += " (core " + core + ")";
  std::string out = "runtime: torch " + env["torch_version"].get<std::string>() + ", blas [" + blas + "], " +
                    std::to_string(env["intra_op_threads"].get<int>()) + " compute thread(s), allocator " +
                    env["malloc_policy"].get<std::string>() + ", kernels " +
                    env["cpu_kernels"].get<std::string>() + ", cores " + env.value("cpu_affinity", "?");
  for (const auto& a : env["preloaded_allocators"]) out += " + preloaded " + a.get<std::string>();
  for (const auto& [k, v] : env["environment"].items()) out += ", " + k + "=" + v.get<std::string>();
  return out;
}

}  // namespace rondo
