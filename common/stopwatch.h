// Seconds elapsed on the steady clock: what the step loop and the executor time their parts with.
#pragma once

#include <chrono>

namespace rondo {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace rondo
