// PipelineChunks: a step's chunks run as pipeline microbatches over two stages, the way the
// executor runs them (each long sequence's chunks forward in order and backward in reverse, chunks
// outside its last K forwarded without a graph and recomputed in their backward; packed short
// sequences standalone), give every parameter's gradient and the loss of the unchunked two-stage
// model within 1e-5 relative: equal-token and cost-aware boundaries, K = 1 and 2, whole rows and
// packed documents (with packed and split chunks both).
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/exec/pipeline_chunks.h"
#include "tests/worker/loss_and_gradients.h"
#include "worker/gpt_family.h"

namespace rondo {
namespace {

constexpr int64_t kSeq = 64, kVocab = 256, kRows = 2;

ModelShape shape() { return {4, 32, 4, 64, kVocab, kSeq, false}; }
// Stage 0: embedding and blocks 0-1; stage 1: blocks 2-3, final norm and LM head.
std::vector<StageLayers> two_stages() { return {{0, 0, 2, true, false}, {1, 2, 2, false, true}}; }

torch::Tensor targets_of(const torch::Tensor& tokens, const torch::Tensor& documents) {
  auto t = tokens.slice(1, 1, kSeq + 1).clone();
  if (documents.defined())
    t.masked_fill_(documents.slice(1, 1, kSeq + 1).ne(documents.slice(1, 0, kSeq)), -100);
  return t;
}

LossAndGradients unchunked(const torch::Tensor& tokens, const torch::Tensor& documents) {
  StagedModel model(gpt_family(), shape(), two_stages(), /*seed=*/5);
  const auto docs = documents.defined() ? documents.slice(1, 0, kSeq) : documents;
  const auto hidden = model->forward_stage(0, tokens.slice(1, 0, kSeq), docs);
  const auto logits = model->forward_stage(1, hidden, docs);
  const auto loss = torch::nn::functional::cross_entropy(
      logits.view({-1, kVocab}), targets_of(tokens, documents).reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
  loss.backward();
  return {loss.item<double>(), gradients(model)};
}

// What StageExecutor does with a step's chunks on two stages, in one process: each group's
// forwards in order, then its backwards in reverse, a chunk outside its group's last K forwarded
// without a graph and recomputed in its backward.
LossAndGradients pipelined(const torch::Tensor& tokens, const torch::Tensor& documents, int64_t chunk_size,
                           ChunkBalance balance, int keep) {
  StagedModel model(gpt_family(), shape(), two_stages(), /*seed=*/5);
  const auto docs = documents.defined() ? documents.slice(1, 0, kSeq) : documents;
  auto rows = std::make_shared<ChunkedRows>(tokens.slice(1, 0, kSeq), targets_of(tokens, documents), docs,
                                            torch::Tensor(), chunk_size, balance, model->cost_dims());
  PipelineChunks chunks(model.ptr());
  chunks.set_rows(rows);
  struct Held {
    torch::Tensor input1, out0, loss;
  };
  std::vector<Held> held(rows->chunks());
  const auto ids = [&](size_t c) { return rows->inputs(c, torch::kCPU, false).ids; };
  const auto loss_of = [&](size_t c, const torch::Tensor& logits) {
    const auto in = rows->inputs(c, torch::kCPU, false);
    return weighted_cross_entropy(logits, in.targets, in.weights);
  };
  double loss = 0;
  for (const auto& group : rows->groups()) {
    const size_t n = group.size();
    for (size_t j = 0; j < n; ++j) {
      const size_t c = group[j];
      auto& h = held[c];
      std::optional<torch::NoGradGuard> no_graph;
      if (j + keep < n) no_graph.emplace();
      h.out0 = chunks.forward(0, static_cast<int>(c), ids(c));
      h.input1 = h.out0.detach().requires_grad_(true);
      h.loss = loss_of(c, chunks.forward(1, static_cast<int>(c), h.input1));
      loss += h.loss.item<double>();
    }
    for (size_t j = n; j-- > 0;) {
      const size_t c = group[j];
      auto& h = held[c];
      if (j + keep < n) {
        // The last stage's backward reruns its forward, then the first stage's.
        h.input1 = h.input1.detach().requires_grad_(true);
        h.loss = loss_of(c, chunks.forward(1, static_cast<int>(c), h.input1));
        h.loss.backward();
        h.out0 = chunks.forward(0, static_cast<int>(c), ids(c));
      } else {
        h.loss.backward();
      }
      torch::autograd::backward({h.out0}, {h.input1.grad()});
    }
  }
  chunks.clear();
  return {loss, gradients(model)};
}

torch::Tensor random_tokens(uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, kVocab, {kRows, kSeq + 1}, torch::kLong);
}

// Documents of 5 to 40 tokens, cut differently in each row.
torch::Tensor random_documents(uint64_t seed) {
  torch::manual_seed(seed);
  auto docs = torch::empty({kRows, kSeq + 1}, torch::kLong);
  for (int64_t r = 0; r < kRows; ++r) {
    int64_t doc = 0, left = 0;
    for (int64_t p = 0; p <= kSeq; ++p) {
      if (left == 0) {
        ++doc;
        left = torch::randint(5, 41, {1}).item<int64_t>();
      }
      docs[r][p] = doc;
      --left;
    }
  }
  return docs;
}

TEST(PipelineChunks, QuarterChunksOverTwoStagesGiveTheUnchunkedLossAndGradients) {
  const auto tokens = random_tokens(3);
  const auto ref = unchunked(tokens, {});
  for (int keep : {1, 2}) {
    expect_close(ref, pipelined(tokens, {}, 16, ChunkBalance::kTokens, keep),
                 "C=L/4 K=" + std::to_string(keep));
  }
  // Later chunks shorter, as cost-aware boundaries cut them.
  expect_close(ref, pipelined(tokens, {}, 16, ChunkBalance::kCost, 1), "cost-aware chunks K=1");
}

// Rows of documents of the given lengths (each row's adding up to kSeq; the extra column, the last
// target's, in the row's last document).
torch::Tensor documents_of(const std::vector<std::vector<int64_t>>& rows) {
  auto docs = torch::empty({kRows, kSeq + 1}, torch::kLong);
  for (int64_t r = 0; r < kRows; ++r) {
    int64_t p = 0, doc = 0;
    for (int64_t len : rows[static_cast<size_t>(r)]) {
      ++doc;
      for (int64_t i = 0; i < len; ++i) docs[r][p++] = doc;
    }
    docs[r][kSeq] = doc;
  }
  return docs;
}

TEST(PipelineChunks, PackedDocumentsGiveTheDocumentMaskedLossAndGradients) {
  const auto tokens = random_tokens(4);
  for (const auto& documents : {random_documents(5), documents_of({{40, 10, 6, 8}, {5, 30, 12, 17}})}) {
    const auto ref = unchunked(tokens, documents);
    for (int keep : {1, 2}) {
      expect_close(ref, pipelined(tokens, documents, 16, ChunkBalance::kTokens, keep),
                   "packed K=" + std::to_string(keep));
    }
  }
  // The second layout has both kinds of chunk: short documents of both rows packed together, long
  // ones split.
  const auto documents = documents_of({{40, 10, 6, 8}, {5, 30, 12, 17}});
  const ChunkedRows rows(tokens.slice(1, 0, kSeq), targets_of(tokens, documents), documents.slice(1, 0, kSeq),
                         {}, 16, ChunkBalance::kTokens, {4, 32, 64, kVocab, kSeq});
  int packed = 0;
  for (const auto& c : rows.plan().chunks) packed += c.segments.size() > 1 ? 1 : 0;
  EXPECT_GE(packed, 2);
  EXPECT_EQ(rows.counts().dependent_chunks, 2 + 1 + 1);  // 40 -> 3 chunks, 30 -> 2, 17 -> 2
}

TEST(PipelineChunks, AForwardNeedsTheStepsChunks) {
  StagedModel model(gpt_family(), shape(), two_stages(), /*seed=*/5);
  PipelineChunks chunks(model.ptr());
  EXPECT_THROW(chunks.forward(0, 0, torch::zeros({1, 16}, torch::kLong)), std::logic_error);
}

}  // namespace
}  // namespace rondo
