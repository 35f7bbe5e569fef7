// PipelineChunks: a row-microbatch's chunks run as pipeline microbatches over two stages, the way
// the executor runs them (forwards in order, backwards in reverse, chunks outside the last K
// forwarded without a graph and recomputed in their backward), give every parameter's gradient
// and the loss of the unchunked two-stage model within 1e-5 relative: equal and cost-like
// boundaries, K = 1 and 2, rows and packed documents. Dropping the key/value gradients that later
// chunks feed back is caught.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "tests/worker/loss_and_gradients.h"
#include "worker/gpt_family.h"
#include "worker/pipeline_chunks.h"

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

// What StageExecutor does with a chunk group on two stages, in one process.
LossAndGradients pipelined(const torch::Tensor& tokens, const torch::Tensor& documents,
                           const std::vector<int64_t>& lengths, int keep) {
  StagedModel model(gpt_family(), shape(), two_stages(), /*seed=*/5);
  PipelineChunks chunks(model, lengths);
  const int n = chunks.chunks();
  const auto docs = documents.defined() ? documents.slice(1, 0, kSeq) : documents;
  const auto targets = targets_of(tokens, documents);
  const double counted = static_cast<double>(targets.ne(-100).sum().item<int64_t>());
  struct Held {
    torch::Tensor input0, input1, out0, loss;
  };
  std::vector<Held> held(static_cast<size_t>(n));
  const auto ids = [&](int j) {
    return tokens.slice(1, chunks.begin(j), chunks.begin(j) + chunks.length(j));
  };
  const auto loss_of = [&](int j, const torch::Tensor& logits) {
    const auto t = targets.slice(1, chunks.begin(j), chunks.begin(j) + chunks.length(j));
    return torch::nn::functional::cross_entropy(
               logits.reshape({-1, kVocab}), t.reshape({-1}),
               torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum).ignore_index(-100)) /
           counted;
  };
  double loss = 0;
  for (int j = 0; j < n; ++j) {
    auto& h = held[static_cast<size_t>(j)];
    std::optional<torch::NoGradGuard> no_graph;
    if (j < n - keep) no_graph.emplace();
    h.out0 = chunks.forward(0, j, ids(j), docs);
    h.input1 = h.out0.detach().requires_grad_(true);
    h.loss = loss_of(j, chunks.forward(1, j, h.input1, docs));
    loss += h.loss.item<double>();
  }
  for (int j = n - 1; j >= 0; --j) {
    auto& h = held[static_cast<size_t>(j)];
    if (j < n - keep) {
      // The last stage's backward reruns its forward, then the first stage's.
      h.input1 = h.input1.detach().requires_grad_(true);
      h.loss = loss_of(j, chunks.forward(1, j, h.input1, docs));
      h.loss.backward();
      h.out0 = chunks.forward(0, j, ids(j), docs);
    } else {
      h.loss.backward();
    }
    torch::autograd::backward({h.out0}, {h.input1.grad()});
  }
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
    expect_close(ref, pipelined(tokens, {}, {16, 16, 16, 16}, keep), "C=L/4 K=" + std::to_string(keep));
  }
  // Later chunks shorter, as cost-aware boundaries cut them.
  expect_close(ref, pipelined(tokens, {}, {24, 16, 14, 10}, 1), "uneven chunks K=1");
}

TEST(PipelineChunks, PackedDocumentsGiveTheDocumentMaskedLossAndGradients) {
  const auto tokens = random_tokens(4);
  const auto documents = random_documents(5);
  const auto ref = unchunked(tokens, documents);
  for (int keep : {1, 2}) {
    expect_close(ref, pipelined(tokens, documents, {16, 16, 16, 16}, keep),
                 "packed K=" + std::to_string(keep));
  }
}

TEST(PipelineChunks, ChunksMustCoverTheRow) {
  StagedModel model(gpt_family(), shape(), two_stages(), /*seed=*/5);
  EXPECT_THROW(PipelineChunks(model, {16, 16}), std::invalid_argument);
  EXPECT_THROW(PipelineChunks(model, {64, 0}), std::invalid_argument);
}

}  // namespace
}  // namespace rondo
