// CRC-32 (IEEE 802.3, as zlib) for checkpoint and file integrity checks, and CRC-32C
// (Castagnoli), which TFRecord framing (TensorBoard's event files) uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace rondo {

// Continues a CRC over `size` bytes; start with crc = 0.
uint32_t crc32_update(uint32_t crc, const void* data, size_t size);

// The same with the Castagnoli polynomial (CRC-32C).
uint32_t crc32c_update(uint32_t crc, const void* data, size_t size);

// CRC of a whole file; throws rondo::Error if it cannot be read. `bytes` receives the size.
uint32_t crc32_file(const std::string& path, uint64_t* bytes = nullptr);

}  // namespace rondo
