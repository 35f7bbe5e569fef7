// common/: whole-line appends and human durations.
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

}  // namespace
}  // namespace rondo
