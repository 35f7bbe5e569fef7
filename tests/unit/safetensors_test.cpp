// common/safetensors.h: values survive a round trip in each float dtype (BF16 and F16 rounded to
// nearest even, read back exactly), a file laid out by hand as Hugging Face's writer lays it out
// reads, and every kind of damage is refused naming the file and the tensor.
#include "common/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/atomic_file.h"
#include "common/errors.h"

namespace rondo {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("rondo_safetensors_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

// A file from a header and data written by hand: the header's length, the header, the data.
std::string raw_file(const std::string& name, const std::string& header, const std::string& data) {
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes += header + data;
  const auto path = temp_path(name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string refusal(const std::string& path) {
  try {
    SafetensorsFile f(path);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, ValuesSurviveARoundTripInEachFloatDtype) {
  const std::vector<float> exact = {1.0f, -2.5f, 0.0f, 65504.0f, std::ldexp(1.0f, -24), 0.15625f};
  const auto path = temp_path("round.safetensors");
  write_safetensors(
      path,
      {{"a.f32", {2, 3}, exact, "F32"}, {"b.bf16", {6}, exact, "BF16"}, {"c.f16", {3, 2}, exact, "F16"}},
      {{"format", "pt"}});
  SafetensorsFile f(path);
  ASSERT_EQ(f.entries().size(), 3u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.at("a.f32").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.read_f32("a.f32"), exact);
  EXPECT_EQ(f.read_f32("c.f16"), exact);  // every value is a half exactly
  const auto bf = f.read_f32("b.bf16");
  EXPECT_EQ(bf[0], 1.0f);
  EXPECT_EQ(bf[1], -2.5f);
  EXPECT_EQ(bf[3], 65536.0f);  // 65504 has more bits than bfloat16 keeps: rounds up
  EXPECT_EQ(bf[4], std::ldexp(1.0f, -24));
  // Rounding to nearest, ties to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
  const std::vector<float> ties = {1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8), 1.0f / 3};
  write_safetensors(path, {{"t", {3}, ties, "BF16"}, {"h", {3}, ties, "F16"}});
  SafetensorsFile g(path);
  EXPECT_EQ(g.read_f32("t")[0], 1.0f);
  EXPECT_EQ(g.read_f32("t")[1], 1.0f + std::ldexp(1.0f, -6));
  EXPECT_NEAR(g.read_f32("h")[2], 1.0f / 3, std::ldexp(1.0f, -12));
  // The data begins 8-aligned after the header, as the reference writer pads it.
  uint64_t header = 0;
  std::memcpy(&header, read_file(path).data(), 8);
  EXPECT_EQ(header % 8, 0u);
}

TEST(Safetensors, AFileLaidOutByHandReads) {
  std::string data(12, '\0');
  const float values[2] = {3.0f, -1.0f};
  std::memcpy(data.data(), values, 8);
  const uint16_t bf16_two = 0x4000;  // 2.0
  std::memcpy(data.data() + 8, &bf16_two, 2);
  std::memcpy(data.data() + 10, &bf16_two, 2);
  const auto path =
      raw_file("hand.safetensors",
               R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]}})",
               data);
  SafetensorsFile f(path);
  EXPECT_EQ(f.read_f32("w"), (std::vector<float>{3.0f, -1.0f}));
  EXPECT_EQ(f.read_f32("b"), (std::vector<float>{2.0f, 2.0f}));
  EXPECT_EQ(f.entries().front().name, "w");  // in the data's order
}

TEST(Safetensors, DamageIsRefusedNamingTheFileAndTheTensor) {
  const std::string ok_data(8, '\0');
  const auto truncated =
      raw_file("cut.safetensors", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", ok_data);
  EXPECT_NE(refusal(truncated).find("cut.safetensors"), std::string::npos);
  EXPECT_NE(refusal(truncated).find("tensor 'w'"), std::string::npos) << refusal(truncated);
  EXPECT_NE(refusal(truncated).find("truncated"), std::string::npos);
  const auto wrong_size =
      raw_file("size.safetensors", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", ok_data);
  EXPECT_NE(refusal(wrong_size).find("tensor 'w': 8 bytes for shape [3] of F32"), std::string::npos)
      << refusal(wrong_size);
  const auto overlap = raw_file(
      "overlap.safetensors",
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
      ok_data);
  EXPECT_NE(refusal(overlap).find("hole or an overlap"), std::string::npos) << refusal(overlap);
  const auto dtype =
      raw_file("dtype.safetensors", R"({"w":{"dtype":"F8_E9","shape":[8],"data_offsets":[0,8]}})", ok_data);
  EXPECT_NE(refusal(dtype).find("tensor 'w': unknown dtype F8_E9"), std::string::npos) << refusal(dtype);
  const auto header = raw_file("header.safetensors", std::string(64, '{'), "");
  EXPECT_NE(refusal(header).find("header is not a JSON object"), std::string::npos) << refusal(header);
  std::string too_long(8, '\0');
  const uint64_t huge = 1u << 20;
  std::memcpy(too_long.data(), &huge, 8);
  const auto path = temp_path("long.safetensors");
  std::ofstream(path, std::ios::binary) << too_long << "{}";
  EXPECT_NE(refusal(path).find("does not fit a file of 10 bytes"), std::string::npos) << refusal(path);
  EXPECT_NE(refusal(temp_path("absent.safetensors")).find("cannot open"), std::string::npos);
  SafetensorsFile f(
      raw_file("one.safetensors", R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", ok_data));
  try {
    f.read_f32("w");
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'w': dtype I64 is not a float"), std::string::npos);
  }
  EXPECT_THROW(f.at("v"), CheckpointError);
}

}  // namespace
}  // namespace rondo
