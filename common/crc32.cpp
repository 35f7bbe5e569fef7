#include "common/crc32.h"

#include <array>
#include <fstream>
#include <vector>

#include "common/errors.h"

namespace rondo {
namespace {

// Reflected polynomials: IEEE 802.3's and Castagnoli's.
constexpr std::array<uint32_t, 256> make_table(uint32_t polynomial) {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? polynomial ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr auto kTable = make_table(0xEDB88320u);
constexpr auto kTableC = make_table(0x82F63B78u);

uint32_t update(const std::array<uint32_t, 256>& table, uint32_t crc, const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

}  // namespace

uint32_t crc32_update(uint32_t crc, const void* data, size_t size) { return update(kTable, crc, data, size); }

uint32_t crc32c_update(uint32_t crc, const void* data, size_t size) {
  return update(kTableC, crc, data, size);
}

uint32_t crc32_file(const std::string& path, uint64_t* bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::vector<char> buf(1 << 20);
  uint32_t crc = 0;
  uint64_t total = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    auto n = static_cast<size_t>(in.gcount());
    crc = crc32_update(crc, buf.data(), n);
    total += n;
  }
  if (bytes) *bytes = total;
  return crc;
}

}  // namespace rondo
