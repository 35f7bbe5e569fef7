// SplitMix64 (Steele, Lea and Flood 2014): a counter-based generator, so any draw can be made
// without replaying the others, bitwise the same on every machine.
#pragma once

#include <cstdint>

namespace rondo {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace rondo
