// StepBatches: the tensors a step's microbatches read are the sample windows' tokens, documents and
// counted targets -- whole rows or a pipeline chunk's columns, of this step or (run ahead) the next.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "data/exec/step_batches.h"

namespace rondo {
namespace {

namespace fs = std::filesystem;

class StepBatchesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rondo-step-batches-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    const char* texts[] = {"abc", "de", "f", "ghij", "klmnop", "qr"};
    for (int i = 0; i < 6; ++i) std::ofstream(dir_ / ("doc" + std::to_string(i))) << texts[i];
    corpus_ = TokenCorpus::load(dir_.string(), "text", 4);
    plan_.mutable_training()->set_num_microbatches(2);
    plan_.mutable_training()->set_micro_batch_size(2);
    plan_.mutable_training()->set_global_batch_size(4);
    plan_.mutable_model()->set_seq_length(3);
    plan_.mutable_model()->set_vocab_size(256);
    plan_.mutable_data()->set_pack(true);
    me_.add_microbatch_first_sample(0);
    me_.add_microbatch_first_sample(2);
    windows_ = std::make_unique<SampleWindows>(
        corpus_, SampleWindows::Options{.seed = 3, .seq_length = 3, .global_batch_size = 4, .pack = true});
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Row `row` of row microbatch `mb` of 0-based step `at`, as the windows read it.
  std::vector<int64_t> window(uint64_t at, int mb, int row) const {
    std::vector<int64_t> out(4);
    windows_->tokens(at, me_.microbatch_first_sample(mb) + static_cast<uint64_t>(row), 0, 4, 256, out.data());
    return out;
  }

  fs::path dir_;
  TokenCorpus corpus_;
  plan::Plan plan_;
  plan::RankPlan me_;
  std::unique_ptr<SampleWindows> windows_;
};

TEST_F(StepBatchesTest, RowsAreTheWindowsOfTheirStep) {
  StepBatches batches(plan_, me_, *windows_, torch::kCPU);
  batches.set_step(3);
  EXPECT_EQ(batches.step_of(1), (std::pair<int64_t, int>{2, 1}));
  EXPECT_EQ(batches.step_of(2), (std::pair<int64_t, int>{3, 0}));  // the next step's, run ahead
  for (int mb = 0; mb < 4; ++mb) {
    const auto [at, m] = batches.step_of(mb);
    const auto rows = batches.tokens(mb);
    ASSERT_EQ(rows.sizes(), (torch::IntArrayRef{2, 4}));
    for (int r = 0; r < 2; ++r) {
      const auto expected = window(static_cast<uint64_t>(at), m, r);
      for (int j = 0; j < 4; ++j) EXPECT_EQ(rows[r][j].item<int64_t>(), expected[static_cast<size_t>(j)]);
    }
  }
}

TEST_F(StepBatchesTest, CountedTargetsAreThoseThatStayInTheirDocumentAndTheCacheFollowsTheStep) {
  StepBatches batches(plan_, me_, *windows_, torch::kCPU);
  for (int64_t step = 1; step <= 4; ++step) {
    batches.set_step(step);
    double counted = 0;
    for (int mb = 0; mb < 2; ++mb) {
      const auto& packing = batches.packing(mb);
      for (int r = 0; r < 2; ++r) {
        int64_t document[3];
        uint8_t dropped[3];
        windows_->documents(static_cast<uint64_t>(step - 1),
                            me_.microbatch_first_sample(mb) + static_cast<uint64_t>(r), document, dropped);
        for (int j = 0; j < 3; ++j) {
          EXPECT_EQ(packing.documents[r][j].item<int64_t>(), document[j]) << "step " << step;
          EXPECT_EQ(packing.crossing[r][j].item<bool>(), dropped[j] != 0) << "step " << step;
          counted += dropped[j] ? 0 : 1;
        }
      }
      EXPECT_TRUE(batches.documents(mb).equal(packing.documents));
      const auto targets = batches.tokens(mb).slice(1, 1, 4);
      const auto masked = batches.counted_targets(mb, targets);
      EXPECT_TRUE(masked.eq(-100).equal(packing.crossing));
      EXPECT_TRUE(masked.masked_select(packing.crossing.logical_not())
                      .equal(targets.masked_select(packing.crossing.logical_not())));
    }
    EXPECT_EQ(batches.step_targets(), counted) << "step " << step;
  }
}

TEST_F(StepBatchesTest, WithoutPackingEveryTargetCountsAndRowsHaveNoDocuments) {
  plan_.mutable_data()->set_pack(false);
  const SampleWindows plain(corpus_, {.seed = 3, .seq_length = 3, .global_batch_size = 4});
  StepBatches batches(plan_, me_, plain, torch::kCPU);
  batches.set_step(1);
  EXPECT_FALSE(batches.documents(0).defined());
  const auto targets = batches.tokens(0).slice(1, 1, 4);
  EXPECT_TRUE(batches.counted_targets(0, targets).equal(targets));
  EXPECT_EQ(batches.step_targets(), 2.0 * 2 * 3);
}

}  // namespace
}  // namespace rondo
