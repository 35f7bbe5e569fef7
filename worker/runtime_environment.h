// RuntimeEnvironment: what decides a worker's speed besides the plan — the BLAS and allocator
// libraries actually mapped into the process, the compute-thread counts, the allocator policy and
// the environment variables that tune them. Rank 0 logs it and writes RUN_DIR/runtime.json so that
// a benchmark figure can be checked by whoever re-runs it.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace rondo {

// Reads /proc/self/maps and the process's settings now; `malloc_policy` and `cpu_kernels` are the
// descriptions apply_malloc_policy() and describe_cpu_kernels() returned.
nlohmann::json runtime_environment(const std::string& malloc_policy, const std::string& cpu_kernels);

// One line for the log: "blas ..., threads ..., allocator ...".
std::string runtime_environment_summary(const nlohmann::json& env);

}  // namespace rondo
