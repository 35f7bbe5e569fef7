#include <gtest/gtest.h>

#include <set>

#include "data/global_batch_sampler.h"
#include "data/token_corpus.h"

namespace rondo {
namespace {

TEST(GlobalBatchSampler, DependsOnlyOnSeedStepAndIndex) {
  GlobalBatchSampler a(1234, 100000, 128, 8), b(1234, 100000, 128, 8), c(99, 100000, 128, 8);
  int differ = 0;
  for (uint64_t step = 0; step < 10; ++step) {
    for (uint64_t i = 0; i < 8; ++i) {
      const auto off = a.sample_offset(step, i);
      EXPECT_EQ(off, b.sample_offset(step, i));
      EXPECT_LE(off + 129, 100000u);
      differ += off != c.sample_offset(step, i);
    }
  }
  EXPECT_GT(differ, 70);
}

TEST(GlobalBatchSampler, SamplesVaryWithinAndAcrossSteps) {
  GlobalBatchSampler s(7, 50000, 32, 16);
  std::set<uint64_t> offsets;
  for (uint64_t step = 0; step < 4; ++step) {
    for (uint64_t i = 0; i < 16; ++i) offsets.insert(s.sample_offset(step, i));
  }
  EXPECT_GT(offsets.size(), 60u);
  EXPECT_EQ(s.consumed_samples(3), 48u);
}

TEST(GlobalBatchSampler, DocumentDrawsAreTheSameDrawOverDocuments) {
  // data.pad: a sample's document comes from the window draw's counter, over the documents.
  GlobalBatchSampler s(7, 50000, 32, 16);
  std::set<uint64_t> documents;
  for (uint64_t i = 0; i < 16; ++i) {
    EXPECT_EQ(s.sample_index(2, i, 50000 - 32), s.sample_offset(2, i));
    const auto d = s.sample_index(2, i, 10);
    EXPECT_LT(d, 10u);
    documents.insert(d);
  }
  EXPECT_GT(documents.size(), 4u);
}

TEST(TokenCorpus, BuiltinIsDebiansLicenseTexts) {
  const auto corpus = TokenCorpus::load("builtin", "auto", 129);
  EXPECT_GT(corpus.size(), 100000u);
  std::vector<int64_t> tokens(2000);
  corpus.read(0, tokens.size(), tokens.data());
  const std::string head(tokens.begin(), tokens.end());
  EXPECT_NE(head.find("License"), std::string::npos);
}

}  // namespace
}  // namespace rondo
