#include "worker/resource_usage.h"

#include <sys/resource.h>

#include <cstdint>
#include <fstream>

namespace rondo {

ResourceUsage ResourceUsage::now() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  const auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + 1e-6 * tv.tv_usec; };
  // "cpu_ns run_queue_ns timeslices"
  std::ifstream schedstat("/proc/thread-self/schedstat");
  uint64_t on_cpu_ns = 0, waiting_ns = 0;
  if (!(schedstat >> on_cpu_ns >> waiting_ns)) waiting_ns = 0;
  return {static_cast<double>(u.ru_maxrss) / 1024.0, static_cast<double>(u.ru_minflt), secs(u.ru_utime),
          secs(u.ru_stime), static_cast<double>(waiting_ns) * 1e-9};
}

}  // namespace rondo
