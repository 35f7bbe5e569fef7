// TensorBoardWriter: a run's scalars as TensorBoard event files (RUN_DIR/tensorboard/
// events.out.tfevents.<seconds>.<host>.<pid>, one file per launch, so a resumed run adds one):
// TFRecord framing — the record's length (8 bytes, little-endian), its masked CRC-32C, the
// serialized Event, the Event's masked CRC-32C — the first record the file version, then one Event
// per step holding every scalar. Appended and flushed each step. Torch-free.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace rondo {

class TensorBoardWriter {
 public:
  // Creates `dir` if needed; throws rondo::Error naming the file when it cannot be written.
  explicit TensorBoardWriter(const std::string& dir);
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  const std::string& path() const { return path_; }

 private:
  void record(const std::string& event);
  std::string path_;
  std::ofstream out_;
};

// TFRecord's checksum: CRC-32C rotated right by 15 bits plus a constant.
uint32_t masked_crc32c(const void* data, size_t size);

}  // namespace rondo
