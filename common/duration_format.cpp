#include "common/duration_format.h"

#include <cmath>
#include <cstdint>
#include <cstdio>

namespace rondo {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto t = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", t / 3600, t % 3600 / 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", t / 60, t % 60);
  }
  return buf;
}

}  // namespace rondo
