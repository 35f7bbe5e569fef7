// The worker's C-allocator policy, applied once at start-up, before the model is built.
//
// LibTorch on CPU allocates and frees every activation and gradient each step. With glibc's
// defaults a large free chunk is returned to the kernel (the heap top is trimmed, chunks above
// the mmap threshold are unmapped), and the next step faults the same pages back in: a tiny GPT
// spent half its CPU time in the kernel. The caching policy keeps freed memory in the process:
// no trimming, no mmap'd chunks, a large top pad; steady-state steps then reuse the same pages
// (bench/RESULTS.md has the measurements, against jemalloc, mimalloc and tcmalloc too).
#pragma once

#include <string>

#include "proto/plan.pb.h"

namespace rondo {

// Applies `policy` to glibc's malloc; throws PlanError on MALLOC_POLICY_UNSPECIFIED. Returns a
// one-line description of the settings in force (for logs and runtime.json).
std::string apply_malloc_policy(plan::MallocPolicy policy);

}  // namespace rondo
