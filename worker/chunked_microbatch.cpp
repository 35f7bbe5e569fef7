#include "worker/chunked_microbatch.h"

#include <torch/csrc/autograd/function.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace rondo {

namespace {

thread_local bool partial_backward = false;

struct Sequence {
  int64_t row = 0, start = 0, length = 0;  // tokens [start, start + length) of a row
};

// Each row's runs of equal document ids (or the whole row), in row order.
std::vector<Sequence> find_sequences(int64_t rows, int64_t seq, const torch::Tensor& documents) {
  std::vector<Sequence> out;
  for (int64_t r = 0; r < rows; ++r) {
    if (!documents.defined()) {
      out.push_back({r, 0, seq});
      continue;
    }
    const auto ids = documents[r].contiguous();
    const auto* d = ids.data_ptr<int64_t>();
    int64_t start = 0;
    for (int64_t p = 1; p <= seq; ++p) {
      if (p == seq || d[p] != d[p - 1]) {
        out.push_back({r, start, p - start});
        start = p;
      }
    }
  }
  return out;
}

GptDims dims_of(const ModelShape& s) {
  return {s.num_layers, s.hidden_size, s.ffn_hidden_size, s.vocab_size, s.seq_length};
}

}  // namespace

// Everything the forward leaves for the backward: owned by the loss's backward node (and by the
// ChunkedMicrobatch until it goes), so it lives exactly until the backward has run.
struct ChunkedMicrobatch::State {
  StagedModel model{nullptr};
  int stage = 0;
  ChunkingOptions options;
  torch::Tensor tokens, targets;  // [rows, seq], on the CPU (the chunks are cut from them)
  torch::Device device{torch::kCPU};
  std::vector<Sequence> sequences;
  ChunkPlan plan;
  ChunkingStats stats;
  torch::Tensor row_weight;  // [rows], double, on the CPU
  // The groups (below) each share trains: dealt for `dealt_parts` shares.
  std::vector<int> group_part;
  int dealt_parts = 0;

  // Per chunk: its keys and values per layer as leaves (when a later chunk of its sequence
  // attends to them), and for the chunks that keep their activations the graph's outputs.
  struct Graph {
    torch::Tensor loss_sum;
    std::vector<LayerKeyValues> present;
  };
  std::vector<std::vector<LayerKeyValues>> leaves;
  std::vector<Graph> graphs;
  std::vector<int> previous_chunk;  // the chunk before this one in its sequence, or -1
  // The chunks in the plan's order, grouped: a standalone chunk alone, a long sequence's together.
  std::vector<std::vector<size_t>> groups;

