#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/atomic_file.h"
#include "common/checkpoint_manifest.h"
#include "common/crc32.h"
#include "common/errors.h"

namespace rondo {
namespace {

namespace fs = std::filesystem;

class CheckpointManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rondo-ckpt-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void make_step(int64_t step, const std::string& payload) {
    const auto d = fs::path(checkpoint_step_dir(dir_.string(), step));
    fs::create_directories(d);
    write_file_atomic((d / "model.pt").string(), payload);
    CheckpointManifest m;
    m.step = step;
    m.files.push_back({"model.pt", payload.size(), crc32_update(0, payload.data(), payload.size())});
    write_file_atomic((d / "manifest.json").string(), m.to_json());
    write_file_atomic((dir_ / "latest").string(), "step-" + std::to_string(step) + "\n");
  }

  fs::path dir_;
};

TEST(Crc32, MatchesTheStandardCheckValue) { EXPECT_EQ(crc32_update(0, "123456789", 9), 0xCBF43926u); }

TEST_F(CheckpointManifestTest, AValidCheckpointVerifies) {
  make_step(5, "weights of step five");
  EXPECT_EQ(latest_checkpoint_step(dir_.string()), 5);
  EXPECT_EQ(verify_checkpoint(dir_.string(), 5).step, 5);
}

TEST_F(CheckpointManifestTest, TruncatedFileIsRefusedAndNamed) {
  make_step(5, "weights of step five");
  make_step(10, "weights of step ten");
  fs::resize_file(fs::path(checkpoint_step_dir(dir_.string(), 10)) / "model.pt", 4);
  try {
    verify_checkpoint(dir_.string(), 10);
    FAIL() << "truncated checkpoint accepted";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("model.pt"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos);
  }
  EXPECT_EQ(newest_valid_checkpoint_before(dir_.string(), 10), 5);
}

TEST_F(CheckpointManifestTest, FlippedByteIsRefused) {
  make_step(3, "some weights");
  const auto file = fs::path(checkpoint_step_dir(dir_.string(), 3)) / "model.pt";
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(2);
  f.put('X');
  f.close();
  EXPECT_THROW(verify_checkpoint(dir_.string(), 3), CheckpointError);
  EXPECT_EQ(newest_valid_checkpoint_before(dir_.string(), 3), std::nullopt);
}

TEST_F(CheckpointManifestTest, MissingManifestAndMalformedLatestAreRefused) {
  fs::create_directories(checkpoint_step_dir(dir_.string(), 7));
  EXPECT_THROW(verify_checkpoint(dir_.string(), 7), CheckpointError);
  write_file_atomic((dir_ / "latest").string(), "garbage");
  EXPECT_THROW(latest_checkpoint_step(dir_.string()), CheckpointError);
}

TEST_F(CheckpointManifestTest, PartialDirectoriesAreIgnored) {
  make_step(2, "a");
  fs::create_directories(dir_ / "step-4.partial");
  EXPECT_EQ(list_checkpoint_steps(dir_.string()), (std::vector<int64_t>{2}));
}

}  // namespace
}  // namespace rondo
