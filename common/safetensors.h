// Hugging Face's safetensors format, read and written without LibTorch: an 8-byte little-endian
// header length, a JSON header naming each tensor's dtype, shape and byte range, then the bytes.
// A file is memory-mapped and checked whole when opened (header inside the file, every range
// inside the data, sized by its dtype and shape, ranges tiling the data without holes or
// overlaps); each error is a CheckpointError naming the file and, where one is at fault, the
// tensor. Tensors are read as float32 (F32, F16 and BF16 upcast exactly).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace rondo {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // F32, F16, BF16, F64, I64, I32, ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range inside the data
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // In the file's order.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  // Throws CheckpointError naming the file and the tensor when absent.
  const SafetensorsEntry& at(const std::string& name) const;
  std::span<const std::byte> bytes(const std::string& name) const;
  // The tensor's values as float32 into `out` (entry.numel() of them); F32, F16, BF16 only.
  void read_f32(const std::string& name, float* out) const;
  std::vector<float> read_f32(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  const std::byte* map_ = nullptr;
  size_t size_ = 0;
  const std::byte* data_ = nullptr;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: float32 values stored as `dtype` (F32, or BF16/F16 rounded to nearest even),
// given at once or made by `produce` when the file reaches them (one tensor in memory at a time).
struct SafetensorsTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::span<const float> values;
  std::string dtype = "F32";
  std::function<std::vector<float>()> produce = {};
};

// Writes `tensors` (in this order) with `metadata`, streamed and atomic; throws rondo::Error naming
// the path (and the tensor whose values do not fill its shape).
void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// The same file's bytes in memory (a checkpoint shard, checksummed before it is written).
std::string safetensors_bytes(const std::vector<SafetensorsTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// Bytes per element of a dtype name; 0 for one rondo does not know.
size_t safetensors_dtype_size(const std::string& dtype);

}  // namespace rondo