  // The chunk's forward: the summed cross-entropy of its targets, and its keys and values.
  Graph run_chunk(size_t index) {
    const auto& chunk = plan.chunks[index];
    std::vector<torch::Tensor> ids, labels, weights, positions, segment_of;
    int64_t past = 0;
    const auto* w = row_weight.data_ptr<double>();
    for (size_t s = 0; s < chunk.segments.size(); ++s) {
      const auto& seg = chunk.segments[s];
      const auto& sq = sequences[static_cast<size_t>(seg.sequence)];
      ids.push_back(tokens[sq.row].slice(0, sq.start + seg.begin, sq.start + seg.end));
      labels.push_back(targets[sq.row].slice(0, sq.start + seg.begin, sq.start + seg.end));
      weights.push_back(torch::full({seg.end - seg.begin}, w[sq.row], torch::kFloat32));
      positions.push_back(torch::arange(seg.begin, seg.end, torch::kLong));
      segment_of.push_back(torch::full({seg.end - seg.begin}, static_cast<int64_t>(s), torch::kLong));
      if (chunk.dependent()) past = seg.begin;
    }
    const auto query_pos = torch::cat(positions), query_seg = torch::cat(segment_of);
    // Keys: the sequence's earlier tokens (segment 0), then the chunk's own.
    const auto key_pos = past > 0 ? torch::cat({torch::arange(past, torch::kLong), query_pos}) : query_pos;
    const auto key_seg = past > 0 ? torch::cat({torch::zeros({past}, torch::kLong), query_seg}) : query_seg;
    const auto allowed =
        query_seg.unsqueeze(1).eq(key_seg.unsqueeze(0)) & key_pos.unsqueeze(0).le(query_pos.unsqueeze(1));
    const auto bias = torch::zeros(allowed.sizes(), torch::kFloat32)
                          .masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity())
                          .unsqueeze(0)
                          .to(device);
    // The earlier chunks' keys and values, per layer, oldest first.
    std::vector<LayerKeyValues> past_kv;
    if (past > 0) {
      std::vector<int> earlier;
      for (int c = previous_chunk[index]; c >= 0; c = previous_chunk[static_cast<size_t>(c)])
        earlier.push_back(c);
      const size_t layers = leaves[static_cast<size_t>(earlier.front())].size();
      past_kv.resize(layers);
      for (size_t l = 0; l < layers; ++l) {
        std::vector<torch::Tensor> ks, vs;
        for (auto it = earlier.rbegin(); it != earlier.rend(); ++it) {
          ks.push_back(leaves[static_cast<size_t>(*it)][l].k);
          vs.push_back(leaves[static_cast<size_t>(*it)][l].v);
        }
        past_kv[l] = {torch::cat(ks, 1), torch::cat(vs, 1)};
      }
    }
    Graph g;
    const auto logits = model->forward_chunk(stage, torch::cat(ids).unsqueeze(0).to(device),
                                             query_pos.unsqueeze(0).to(device), bias, past_kv, &g.present);
    // Each target's cross-entropy (0 where it does not count) times its row's weight.
    g.loss_sum =
        (torch::nn::functional::cross_entropy(
             logits.view({-1, logits.size(-1)}), torch::cat(labels).to(device),
             torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone).ignore_index(-100)) *
         torch::cat(weights).to(device))
            .sum();
    return g;
  }

  bool has_later_chunk(size_t index) const {
    const auto& chunk = plan.chunks[index];
    if (chunk.segments.size() != 1) return false;
    const auto& seg = chunk.segments.front();
    return seg.end < sequences[static_cast<size_t>(seg.sequence)].length;
  }

  // The groups, in order, into `parts` contiguous shares of about equal cost: a group goes where
  // the middle of its cost falls.
  void deal(int parts) {
    if (parts == dealt_parts) return;
    std::vector<double> cost(groups.size(), 0.0);
    double total = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      for (size_t i : groups[g]) cost[g] += plan.costs[i];
      total += cost[g];
    }
    group_part.assign(groups.size(), 0);
    double before = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      const double middle = before + 0.5 * cost[g];
      group_part[g] = total > 0 ? std::min(parts - 1, static_cast<int>(middle / total * parts)) : 0;
      before += cost[g];
    }
    dealt_parts = parts;
  }

  // Trains share `part`'s chunks group by group (ChunkFlow's schedule); returns their loss.
  double forward(int part) {
    const bool grad = torch::GradMode::is_enabled();
    leaves.assign(plan.chunks.size(), {});
    graphs.assign(plan.chunks.size(), {});
    double loss_sum = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      if (group_part[g] != part) continue;
      const auto& group = groups[g];
      const size_t keep_from = group.size() > static_cast<size_t>(options.chunks_in_memory)
                                   ? group.size() - static_cast<size_t>(options.chunks_in_memory)
                                   : 0;
      for (size_t j = 0; j < group.size(); ++j) {
        const size_t i = group[j];
        const bool keep = grad && j >= keep_from;
        Graph g;
        {
          torch::AutoGradMode mode(keep);
          g = run_chunk(i);
        }
        loss_sum += g.loss_sum.item<double>();
        if (has_later_chunk(i)) {
          for (const auto& kv : g.present)
            leaves[i].push_back({kv.k.detach().requires_grad_(true), kv.v.detach().requires_grad_(true)});
        }
        if (keep) graphs[i] = std::move(g);
      }
      if (grad) backward(group, options.loss_grad);
    }
    return loss_sum;
  }

  // A group's backwards in reverse, `loss_grad` being d(objective) / d(each chunk's weighted loss).
  void backward(const std::vector<size_t>& group, double loss_grad) {
    for (size_t j = group.size(); j-- > 0;) {
      const size_t i = group[j];
      Graph g = std::move(graphs[i]);
      if (!g.loss_sum.defined()) {
        ++stats.recomputed_chunks;
        torch::AutoGradMode mode(true);
        g = run_chunk(i);
      }
      std::vector<torch::Tensor> roots{g.loss_sum}, grads{torch::full_like(g.loss_sum, loss_grad)};
      for (size_t l = 0; l < leaves[i].size(); ++l) {
        // The gradients later chunks left on this chunk's keys and values.
        for (auto [out, leaf] :
             {std::pair{g.present[l].k, leaves[i][l].k}, std::pair{g.present[l].v, leaves[i][l].v}}) {
          if (!leaf.grad().defined()) continue;
          roots.push_back(out);
          grads.push_back(leaf.grad());
        }
      }
      partial_backward = true;
      try {
        torch::autograd::backward(roots, grads);
      } catch (...) {
        partial_backward = false;
        throw;
      }
      partial_backward = false;
      leaves[i].clear();
    }
  }
};

