#include "worker/tensorboard_writer.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "common/crc32.h"
#include "common/errors.h"
#include "tensorboard_event.pb.h"

namespace rondo {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c_update(0, data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::filesystem::create_directories(dir);
  char host[256] = "host";
  ::gethostname(host, sizeof(host) - 1);
  const auto seconds = static_cast<int64_t>(now_s());
  path_ = (std::filesystem::path(dir) /
           ("events.out.tfevents." + std::to_string(seconds) + "." + host + "." + std::to_string(::getpid())))
              .string();
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw Error("cannot write " + path_);
  tensorboard::Event first;
  first.set_wall_time(now_s());
  first.set_file_version("brain.Event:2");
  record(first.SerializeAsString());
}

void TensorBoardWriter::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  tensorboard::Event e;
  e.set_wall_time(now_s());
  e.set_step(step);
  for (const auto& [tag, value] : values) {
    auto* v = e.mutable_summary()->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  record(e.SerializeAsString());
}

void TensorBoardWriter::record(const std::string& event) {
  const uint64_t length = event.size();
  const uint32_t length_crc = masked_crc32c(&length, sizeof(length)),
                 data_crc = masked_crc32c(event.data(), event.size());
  out_.write(reinterpret_cast<const char*>(&length), sizeof(length));
  out_.write(reinterpret_cast<const char*>(&length_crc), sizeof(length_crc));
  out_.write(event.data(), static_cast<std::streamsize>(event.size()));
  out_.write(reinterpret_cast<const char*>(&data_crc), sizeof(data_crc));
  out_.flush();
  if (!out_) throw Error("cannot write " + path_);
}

}  // namespace rondo
