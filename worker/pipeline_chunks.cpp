#include "worker/pipeline_chunks.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <map>
#include <stdexcept>
#include <string>
#include <utility>

namespace rondo {

struct PipelineChunks::State {
  StagedModel model{nullptr};
  // (stage, schedule microbatch) -> the chunk's keys and values per layer of the stage, as leaves.
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

PipelineChunks::PipelineChunks(StagedModel model, std::vector<int64_t> lengths)
    : state_(std::make_shared<State>()), lengths_(std::move(lengths)) {
  int64_t at = 0;
  for (int64_t len : lengths_) {
    if (len < 1) throw std::invalid_argument("pipeline chunk of " + std::to_string(len) + " tokens");
    begins_.push_back(at);
    at += len;
  }
  if (at != model->shape().seq_length) {
    throw std::invalid_argument("pipeline chunks cover " + std::to_string(at) + " tokens of a " +
                                std::to_string(model->shape().seq_length) + "-token row");
  }
  state_->model = std::move(model);
}

PipelineChunks::~PipelineChunks() = default;

void PipelineChunks::clear() { state_->leaves.clear(); }

torch::Tensor PipelineChunks::forward(int stage, int microbatch, const torch::Tensor& input,
                                      const torch::Tensor& documents) {
  auto& s = *state_;
  const int n = chunks(), j = microbatch % n, first = microbatch - j;
  const int64_t b = begin(j), e = b + length(j);
  const auto& st = s.model->stage(stage);
  const auto device = input.device();
  torch::Tensor positions;
  if (st.has_embedding) {
    positions = documents.defined()
                    ? document_positions(documents).slice(1, b, e).to(device)
                    : torch::arange(b, e, torch::TensorOptions().dtype(torch::kLong).device(device));
  }
  const bool layers = st.num_layers > 0;
  torch::Tensor bias;
  std::vector<LayerKeyValues> past;
  if (layers) {
    bias = causal_bias(b, e, documents, device);
    if (j > 0) {
      past.resize(static_cast<size_t>(st.num_layers));
      for (size_t l = 0; l < past.size(); ++l) {
        std::vector<torch::Tensor> ks, vs;
        for (int i = 0; i < j; ++i) {
          const auto& kv = s.leaves.at({stage, first + i})[l];
          ks.push_back(kv.k);
          vs.push_back(kv.v);
        }
        past[l] = {torch::cat(ks, 1), torch::cat(vs, 1)};
      }
    }
  }
  std::vector<LayerKeyValues> present;
  auto out = s.model->forward_chunk(stage, input, positions, bias, past, layers ? &present : nullptr);
  if (!layers || j + 1 == n) return out;  // no later chunk attends to these keys
  const std::pair<int, int> key{stage, microbatch};
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
