#include "data/exec/pipeline_chunks.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <map>
#include <stdexcept>
#include <string>
#include <utility>

namespace rondo {

struct PipelineChunks::State {
  std::shared_ptr<ChunkModel> model;
  std::shared_ptr<const ChunkedRows> rows;
  // (stage, chunk) -> the chunk's keys and values per layer of the stage, as leaves.
  std::map<std::pair<int, int>, std::vector<LayerKeyValues>> leaves;
};

namespace {

// Between a chunk's stage output and its graph: passes the output's gradient on, and adds the
// gradients the later chunks left on the chunk's keys and values to the keys and values the graph
// produced (next edges: the output, then each layer's k and v).
struct KeyValueGradients : torch::autograd::Node {
  KeyValueGradients(std::shared_ptr<PipelineChunks::State> s, std::pair<int, int> k)
      : state(std::move(s)), key(k) {}
  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    torch::autograd::variable_list out{grads.at(0)};
    auto it = state->leaves.find(key);
    if (it == state->leaves.end()) throw std::logic_error("chunk keys and values gone before their backward");
    for (const auto& kv : it->second) {
      out.push_back(kv.k.grad());
      out.push_back(kv.v.grad());
    }
    state->leaves.erase(it);  // every later chunk has run its backward: nothing reads them again
    return out;
  }
  std::string name() const override { return "KeyValueGradients"; }
  std::shared_ptr<PipelineChunks::State> state;
  std::pair<int, int> key;
};

}  // namespace

PipelineChunks::PipelineChunks(std::shared_ptr<ChunkModel> model) : state_(std::make_shared<State>()) {
  state_->model = std::move(model);
}

PipelineChunks::~PipelineChunks() = default;

void PipelineChunks::set_rows(std::shared_ptr<const ChunkedRows> rows) {
  state_->leaves.clear();
  state_->rows = std::move(rows);
}

void PipelineChunks::clear() {
  state_->leaves.clear();
  state_->rows.reset();
}

torch::Tensor PipelineChunks::forward(int stage, int chunk, const torch::Tensor& input) {
  auto& s = *state_;
  if (!s.rows) throw std::logic_error("pipeline chunks: a forward before the step's chunks");
  const auto c = static_cast<size_t>(chunk);
  const auto& st = s.model->stage(stage);
  const bool layers = st.num_layers > 0;
  const auto in = s.rows->inputs(c, input.device(), layers);
  std::vector<LayerKeyValues> past;
  if (layers && in.past > 0) {
    const auto earlier = s.rows->earlier_chunks(c);
    past.resize(static_cast<size_t>(st.num_layers));
    for (size_t l = 0; l < past.size(); ++l) {
      std::vector<torch::Tensor> ks, vs;
      for (size_t e : earlier) {
        const auto& kv = s.leaves.at({stage, static_cast<int>(e)})[l];
        ks.push_back(kv.k);
        vs.push_back(kv.v);
      }
      past[l] = {torch::cat(ks, 1), torch::cat(vs, 1)};
    }
  }
  std::vector<LayerKeyValues> present;
  auto out = s.model->forward_chunk(stage, input, in.positions, layers ? in.bias : torch::Tensor(), past,
                                    layers ? &present : nullptr);
  if (!layers || !s.rows->has_later_chunk(c)) return out;  // no later chunk attends to these keys
  const std::pair<int, int> key{stage, chunk};
  auto& mine = s.leaves[key];
  if (mine.empty()) {
    // The first forward leaves them; a recomputation keeps those (and their gradients).
    for (const auto& kv : present)
      mine.push_back({kv.k.detach().requires_grad_(true), kv.v.detach().requires_grad_(true)});
  }
  if (!torch::GradMode::is_enabled()) return out;
  torch::autograd::variable_list inputs{out};
  for (const auto& kv : present) {
    inputs.push_back(kv.k);
    inputs.push_back(kv.v);
  }
  auto node =
      std::shared_ptr<KeyValueGradients>(new KeyValueGradients(state_, key), torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(inputs));
  auto wrapped = out.detach();
  torch::autograd::create_gradient_edge(wrapped, std::move(node));
  return wrapped;
}

}  // namespace rondo
