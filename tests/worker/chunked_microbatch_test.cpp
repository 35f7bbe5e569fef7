// ChunkedMicrobatch: a sequence trained in chunks (C = L/4, K = 1 and 2, equal-token and
// cost-aware boundaries) gives the unchunked loss and every parameter's gradient within 1e-5
// relative; packed documents give the document-masked (data.pack) loss and gradients; ChunkFlow's
// rule: only a long sequence's chunks before its last K are recomputed, packed chunks never. The
// rows of several microbatches planned together and trained in shares give the sum of the
// microbatches' means, with fewer chunks than planning each microbatch alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "data/exec/chunked_microbatch.h"
#include "tests/worker/loss_and_gradients.h"
#include "worker/gpt_family.h"

namespace rondo {
namespace {

constexpr int64_t kSeq = 64;

ModelShape shape(bool selective = false) { return {2, 32, 4, 64, 256, kSeq, selective}; }

struct Result : LossAndGradients {
  ChunkingStats stats;
  ChunkPlan plan;
};

// ChunkFlow's count: each long sequence of N chunks recomputes its first N - K; a standalone
// chunk (packed short sequences, or a sequence that fits one chunk) never runs twice.
int64_t chunkflow_recomputed(const ChunkPlan& plan, int k) {
  int64_t out = 0, run = 0;
  for (const auto& chunk : plan.chunks) {
    if (!chunk.dependent()) {
      out += std::max<int64_t>(0, run - k);
      run = 0;
    }
    ++run;
  }
  return out + std::max<int64_t>(0, run - k);
}

// tokens [rows, seq + 1]; the loss of rows[:, :-1] against rows[:, 1:], masked where a target
// is in another document.
torch::Tensor masked_targets(const torch::Tensor& tokens, const torch::Tensor& documents) {
  auto targets = tokens.slice(1, 1, kSeq + 1).clone();
  if (documents.defined()) {
    targets.masked_fill_(documents.slice(1, 1, kSeq + 1).ne(documents.slice(1, 0, kSeq)), -100);
  }
  return targets;
}

Result unchunked(const torch::Tensor& tokens, const torch::Tensor& documents, bool selective = false) {
  StagedModel model(gpt_family(), shape(selective), /*seed=*/21);
  const auto docs = documents.defined() ? documents.slice(1, 0, kSeq) : documents;
  const auto logits = model->forward_stage(0, tokens.slice(1, 0, kSeq), docs);
  const auto loss = torch::nn::functional::cross_entropy(
      logits.view({-1, 256}), masked_targets(tokens, documents).reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
  loss.backward();
  return {{loss.item<double>(), gradients(model)}, {}, {}};
}

Result chunked(const torch::Tensor& tokens, const torch::Tensor& documents, const ChunkingOptions& options,
               bool selective = false) {
  StagedModel model(gpt_family(), shape(selective), /*seed=*/21);
  auto scaled = options;
  scaled.loss_grad = 0.5;
  ChunkedMicrobatch mb(model.ptr(), 0, tokens.slice(1, 0, kSeq), masked_targets(tokens, documents),
                       documents.defined() ? documents.slice(1, 0, kSeq) : documents, scaled);
  const auto loss = mb.forward();
  (loss * 0.5).backward();  // as the executor does: scaled by 1 / (microbatches x dp)
  auto grads = gradients(model);
  for (auto& g : grads) g *= 2.0;
  return {{loss.item<double>(), grads}, mb.stats(), mb.plan()};
}

torch::Tensor random_tokens(int64_t rows, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 256, {rows, kSeq + 1}, torch::kLong);
}

TEST(ChunkedMicrobatch, ALongSequenceInQuarterChunksGivesTheUnchunkedLossAndGradients) {
  const auto tokens = random_tokens(1, 3);
  const auto ref = unchunked(tokens, {});
  for (int k : {1, 2}) {
    for (auto balance : {ChunkBalance::kTokens, ChunkBalance::kCost}) {
      const auto got = chunked(tokens, {}, {kSeq / 4, balance, k});
      const std::string what =
          "K=" + std::to_string(k) + (balance == ChunkBalance::kCost ? " cost" : " tokens");
      expect_close(ref, got, what);
      EXPECT_GE(got.stats.chunks, 4) << what;
      EXPECT_EQ(got.stats.dependent_chunks, got.stats.chunks - 1) << what;
      // Only the last K chunks kept their activations; the others were recomputed.
      EXPECT_EQ(got.stats.recomputed_chunks, got.stats.chunks - k) << what;
    }
  }
  // Chunked but unsplit (one chunk holds the whole sequence): nothing recomputed.
  const auto whole = chunked(tokens, {}, {kSeq, ChunkBalance::kTokens, 1});
  expect_close(ref, whole, "one chunk");
  EXPECT_EQ(whole.stats.recomputed_chunks, 0);
}

TEST(ChunkedMicrobatch, SelectiveRecomputationInsideChunks) {
  const auto tokens = random_tokens(2, 4);
  expect_close(unchunked(tokens, {}, true), chunked(tokens, {}, {kSeq / 4, ChunkBalance::kTokens, 2}, true),
               "selective");
}

TEST(ChunkedMicrobatch, PackedDocumentsGiveTheDocumentMaskedLossAndGradients) {
  // Row 0: documents of 40, 9, 6 and 10 tokens (plus the next row's first target); row 1: a
  // document continuing from row 0's last, then a long one: short ones are packed into chunks,
  // long ones split.
  const auto tokens = random_tokens(2, 5);
  auto documents = torch::zeros({2, kSeq + 1}, torch::kLong);
  documents[0].slice(0, 40, 49).fill_(1);
  documents[0].slice(0, 49, 55).fill_(2);
  documents[0].slice(0, 55, kSeq + 1).fill_(3);
  documents[1].slice(0, 0, 5).fill_(3);
  documents[1].slice(0, 5, kSeq + 1).fill_(4);
  const auto ref = unchunked(tokens, documents);
  for (int k : {1, 2}) {
    const auto got = chunked(tokens, documents, {16, ChunkBalance::kTokens, k});
    expect_close(ref, got, "packed, K=" + std::to_string(k));
    EXPECT_GT(got.stats.dependent_chunks, 0);
    EXPECT_EQ(got.stats.longest_sequence, 59);
    // Short documents share a chunk, and are not recomputed: only each long document's chunks
    // before its last K are (the old rule recomputed all but the microbatch's last K chunks).
    EXPECT_TRUE(std::any_of(got.plan.chunks.begin(), got.plan.chunks.end(),
                            [](const Chunk& c) { return c.segments.size() > 1; }));
    EXPECT_EQ(got.stats.recomputed_chunks, chunkflow_recomputed(got.plan, k)) << "K=" << k;
    EXPECT_LT(got.stats.recomputed_chunks, got.stats.chunks - k) << "K=" << k;
  }
}

// Three microbatches of one row each, with different documents (so different counted targets):
// planned together, trained in three shares with each row weighted 1 / its counted targets, they
// give the sum of the three unchunked means and its gradients -- as the executor sums them.
TEST(ChunkedMicrobatch, SeveralMicrobatchesPlannedTogetherGiveTheSumOfTheirMeans) {
  const auto tokens = random_tokens(3, 8);
  auto documents = torch::zeros({3, kSeq + 1}, torch::kLong);
  // Row 0: 6 tokens, then a long document; row 1: a long one, then 10 tokens; row 2: eight of 8.
  // Together the 6 and the 10 share a chunk of 16; planned alone, each takes one.
  documents[0].slice(0, 6, kSeq + 1).fill_(1);
  documents[1].slice(0, 54, kSeq + 1).fill_(1);
  for (int64_t d = 0; d < 8; ++d) documents[2].slice(0, 8 * d, 8 * d + 8).fill_(d);
  documents[2][kSeq] = 7;
  const auto targets = masked_targets(tokens, documents);
  const auto inputs = tokens.slice(1, 0, kSeq), docs = documents.slice(1, 0, kSeq);

  LossAndGradients ref;
  {
    StagedModel model(gpt_family(), shape(), /*seed=*/21);
    for (int64_t m = 0; m < 3; ++m) {
      const auto rows = torch::indexing::Slice(m, m + 1);
      const auto logits = model->forward_stage(0, inputs.index({rows}), docs.index({rows}));
      const auto loss = torch::nn::functional::cross_entropy(
          logits.view({-1, 256}), targets.index({rows}).reshape({-1}),
          torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
      loss.backward();
      ref.loss += loss.item<double>();
    }
    ref.grads = gradients(model);
  }
  const auto counted = targets.ne(-100).sum(1).to(torch::kFloat64);
  ASSERT_NE(counted[0].item<double>(), counted[2].item<double>());
  for (int k : {1, 2}) {
    StagedModel model(gpt_family(), shape(), /*seed=*/21);
    ChunkingOptions options{16, ChunkBalance::kTokens, k};
    options.loss_grad = 0.5;
    ChunkedMicrobatch rows(model.ptr(), 0, inputs, targets, docs, options, 1.0 / counted);
    LossAndGradients got;
    for (int part = 0; part < 3; ++part) {
      const auto loss = rows.forward(part, 3);
      (loss * 0.5).backward();
      got.loss += loss.item<double>();
    }
    got.grads = gradients(model);
    for (auto& g : got.grads) g *= 2.0;
    expect_close(ref, got, "three microbatches together, K=" + std::to_string(k));
    EXPECT_EQ(rows.stats().recomputed_chunks, chunkflow_recomputed(rows.plan(), k)) << "K=" << k;
    // Planned one microbatch at a time, the short documents of different rows could not share chunks.
    int64_t alone = 0;
    for (int64_t m = 0; m < 3; ++m) {
      const auto r = torch::indexing::Slice(m, m + 1);
      alone += static_cast<int64_t>(
          ChunkedMicrobatch(model.ptr(), 0, inputs.index({r}), targets.index({r}), docs.index({r}), options)
              .plan()
              .chunks.size());
    }
    EXPECT_LT(rows.stats().chunks, alone) << "K=" << k;
  }
}

// The chunks' backwards run with the loss gradient the caller announced; a backward that brings
// another is refused rather than silently giving wrong gradients.
TEST(ChunkedMicrobatch, ABackwardWithAnotherLossGradientIsRefused) {
  const auto tokens = random_tokens(1, 7);
  StagedModel model(gpt_family(), shape(), /*seed=*/21);
  ChunkingOptions options{kSeq / 4, ChunkBalance::kTokens, 1};
  options.loss_grad = 0.25;
  ChunkedMicrobatch mb(model.ptr(), 0, tokens.slice(1, 0, kSeq), masked_targets(tokens, {}), {}, options);
  const auto loss = mb.forward();
  EXPECT_THROW((loss * 0.5).backward(), std::exception);
}

TEST(ChunkedMicrobatch, NoGradientModeRunsTheForwardOnly) {
  const auto tokens = random_tokens(1, 6);
  const double ref = unchunked(tokens, {}).loss;
  StagedModel model(gpt_family(), shape(), /*seed=*/21);
  torch::NoGradGuard no_grad;
  ChunkedMicrobatch mb(model.ptr(), 0, tokens.slice(1, 0, kSeq), masked_targets(tokens, {}), {},
                       {kSeq / 4, ChunkBalance::kTokens, 1});
  const auto loss = mb.forward();
  EXPECT_FALSE(loss.requires_grad());
  EXPECT_NEAR(loss.item<double>(), ref, 1e-5 * ref);
}

}  // namespace
}  // namespace rondo
