#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/errors.h"

namespace rondo {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the format's own limit

float from_bf16(uint16_t v) { return std::bit_cast<float>(static_cast<uint32_t>(v) << 16); }

float from_f16(uint16_t v) {
  const uint32_t sign = (v >> 15) & 1u, exponent = (v >> 10) & 0x1fu, mantissa = v & 0x3ffu;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // zero or subnormal
  } else if (exponent == 31) {
    magnitude = mantissa ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  }
  return sign ? -magnitude : magnitude;
}

uint16_t to_bf16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if (std::isnan(f)) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);  // to nearest, ties to even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

uint16_t to_f16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7e00u;
  if (a >= 65520.0f) return sign | 0x7c00u;  // rounds past the largest half: infinity
  if (a < std::ldexp(1.0f, -14)) {           // subnormal half: a multiple of 2^-24
    return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(a, 24)));
  }
  int exponent;
  const float m = std::frexp(a, &exponent);  // a = m * 2^exponent, m in [0.5, 1)
  auto mantissa = static_cast<uint32_t>(std::nearbyint(std::ldexp(m, 11)));  // 11 significant bits
  if (mantissa == 2048u) {
    mantissa = 1024u;
    ++exponent;
  }
  return sign | static_cast<uint16_t>(((exponent + 14) << 10) | (mantissa & 0x3ffu));
}

// One tensor's header entry, checked against the data's size: dtype known, shape non-negative,
// byte range inside the data and as long as the shape and dtype say.
SafetensorsEntry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& e,
                             uint64_t data_bytes) {
  const auto bad = [&](const std::string& why) {
    return CheckpointError(path, "tensor '" + name + "': " + why);
  };
  if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
    throw bad("needs dtype, shape and data_offsets");
  SafetensorsEntry entry;
  entry.name = name;
  entry.dtype = e["dtype"].is_string() ? e["dtype"].get<std::string>() : e["dtype"].dump();
  for (const auto& d : e["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) throw bad("shape " + e["shape"].dump());
    entry.shape.push_back(d.get<int64_t>());
  }
  const auto& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    throw bad("data_offsets " + off.dump());
  entry.begin = off[0].get<uint64_t>();
  entry.end = off[1].get<uint64_t>();
  const size_t width = safetensors_dtype_size(entry.dtype);
  if (width == 0) throw bad("unknown dtype " + entry.dtype);
  if (entry.begin > entry.end || entry.end > data_bytes)
    throw bad("bytes [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) + ") outside the " +
              std::to_string(data_bytes) + " bytes of data (truncated file?)");
  if (entry.end - entry.begin != static_cast<uint64_t>(entry.numel()) * width)
    throw bad(std::to_string(entry.end - entry.begin) + " bytes for shape " + e["shape"].dump() + " of " +
              entry.dtype);
  return entry;
}

}  // namespace

int64_t SafetensorsEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes{{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2},
                                                   {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
                                                   {"U8", 1},  {"BOOL", 1}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < 8) {
    ::close(fd);
    throw CheckpointError(path, "not a safetensors file: shorter than its 8-byte header length");
  }
  size_ = static_cast<size_t>(st.st_size);
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw CheckpointError(path, std::string("cannot map: ") + std::strerror(errno));
  map_ = static_cast<const std::byte*>(m);
  try {
    uint64_t header_bytes = 0;
    std::memcpy(&header_bytes, map_, 8);  // little-endian, as every machine rondo runs on
    if (header_bytes > kMaxHeaderBytes || header_bytes > size_ - 8) {
      throw CheckpointError(path, "header of " + std::to_string(header_bytes) +
                                      " bytes does not fit a file of " + std::to_string(size_) +
                                      " bytes (truncated, or not safetensors)");
    }
    const auto header =
        nlohmann::json::parse(std::string(reinterpret_cast<const char*>(map_ + 8), header_bytes), nullptr,
                              /*allow_exceptions=*/false);
    if (!header.is_object()) throw CheckpointError(path, "header is not a JSON object");
    data_ = map_ + 8 + header_bytes;
    const uint64_t data_bytes = size_ - 8 - header_bytes;
    for (const auto& [name, e] : header.items()) {
      if (name == "__metadata__") {
        for (const auto& [k, v] : e.items()) metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();
        continue;
      }
      auto entry = parse_entry(path, name, e, data_bytes);
      index_[name] = entries_.size();
      entries_.push_back(std::move(entry));
    }
    // The ranges tile the data: no holes, no overlaps (the format requires it).
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& en : entries_) ranges.emplace_back(en.begin, en.end);
    std::sort(ranges.begin(), ranges.end());
    uint64_t at = 0;
    for (const auto& [b, e] : ranges) {
      if (b != at)
        throw CheckpointError(path, "tensor data has a hole or an overlap at byte " + std::to_string(b));
      at = e;
    }
    if (at != data_bytes) {
      throw CheckpointError(path, std::to_string(data_bytes - at) + " bytes after the last tensor's data");
    }
    std::sort(entries_.begin(), entries_.end(),
              [](const auto& a, const auto& b) { return a.begin < b.begin; });
    for (size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
  } catch (...) {
    ::munmap(const_cast<std::byte*>(map_), size_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<std::byte*>(map_), size_);
}

const SafetensorsEntry& SafetensorsFile::at(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) throw CheckpointError(path_, "no tensor '" + name + "'");
  return entries_[it->second];
}

