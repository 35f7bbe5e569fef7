#include "worker/malloc_policy.h"

#include <malloc.h>

#include "common/errors.h"

namespace rondo {

namespace {

// Above this, the heap top is padded: one growth of the heap serves many later allocations.
constexpr int kTopPadBytes = 64 << 20;

void set_option(int option, int value, const char* name) {
  if (mallopt(option, value) != 1) throw Error(std::string("mallopt(") + name + ") failed");
}

}  // namespace

std::string apply_malloc_policy(plan::MallocPolicy policy) {
  switch (policy) {
    case plan::MALLOC_POLICY_CACHING:
      // M_MMAP_MAX=0: every chunk comes from a heap, where a freed chunk stays for reuse (chunks
      // above the mmap threshold would be unmapped on free, whatever the size).
      // M_TRIM_THRESHOLD at its maximum: the heap top is never returned to the kernel. Setting it
      // also turns off glibc's dynamic mmap threshold, harmless once mmap is off.
      set_option(M_MMAP_MAX, 0, "M_MMAP_MAX");
      set_option(M_TRIM_THRESHOLD, -1, "M_TRIM_THRESHOLD");
      set_option(M_TOP_PAD, kTopPadBytes, "M_TOP_PAD");
      return "caching (glibc mallopt: M_MMAP_MAX=0, M_TRIM_THRESHOLD=max, M_TOP_PAD=" +
             std::to_string(kTopPadBytes >> 20) + " MiB)";
    case plan::MALLOC_POLICY_SYSTEM:
      return "system (glibc defaults and MALLOC_* environment)";
    default:
      throw PlanError("plan: training.malloc_policy is unset or unknown (" + std::to_string(policy) +
                      "); rebuild the plan with this rondo");
  }
}

}  // namespace rondo