namespace {

// The node the executor's backward reaches through the returned loss. The chunks' backwards ran in
// forward() with options.loss_grad; this checks the executor's gradient was that one.
struct ChunkedLossBackward : torch::autograd::Node {
  explicit ChunkedLossBackward(double expected) : expected(expected) {}
  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    const double got = grads.at(0).item<double>();
    if (std::abs(got - expected) > 1e-9 * std::abs(expected)) {
      throw std::logic_error("chunked microbatch: its chunks were trained for a loss gradient of " +
                             std::to_string(expected) + ", the backward brought " + std::to_string(got));
    }
    return {};
  }
  std::string name() const override { return "ChunkedLossBackward"; }
  double expected;
};

}  // namespace

ChunkedMicrobatch::ChunkedMicrobatch(StagedModel model, int stage, const torch::Tensor& tokens,
                                     const torch::Tensor& targets, const torch::Tensor& documents,
                                     const ChunkingOptions& options, const torch::Tensor& row_weights)
    : state_(std::make_shared<State>()) {
  const auto& st = model->stage(stage);
  if (!st.has_embedding || !st.has_lm_head) {
    throw std::invalid_argument("chunked training needs a stage with the embedding and the LM head (stage " +
                                std::to_string(stage) + " lacks one)");
  }
  if (options.chunks_in_memory < 1) throw std::invalid_argument("chunks_in_memory must be >= 1");
  auto& s = *state_;
  s.device = tokens.device();
  s.tokens = tokens.to(torch::kCPU).contiguous();
  s.targets = targets.to(torch::kCPU).contiguous();
  s.options = options;
  s.stage = stage;
  s.sequences = find_sequences(tokens.size(0), tokens.size(1),
                               documents.defined() ? documents.to(torch::kCPU).contiguous() : documents);
  std::vector<int64_t> lengths;
  for (const auto& sq : s.sequences) {
    lengths.push_back(sq.length);
    s.stats.longest_sequence = std::max(s.stats.longest_sequence, sq.length);
  }
  s.plan = plan_chunks(lengths, options.chunk_size, options.balance, dims_of(model->shape()));
  s.previous_chunk.assign(s.plan.chunks.size(), -1);
  std::vector<int> last_of_sequence(s.sequences.size(), -1);
  for (size_t i = 0; i < s.plan.chunks.size(); ++i) {
    const auto& chunk = s.plan.chunks[i];
    if (chunk.dependent()) {
      const auto sq = static_cast<size_t>(chunk.segments.front().sequence);
      if (last_of_sequence[sq] < 0)
        throw std::logic_error("chunk plan: a dependent chunk before its sequence's first");
      s.previous_chunk[i] = last_of_sequence[sq];
      ++s.stats.dependent_chunks;
      if (s.groups.empty() || s.groups.back().back() != static_cast<size_t>(s.previous_chunk[i]))
        throw std::logic_error("chunk plan: a long sequence's chunks are not consecutive");
      s.groups.back().push_back(i);
    } else {
      s.groups.push_back({i});
    }
    for (const auto& seg : chunk.segments)
      last_of_sequence[static_cast<size_t>(seg.sequence)] = static_cast<int>(i);
  }
  s.stats.chunks = static_cast<int64_t>(s.plan.chunks.size());
  if (row_weights.defined()) {
    if (row_weights.numel() != tokens.size(0))
      throw std::invalid_argument("chunked rows: " + std::to_string(row_weights.numel()) +
                                  " row weights for " + std::to_string(tokens.size(0)) + " rows");
    s.row_weight = row_weights.to(torch::kCPU, torch::kFloat64).contiguous();
  } else {
    const auto counted = static_cast<double>(std::max<int64_t>(s.targets.ne(-100).sum().item<int64_t>(), 1));
    s.row_weight = torch::full({tokens.size(0)}, 1.0 / counted, torch::kFloat64);
  }
  s.model = std::move(model);
}

ChunkedMicrobatch::~ChunkedMicrobatch() = default;

torch::Tensor ChunkedMicrobatch::forward(int part, int parts) {
  if (parts < 1 || part < 0 || part >= parts)
    throw std::invalid_argument("chunked rows: share " + std::to_string(part) + " of " +
                                std::to_string(parts));
  const bool grad = torch::GradMode::is_enabled();
  state_->deal(parts);
  const double loss_value = state_->forward(part);
  // What the chunks kept is freed now: their backwards have run.
  state_->graphs.clear();
  state_->leaves.clear();
  auto loss = torch::tensor(loss_value, torch::TensorOptions().dtype(torch::kFloat32).device(state_->device));
  if (grad) {
    auto node = std::shared_ptr<ChunkedLossBackward>(new ChunkedLossBackward(state_->options.loss_grad),
                                                     torch::autograd::deleteNode);
    torch::autograd::create_gradient_edge(loss, node);
  }
  return loss;
}

bool ChunkedMicrobatch::partial_gradients() { return partial_backward; }

const ChunkPlan& ChunkedMicrobatch::plan() const { return state_->plan; }
const ChunkingStats& ChunkedMicrobatch::stats() const { return state_->stats; }

}  // namespace rondo