std::span<const std::byte> SafetensorsFile::bytes(const std::string& name) const {
  const auto& e = at(name);
  return {data_ + e.begin, static_cast<size_t>(e.end - e.begin)};
}

void SafetensorsFile::read_f32(const std::string& name, float* out) const {
  const auto& e = at(name);
  const auto* p = data_ + e.begin;
  const auto n = static_cast<size_t>(e.numel());
  if (e.dtype == "F32") {
    std::memcpy(out, p, n * 4);
  } else if (e.dtype == "BF16" || e.dtype == "F16") {
    const bool bf16 = e.dtype == "BF16";
    for (size_t i = 0; i < n; ++i) {
      uint16_t v;
      std::memcpy(&v, p + 2 * i, 2);
      out[i] = bf16 ? from_bf16(v) : from_f16(v);
    }
  } else {
    throw CheckpointError(
        path_, "tensor '" + name + "': dtype " + e.dtype + " is not a float rondo reads (F32, F16, BF16)");
  }
}

std::vector<float> SafetensorsFile::read_f32(const std::string& name) const {
  std::vector<float> out(static_cast<size_t>(at(name).numel()));
  read_f32(name, out.data());
  return out;
}

namespace {

void write_safetensors_to(const std::string& path, const ByteSink& write,
                          const std::vector<SafetensorsTensor>& tensors,
                          const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t at = 0;
  const auto numel = [](const SafetensorsTensor& t) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    return n;
  };
  for (const auto& t : tensors) {
    const size_t width = t.dtype == "F32" ? 4 : (t.dtype == "BF16" || t.dtype == "F16") ? 2 : 0;
    if (width == 0)
      throw Error("writing " + path + ": tensor '" + t.name + "': dtype " + t.dtype + " (F32, BF16, F16)");
    const auto bytes = static_cast<uint64_t>(numel(t)) * width;
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {at, at + bytes}}};
    at += bytes;
  }
  std::string head = header.dump();
  head.append((8 - head.size() % 8) % 8, ' ');  // the data starts 8-aligned
  {
    const uint64_t n = head.size();
    write(reinterpret_cast<const char*>(&n), 8);
    write(head.data(), head.size());
    std::vector<uint16_t> halves;
    for (const auto& t : tensors) {
      std::vector<float> made;
      if (t.produce) made = t.produce();
      const std::span<const float> values = t.produce ? std::span<const float>(made) : t.values;
      if (static_cast<int64_t>(values.size()) != numel(t)) {
        throw Error("writing " + path + ": tensor '" + t.name + "' has " + std::to_string(values.size()) +
                    " values for its shape");
      }
      if (t.dtype == "F32") {
        write(reinterpret_cast<const char*>(values.data()), values.size() * 4);
        continue;
      }
      halves.resize(values.size());
      for (size_t i = 0; i < values.size(); ++i)
        halves[i] = t.dtype == "BF16" ? to_bf16(values[i]) : to_f16(values[i]);
      write(reinterpret_cast<const char*>(halves.data()), halves.size() * 2);
    }
  }
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_file_atomic_stream(
      path, [&](const ByteSink& write) { write_safetensors_to(path, write, tensors, metadata); });
}

std::string safetensors_bytes(const std::vector<SafetensorsTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::string out;
  write_safetensors_to(
      "a checkpoint shard", [&](const char* data, size_t size) { out.append(data, size); }, tensors,
      metadata);
  return out;
}

}  // namespace rondo
