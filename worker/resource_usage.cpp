#include "worker/resource_usage.h"

#include <sys/resource.h>

namespace rondo {

ResourceUsage ResourceUsage::now() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  const auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + 1e-6 * tv.tv_usec; };
  return {static_cast<double>(u.ru_maxrss) / 1024.0, static_cast<double>(u.ru_minflt), secs(u.ru_utime),
          secs(u.ru_stime)};
}

}  // namespace rondo
