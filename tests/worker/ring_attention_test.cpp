// Ring attention (parallelism/exec/ring_attention.h) on groups of 2, 3 and 4 ranks played by
// threads over the in-process communicator: each rank's zigzag share of the output and of the
// query/key/value gradients equals single-rank attention's, causal, with and without documents
// packed in the rows.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <exception>
#include <limits>
#include <thread>
#include <vector>

#include "comms/in_process_communicator.h"
#include "parallelism/exec/ring_attention.h"

namespace rondo {
namespace {

constexpr int64_t kBatch = 2, kHeads = 2, kTokens = 24, kHeadDim = 8;

// Document ids [batch, tokens]: row 0 one document, row 1 three (boundaries at 5 and 14).
torch::Tensor packed_documents() {
  auto docs = torch::zeros({kBatch, kTokens}, torch::kInt64);
  docs[1].slice(0, 5, 14).fill_(1);
  docs[1].slice(0, 14).fill_(2);
  return docs;
}

// softmax(q k^T * scale + mask) v over the whole sequence on one rank.
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& documents, double scale) {
  const auto pos = torch::arange(kTokens, torch::kInt64);
  auto allowed = pos.view({1, 1, -1}).le(pos.view({1, -1, 1}));
  if (documents.defined()) allowed = allowed & documents.unsqueeze(1).eq(documents.unsqueeze(2));
  const auto bias = torch::zeros(allowed.sizes())
                        .masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  const auto s = torch::matmul(q.view({kBatch, kHeads, kTokens, kHeadDim}),
                               k.view({kBatch, kHeads, kTokens, kHeadDim}).transpose(2, 3)) *
                     scale +
                 bias.unsqueeze(1);
  return torch::matmul(torch::softmax(s, -1), v.view({kBatch, kHeads, kTokens, kHeadDim}))
      .view({kBatch * kHeads, kTokens, kHeadDim});
}

double relative_error(const torch::Tensor& got, const torch::Tensor& want) {
  return (got - want).abs().max().item<double>() / std::max(1e-12, want.abs().max().item<double>());
}

void expect_ring_equals_single_rank(int degree, bool with_documents) {
  SCOPED_TRACE("degree " + std::to_string(degree) + (with_documents ? ", packed documents" : ""));
  torch::manual_seed(degree * 10 + with_documents);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  const auto q = torch::randn({kBatch * kHeads, kTokens, kHeadDim}, opts).requires_grad_(true);
  const auto k = torch::randn({kBatch * kHeads, kTokens, kHeadDim}, opts).requires_grad_(true);
  const auto v = torch::randn({kBatch * kHeads, kTokens, kHeadDim}, opts).requires_grad_(true);
  const auto weight = torch::randn({kBatch * kHeads, kTokens, kHeadDim}, opts);  // d loss / d out
  const auto docs = with_documents ? packed_documents() : torch::Tensor();
  const double scale = 1.0 / std::sqrt(static_cast<double>(kHeadDim));
  const auto ref = reference_attention(q, k, v, docs, scale);
  (ref * weight).sum().backward();

  auto world = InProcessCommunicator::create_world(degree);
  std::vector<torch::Tensor> out(degree), dq(degree), dk(degree), dv(degree);
  std::vector<std::exception_ptr> errors(degree);
  std::vector<std::thread> threads;
  for (int r = 0; r < degree; ++r) {
    threads.emplace_back([&, r] {
      try {
        world[r]->set_timeout(std::chrono::seconds(20));
        const auto idx = zigzag_indices(kTokens, degree, r);
        const auto mine = [&](const torch::Tensor& x) { return x.detach().index_select(1, idx); };
        const auto ql = mine(q).requires_grad_(true), kl = mine(k).requires_grad_(true),
                   vl = mine(v).requires_grad_(true);
        const auto dl = with_documents ? docs.index_select(1, idx) : torch::Tensor();
        out[r] = ring_attention(ql, kl, vl, idx, dl, scale, kHeads, *world[r]);
        (out[r] * weight.index_select(1, idx)).sum().backward();
        dq[r] = ql.grad(), dk[r] = kl.grad(), dv[r] = vl.grad();
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (int r = 0; r < degree; ++r) {
    const auto idx = zigzag_indices(kTokens, degree, r);
    EXPECT_LT(relative_error(out[r].detach(), ref.detach().index_select(1, idx)), 1e-5)
        << "output, rank " << r;
    EXPECT_LT(relative_error(dq[r], q.grad().index_select(1, idx)), 1e-5) << "dq, rank " << r;
    EXPECT_LT(relative_error(dk[r], k.grad().index_select(1, idx)), 1e-5) << "dk, rank " << r;
    EXPECT_LT(relative_error(dv[r], v.grad().index_select(1, idx)), 1e-5) << "dv, rank " << r;
  }
}

TEST(RingAttention, ZigzagSlicesBalanceTheCausalWork) {
  EXPECT_TRUE(torch::equal(zigzag_indices(8, 2, 0), torch::tensor({0, 1, 6, 7}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(zigzag_indices(8, 2, 1), torch::tensor({2, 3, 4, 5}, torch::kInt64)));
  EXPECT_THROW(zigzag_indices(10, 3, 0), std::invalid_argument);
  // Every token held once across the group.
  std::vector<torch::Tensor> all;
  for (int r = 0; r < 4; ++r) all.push_back(zigzag_indices(24, 4, r));
  EXPECT_TRUE(torch::equal(std::get<0>(torch::cat(all).sort()), torch::arange(24, torch::kInt64)));
}

TEST(RingAttention, OneRankIsPlainAttention) { expect_ring_equals_single_rank(1, true); }
TEST(RingAttention, TwoRanksEqualOne) { expect_ring_equals_single_rank(2, false); }
TEST(RingAttention, ThreeRanksEqualOne) { expect_ring_equals_single_rank(3, false); }
TEST(RingAttention, FourRanksEqualOne) { expect_ring_equals_single_rank(4, false); }
TEST(RingAttention, TwoRanksEqualOneWithPackedDocuments) { expect_ring_equals_single_rank(2, true); }
TEST(RingAttention, ThreeRanksEqualOneWithPackedDocuments) { expect_ring_equals_single_rank(3, true); }
TEST(RingAttention, FourRanksEqualOneWithPackedDocuments) { expect_ring_equals_single_rank(4, true); }

}  // namespace
}  // namespace rondo
