// common/: whole-line appends, human durations and atomic (secret) files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "common/atomic_file.h"
#include "common/duration_format.h"
#include "common/errors.h"
#include "common/line_appender.h"

namespace rondo {
namespace {

TEST(DurationFormat, MinutesUnderAnHourHoursFromThere) {
  EXPECT_EQ(format_duration(0), "0m00s");
  EXPECT_EQ(format_duration(59.6), "1m00s");
  EXPECT_EQ(format_duration(247), "4m07s");
  EXPECT_EQ(format_duration(3599.4), "59m59s");
  EXPECT_EQ(format_duration(3600), "1h00m");
  EXPECT_EQ(format_duration(2 * 3600 + 13 * 60 + 59), "2h13m");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_duration(std::numeric_limits<double>::infinity()), "?");
  EXPECT_EQ(format_duration(std::nan("")), "?");
}

TEST(LineAppender, AppendsWholeLinesAcrossWritersAndReopens) {
  const auto dir = std::filesystem::temp_directory_path() / ("rondo-lines-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "events.jsonl").string();
  {
    LineAppender a(path);
    a.append(R"({"step":1})");
    append_line(path, R"({"event":"x"})");  // another writer of the same file in between
    a.append(R"({"step":2})");
  }
  LineAppender(path).append("last");
  EXPECT_EQ(read_file(path), "{\"step\":1}\n{\"event\":\"x\"}\n{\"step\":2}\nlast\n");
  EXPECT_THROW(LineAppender((dir / "missing" / "f").string()), Error);
  std::filesystem::remove_all(dir);
}

// A secret written atomically is never readable by others: the file is created 0600 (not chmod-ed
// afterwards), and a left-over temporary file of another mode does not widen it.
TEST(AtomicFile, ASecretIsCreatedWithItsOwnMode) {
  const auto dir = std::filesystem::temp_directory_path() / ("rondo-secret-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "control.token").string();
  const auto mode = [](const std::string& p) {
    return std::filesystem::status(p).permissions() & std::filesystem::perms::all;
  };
  write_file_atomic(path + ".tmp." + std::to_string(::getpid()), "stale", 0666);
  write_file_atomic(path, "secret\n", 0600);
  EXPECT_EQ(mode(path), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(read_file(path), "secret\n");
  write_file_atomic(path + ".plain", "x");
  EXPECT_EQ(mode(path + ".plain") & std::filesystem::perms::owner_write, std::filesystem::perms::owner_write);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace rondo
