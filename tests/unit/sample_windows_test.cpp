// SampleWindows: the windows each sample reads, the document ids data.pack uses and the targets
// that do not count, on a corpus of four small documents whose layout the test knows.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "common/errors.h"
#include "data/sample_windows.h"

namespace rondo {
namespace {

namespace fs = std::filesystem;

// "abc" "de" "f" "ghij": documents start at 0, 3, 5 and 6 of ten tokens.
class SampleWindowsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rondo-windows-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    const char* texts[] = {"abc", "de", "f", "ghij"};
    for (int i = 0; i < 4; ++i) std::ofstream(dir_ / ("doc" + std::to_string(i))) << texts[i];
    corpus_ = TokenCorpus::load(dir_.string(), "text", 4);
    ASSERT_EQ(corpus_.size(), 10u);
    ASSERT_EQ(corpus_.num_documents(), 4u);
  }
  void TearDown() override { fs::remove_all(dir_); }

  int document_of(uint64_t position) const {
    int d = 0;
    while (d + 1 < 4 && corpus_.document_start(static_cast<uint64_t>(d + 1)) <= position) ++d;
    return d;
  }

  fs::path dir_;
  TokenCorpus corpus_;
};

TEST_F(SampleWindowsTest, PackedWindowsNumberDocumentsFromTheirStartAndDropTargetsInTheNext) {
  const SampleWindows w(corpus_, {.seed = 7, .seq_length = 3, .global_batch_size = 4, .pack = true});
  EXPECT_TRUE(w.masks_targets());
  for (uint64_t step = 0; step < 5; ++step) {
    for (uint64_t sample = 0; sample < 4; ++sample) {
      const uint64_t at = w.offset(step, sample);
      ASSERT_LE(at, 6u);
      int64_t document[3];
      uint8_t dropped[3];
      w.documents(step, sample, document, dropped);
      for (uint64_t j = 0; j < 3; ++j) {
        EXPECT_EQ(document[j], document_of(at + j) - document_of(at)) << "step " << step << " position " << j;
        EXPECT_EQ(dropped[j], document_of(at + j + 1) != document_of(at + j)) << "step " << step;
      }
      int64_t tokens[4];
      w.tokens(step, sample, 0, 4, 256, tokens);
      for (uint64_t j = 0; j < 4; ++j) EXPECT_EQ(tokens[j], 'a' + static_cast<int64_t>(at + j));
    }
  }
}

TEST_F(SampleWindowsTest, PaddedSamplesAreWholeDocumentsOfTwoTokensOrMoreAndCountOnlyTheirOwnTargets) {
  const SampleWindows w(corpus_, {.seed = 3, .seq_length = 3, .global_batch_size = 8, .pad = true});
  std::set<uint64_t> starts;
  for (uint64_t step = 0; step < 10; ++step) {
    for (uint64_t sample = 0; sample < 8; ++sample) {
      const uint64_t at = w.offset(step, sample);
      starts.insert(at);
      int64_t document[3];
      uint8_t dropped[3];
      w.documents(step, sample, document, dropped);
      // The window starts at its document ("ghij" ends the corpus: its window is exactly it).
      for (uint64_t j = 0; j < 3; ++j) {
        const bool own = document_of(at + j) == document_of(at);
        const bool next_own = document_of(at + j + 1) == document_of(at);
        EXPECT_EQ(dropped[j], !(own && next_own)) << "window at " << at << " position " << j;
      }
    }
  }
  EXPECT_EQ(starts, (std::set<uint64_t>{0, 3, 6})) << "\"f\" (one token) is never a sample";
}

TEST_F(SampleWindowsTest, ATokenOutsideTheVocabularyIsRefusedNamingTheKey) {
  const SampleWindows w(corpus_, {.seed = 1, .seq_length = 3, .global_batch_size = 1});
  EXPECT_FALSE(w.masks_targets());
  int64_t tokens[4];
  try {
    w.tokens(0, 0, 0, 4, 'a', tokens);  // every letter is outside [0, 'a')
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.vocab_size"), std::string::npos) << e.what();
  }
}

TEST(SampleWindows, PaddingACorpusOfOneTokenDocumentsIsRefusedNamingDataPad) {
  const auto dir = fs::temp_directory_path() / ("rondo-windows-1-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (int i = 0; i < 6; ++i) std::ofstream(dir / std::to_string(i)) << "x";
  const auto corpus = TokenCorpus::load(dir.string(), "text", 4);
  EXPECT_THROW(SampleWindows(corpus, {.seq_length = 3, .global_batch_size = 1, .pad = true}), ConfigError);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace rondo
