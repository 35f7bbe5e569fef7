// ResourceUsage: this process's peak resident set, minor page faults and CPU seconds so far
// (getrusage), and the calling thread's time runnable but waiting for a CPU
// (/proc/thread-self/schedstat: a starved rank), read before and after each step for its metrics
// row and step report.
#pragma once

namespace rondo {

struct ResourceUsage {
  double max_rss_mb = 0;
  double minor_faults = 0;
  double user_s = 0;
  double sys_s = 0;
  double run_queue_s = 0;  // 0 where the kernel does not keep schedstat
  static ResourceUsage now();
};

}  // namespace rondo
