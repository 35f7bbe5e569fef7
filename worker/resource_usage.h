// ResourceUsage: this process's peak resident set, minor page faults and CPU seconds so far
// (getrusage), read before and after each step for its metrics row.
#pragma once

namespace rondo {

struct ResourceUsage {
  double max_rss_mb = 0;
  double minor_faults = 0;
  double user_s = 0;
  double sys_s = 0;
  static ResourceUsage now();
};

}  // namespace rondo
