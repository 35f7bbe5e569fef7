// Gradient bucketing: buckets cover the buffer exactly, hold whole parameters, fill from the end,
// respect their caps, and take the trailing loss slot into bucket 0.
#include "comms/gradient_buckets.h"

#include <gtest/gtest.h>

#include <numeric>

namespace rondo {
namespace {

void expect_partition(const std::vector<GradientBucket>& buckets, const std::vector<size_t>& params,
                      size_t trailing) {
  const size_t total = std::accumulate(params.begin(), params.end(), size_t{0}) + trailing;
  // Bucket i+1 ends where bucket i begins; bucket 0 ends at the buffer's end; the last starts at 0.
  size_t end = total;
  std::vector<int> seen(params.size(), 0);
  for (const auto& b : buckets) {
    EXPECT_EQ(b.offset + b.count, end);
    end = b.offset;
    size_t elements = 0;
    for (size_t p : b.params) {
      ++seen[p];
      elements += params[p];
    }
    EXPECT_EQ(elements + (&b == &buckets.front() ? trailing : 0), b.count);
  }
  EXPECT_EQ(end, 0u);
  for (size_t p = 0; p < params.size(); ++p) EXPECT_EQ(seen[p], 1) << "parameter " << p;
}

TEST(GradientBuckets, OneBucketWhenCapIsZeroOrLarge) {
  const std::vector<size_t> params = {10, 20, 30};
  for (size_t cap : {size_t{0}, size_t{1} << 30}) {
    const auto b = plan_gradient_buckets(params, 1, 4, cap, cap);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_EQ(b[0].offset, 0u);
    EXPECT_EQ(b[0].count, 61u);
    expect_partition(b, params, 1);
  }
}

TEST(GradientBuckets, FillFromTheEndWithASmallFirstBucket) {
  // 8 parameters of 100 floats (400 bytes); first cap 400 bytes, then 1000 bytes.
  const std::vector<size_t> params(8, 100);
  const auto b = plan_gradient_buckets(params, 1, 4, 1000, 400);
  expect_partition(b, params, 1);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0].params, (std::vector<size_t>{7}));        // 101 floats: 404 bytes >= 400
  EXPECT_EQ(b[1].params, (std::vector<size_t>{4, 5, 6}));  // 1200 bytes >= 1000
  EXPECT_EQ(b[2].params, (std::vector<size_t>{1, 2, 3}));
  EXPECT_EQ(b[3].params, (std::vector<size_t>{0}));  // the remainder may stay under its cap
}

TEST(GradientBuckets, ParametersLargerThanTheCapGetABucketEach) {
  const std::vector<size_t> params = {5, 1000, 3, 2000, 7};
  const auto b = plan_gradient_buckets(params, 0, 4, 16, 16);
  expect_partition(b, params, 0);
  for (size_t i = 0; i + 1 < b.size(); ++i) EXPECT_GE(b[i].count * 4, 16u);
}

TEST(GradientBuckets, RandomLayoutsArePartitions) {
  uint64_t x = 12345;
  const auto next = [&] { return x = x * 6364136223846793005ull + 1442695040888963407ull, x >> 33; };
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<size_t> params(1 + next() % 40);
    for (auto& p : params) p = 1 + next() % 5000;
    const size_t trailing = next() % 3, cap = next() % 20000, first = next() % 20000;
    expect_partition(plan_gradient_buckets(params, trailing, 4, cap, first), params, trailing);
  }
}

}  // namespace
}  // namespace rondo
