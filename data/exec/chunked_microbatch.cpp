#include "data/exec/chunked_microbatch.h"

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

}  // namespace

// Everything the forward leaves for the backward: owned by the loss's backward node (and by the
// ChunkedMicrobatch until it goes), so it lives exactly until the backward has run.
struct ChunkedMicrobatch::State {
  std::shared_ptr<ChunkModel> model;
  int stage = 0;
  ChunkingOptions options;
  torch::Device device{torch::kCPU};
  std::unique_ptr<ChunkedRows> rows;
  ChunkingStats stats;
  // The groups (ChunkedRows::groups) each share trains: dealt for `dealt_parts` shares.
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

  // The chunk's forward: the summed weighted cross-entropy of its targets, and its keys and values.
  Graph run_chunk(size_t index) {
    const auto in = rows->inputs(index, device);
    // The earlier chunks' keys and values, per layer, oldest first.
    std::vector<LayerKeyValues> past_kv;
    if (in.past > 0) {
      const auto earlier = rows->earlier_chunks(index);
      const size_t layers = leaves[earlier.front()].size();
      past_kv.resize(layers);
      for (size_t l = 0; l < layers; ++l) {
        std::vector<torch::Tensor> ks, vs;
        for (size_t c : earlier) {
          ks.push_back(leaves[c][l].k);
          vs.push_back(leaves[c][l].v);
        }
        past_kv[l] = {torch::cat(ks, 1), torch::cat(vs, 1)};
      }
    }
    Graph g;
    const auto logits = model->forward_chunk(stage, in.ids, in.positions, in.bias, past_kv, &g.present);
    g.loss_sum = weighted_cross_entropy(logits, in.targets, in.weights);
    return g;
  }

  // The groups, in order, into `parts` contiguous shares of about equal cost: a group goes where
  // the middle of its cost falls.
  void deal(int parts) {
    if (parts == dealt_parts) return;
    const auto& groups = rows->groups();
    std::vector<double> cost(groups.size(), 0.0);
    double total = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      for (size_t i : groups[g]) cost[g] += rows->plan().costs[i];
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
    leaves.assign(rows->chunks(), {});
    graphs.assign(rows->chunks(), {});
    double loss_sum = 0;
    const auto& groups = rows->groups();
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
        if (rows->has_later_chunk(i)) {
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

ChunkedMicrobatch::ChunkedMicrobatch(std::shared_ptr<ChunkModel> model, int stage,
                                     const torch::Tensor& tokens, const torch::Tensor& targets,
                                     const torch::Tensor& documents, const ChunkingOptions& options,
                                     const torch::Tensor& row_weights)
    : state_(std::make_shared<State>()) {
  const auto& st = model->stage(stage);
  if (!st.has_embedding || !st.has_lm_head) {
    throw std::invalid_argument("chunked training needs a stage with the embedding and the LM head (stage " +
                                std::to_string(stage) + " lacks one)");
  }
  if (options.chunks_in_memory < 1) throw std::invalid_argument("chunks_in_memory must be >= 1");
  auto& s = *state_;
  s.device = tokens.device();
  s.options = options;
  s.stage = stage;
  s.rows = std::make_unique<ChunkedRows>(tokens, targets, documents, row_weights, options.chunk_size,
                                         options.balance, model->cost_dims());
  s.stats = s.rows->counts();
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

const ChunkPlan& ChunkedMicrobatch::plan() const { return state_->rows->plan(); }
const ChunkingStats& ChunkedMicrobatch::stats() const { return state_->stats; }

}  // namespace rondo
