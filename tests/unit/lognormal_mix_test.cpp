// The lognormal length mix (data.path: lognormal): reproducible, the distribution its parameters
// name, clamped, invalid parameters named; the corpus it builds is cut from the builtin text.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/errors.h"
#include "data/lognormal_mix.h"
#include "data/token_corpus.h"

namespace rondo {
namespace {

TEST(LognormalMix, TheSameParametersGiveTheSameLengths) {
  const LognormalMix mix{200, 7.0, 1.2, 1000000, 5};
  EXPECT_EQ(lognormal_lengths(mix), lognormal_lengths(mix));
  auto other = mix;
  other.seed = 6;
  EXPECT_NE(lognormal_lengths(mix), lognormal_lengths(other));
}

TEST(LognormalMix, LengthsFollowTheDistribution) {
  const LognormalMix mix{20000, 6.0, 1.0, 1 << 30, 1};
  auto lengths = lognormal_lengths(mix);
  std::vector<double> logs;
  for (int64_t n : lengths) logs.push_back(std::log(static_cast<double>(n)));
  const double mean = std::accumulate(logs.begin(), logs.end(), 0.0) / static_cast<double>(logs.size());
  double var = 0;
  for (double x : logs) var += (x - mean) * (x - mean);
  const double sd = std::sqrt(var / static_cast<double>(logs.size()));
  EXPECT_NEAR(mean, 6.0, 0.03);
  EXPECT_NEAR(sd, 1.0, 0.03);
  std::nth_element(lengths.begin(), lengths.begin() + 10000, lengths.end());
  EXPECT_NEAR(static_cast<double>(lengths[10000]), std::exp(6.0), 0.05 * std::exp(6.0));
}

TEST(LognormalMix, LengthsAreClampedAndBadParametersNamed) {
  const auto lengths = lognormal_lengths({5000, 6.0, 3.0, 500, 2});
  EXPECT_EQ(*std::max_element(lengths.begin(), lengths.end()), 500);
  EXPECT_GE(*std::min_element(lengths.begin(), lengths.end()), 1);
  const auto key_of = [](const LognormalMix& mix) {
    try {
      lognormal_lengths(mix);
    } catch (const ConfigError& e) {
      return e.key();
    }
    return std::string();
  };
  EXPECT_EQ(key_of({0, 6.0, 1.0, 10, 1}), "data.lognormal_documents");
  EXPECT_EQ(key_of({10, 6.0, -1.0, 10, 1}), "data.lognormal_sigma");
  EXPECT_EQ(key_of({10, NAN, 1.0, 10, 1}), "data.lognormal_mu");
  EXPECT_EQ(key_of({10, 6.0, 1.0, 0, 1}), "data.lognormal_max_length");
}

TEST(LognormalMix, TheCorpusIsDocumentsOfThoseLengthsCutFromTheBuiltinText) {
  const LognormalMix mix{50, 5.0, 1.5, 100000, 3};
  const auto lengths = lognormal_lengths(mix);
  const auto corpus = TokenCorpus::load("lognormal", "auto", 10, mix);
  const auto builtin = TokenCorpus::load("builtin", "auto", 10);
  const auto total = std::accumulate(lengths.begin(), lengths.end(), int64_t{0});
  ASSERT_EQ(corpus.size(), static_cast<uint64_t>(total));
  std::vector<int64_t> ids(corpus.size()), tokens(corpus.size()), text(builtin.size());
  corpus.documents(0, ids.size(), ids.data());
  corpus.read(0, tokens.size(), tokens.data());
  builtin.read(0, text.size(), text.data());
  EXPECT_EQ(corpus.document_lengths(), lengths);  // what HDP draws whole documents from
  uint64_t at = 0;
  for (size_t d = 0; d < lengths.size(); ++d) {
    // Document d: its own id over exactly its length, a (wrapping) window of the builtin text.
    const uint64_t from = lognormal_document_offset(mix, static_cast<int64_t>(d), text.size());
    for (int64_t i = 0; i < lengths[d]; ++i, ++at) {
      ASSERT_EQ(ids[at], static_cast<int64_t>(d));
      ASSERT_EQ(tokens[at], text[(from + static_cast<uint64_t>(i)) % text.size()]) << "document " << d;
    }
  }
}

}  // namespace
}  // namespace rondo
