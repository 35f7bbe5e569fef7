#include "parallelism/exec/expert_pipeline.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>

#include "comms/collectives.h"

namespace rondo {

namespace {

thread_local bool partial_expert_gradients = false;

// Where atom a of a block of n rows cut into `atoms` nearly equal atoms starts.
int64_t atom_offset(int64_t n, int64_t atoms, int64_t a) {
  const int64_t base = n / atoms, extra = n % atoms;
  return a * base + std::min(a, extra);
}

torch::Tensor index_tensor(const std::vector<int64_t>& v, const torch::Device& device) {
  return torch::tensor(v, torch::kInt64).to(device);
}

// How one degree cuts the exchange: chunk c holds atoms [c A / d, (c+1) A / d) of every block
// (A = atoms), a block being the rows of one (member, expert) pair.
struct Chunks {
  int degree = 1;
  std::vector<torch::Tensor> send_index;                      // per chunk: its rows, in sender order
  std::vector<std::vector<size_t>> send_rows, received_rows;  // per chunk, per member
  std::vector<int64_t> received_total;                        // per chunk
  // Per atom, per local expert: where its rows lie in its chunk's receive buffer (members in order).
  std::vector<std::vector<torch::Tensor>> expert_rows;
  int64_t atoms_per_chunk = 1;
};

Chunks cut(const ExpertExchange& ex, int degree, int64_t atoms, const torch::Device& device) {
  Chunks ch;
  ch.degree = degree;
  ch.atoms_per_chunk = atoms / degree;
  const auto blocks = static_cast<size_t>(ex.members * ex.local);
  std::vector<int64_t> start(blocks + 1, 0);
  for (size_t k = 0; k < blocks; ++k) start[k + 1] = start[k] + ex.sent[k];
  std::vector<std::vector<std::vector<int64_t>>> expert_rows(
      static_cast<size_t>(atoms), std::vector<std::vector<int64_t>>(static_cast<size_t>(ex.local)));
  for (int c = 0; c < degree; ++c) {
    const int64_t a0 = c * ch.atoms_per_chunk, a1 = a0 + ch.atoms_per_chunk;
    std::vector<int64_t> index;
    std::vector<size_t> send(static_cast<size_t>(ex.members), 0),
        received(static_cast<size_t>(ex.members), 0);
    int64_t position = 0;
    for (int j = 0; j < ex.members; ++j) {
      for (int64_t l = 0; l < ex.local; ++l) {
        const auto k = static_cast<size_t>(j * ex.local + l);
        const int64_t lo = atom_offset(ex.sent[k], atoms, a0), hi = atom_offset(ex.sent[k], atoms, a1);
        for (int64_t i = lo; i < hi; ++i) index.push_back(start[k] + i);
        send[static_cast<size_t>(j)] += static_cast<size_t>(hi - lo);
        const int64_t n = ex.received[k], first = atom_offset(n, atoms, a0);
        for (int64_t a = a0; a < a1; ++a) {
          auto& rows = expert_rows[static_cast<size_t>(a)][static_cast<size_t>(l)];
          for (int64_t i = atom_offset(n, atoms, a); i < atom_offset(n, atoms, a + 1); ++i)
            rows.push_back(position + i - first);
        }
        const int64_t got = atom_offset(n, atoms, a1) - first;
        received[static_cast<size_t>(j)] += static_cast<size_t>(got);
        position += got;
      }
    }
    ch.send_index.push_back(index_tensor(index, device));
    ch.send_rows.push_back(std::move(send));
    ch.received_rows.push_back(std::move(received));
    ch.received_total.push_back(position);
  }
  for (auto& atom : expert_rows) {
    auto& out = ch.expert_rows.emplace_back();
    for (auto& rows : atom) out.push_back(index_tensor(rows, device));
  }
  return ch;
}

std::vector<size_t> elements(const std::vector<size_t>& rows, int64_t hidden) {
  std::vector<size_t> out;
  for (size_t r : rows) out.push_back(r * static_cast<size_t>(hidden));
  return out;
}

// Starts sending `from` (from_rows[j] rows to member j) and receiving into `into`.
std::unique_ptr<PendingCollective> start(Collectives& over, const torch::Tensor& from,
                                         const std::vector<size_t>& from_rows, torch::Tensor& into,
                                         const std::vector<size_t>& into_rows) {
  const int64_t hidden = into.size(1);
  return over.start_alltoallv(from.data_ptr<float>(), elements(from_rows, hidden), into.data_ptr<float>(),
                              elements(into_rows, hidden), DType::kFloat32);
}

// The two exchanges that may be in flight: the next chunk's way in, the previous chunk's way out.
struct InFlight {
  std::unique_ptr<PendingCollective> in, out;
  void progress() {
    if (in && in->progress()) in.reset();
    if (out && out->progress()) out.reset();
  }
  static void finish(std::unique_ptr<PendingCollective>& op) {
    if (op) op->wait();
    op.reset();
  }
};

// One atom's computation of one local expert, kept for the backward.
struct AtomExpert {
  torch::Tensor input, output;  // input: a leaf of the rows it received
};

struct PipelineState {
  ExpertExchange exchange;
  ExpertDegrees degrees;
  int64_t atoms = 1;
  Collectives* dispatch = nullptr;
  Collectives* combine = nullptr;
  std::function<void()> gap;
  torch::Device device{torch::kCPU};
  std::vector<std::vector<AtomExpert>> computed;  // per atom, per local expert
};

// Moves `total` rows in chunks: each chunk's rows gathered from `rows` go in, `work` turns the
// rows received for chunk c into rows to send back, and those come home into the result.
torch::Tensor pipelined(
    const torch::Tensor& rows, const Chunks& ch, Collectives& way_in, Collectives& way_out,
    const std::function<torch::Tensor(int c, const torch::Tensor& received, InFlight&)>& work) {
  const int64_t hidden = rows.size(1);
  const auto options = rows.options();
  std::vector<torch::Tensor> send(static_cast<size_t>(ch.degree)), received(send.size()), home(send.size()),
      back(send.size());
  auto result = torch::zeros_like(rows);
  InFlight flight;
  const auto start_in = [&](int c) {
    const auto uc = static_cast<size_t>(c);
    send[uc] = rows.index_select(0, ch.send_index[uc]).contiguous();
    received[uc] = torch::empty({ch.received_total[uc], hidden}, options);
    flight.in = start(way_in, send[uc], ch.send_rows[uc], received[uc], ch.received_rows[uc]);
  };
  start_in(0);
  for (int c = 0; c < ch.degree; ++c) {
    const auto uc = static_cast<size_t>(c);
    InFlight::finish(flight.in);
    if (c + 1 < ch.degree) start_in(c + 1);
    back[uc] = work(c, received[uc], flight).contiguous();
    InFlight::finish(flight.out);  // one way out in flight at a time
    home[uc] = torch::empty({ch.send_index[uc].numel(), hidden}, options);
    flight.out = start(way_out, back[uc], ch.received_rows[uc], home[uc], ch.send_rows[uc]);
  }
  InFlight::finish(flight.out);
  for (size_t c = 0; c < home.size(); ++c) result.index_copy_(0, ch.send_index[c], home[c]);
  return result;
}

class ExpertPipelineBackward : public torch::autograd::Node {
 public:
  explicit ExpertPipelineBackward(std::shared_ptr<PipelineState> state) : state_(std::move(state)) {}
  std::string name() const override { return "ExpertPipelineBackward"; }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    auto& s = *state_;
    const auto grad = grads[0].defined() ? grads[0].contiguous() : grads[0];
    if (!grad.defined()) return {torch::Tensor()};
    const auto ch = cut(s.exchange, s.degrees.backward, s.atoms, s.device);
    auto result = pipelined(
        grad, ch, *s.dispatch, *s.combine, [&](int c, const torch::Tensor& received, InFlight& flight) {
          auto input_grads = torch::zeros_like(received);
          for (int64_t a = c * ch.atoms_per_chunk; a < (c + 1) * ch.atoms_per_chunk; ++a) {
            auto& atom = s.computed[static_cast<size_t>(a)];
            for (size_t l = 0; l < atom.size(); ++l) {
              if (!atom[l].output.defined()) continue;
              const auto& where = ch.expert_rows[static_cast<size_t>(a)][l];
              // Only the last atom's gradients are an expert's final ones.
              partial_expert_gradients = a + 1 < s.atoms;
              torch::autograd::backward({atom[l].output}, {received.index_select(0, where)});
              partial_expert_gradients = false;
              input_grads.index_copy_(0, where, atom[l].input.grad());
              atom[l] = {};
              flight.progress();
              if (s.gap) s.gap();  // FSMoE's gradient partitioning: other reductions advance here
            }
          }
          return input_grads;
        });
    state_.reset();
    return {result};
  }

 private:
  std::shared_ptr<PipelineState> state_;
};

void check(const ExpertExchange& ex, ExpertDegrees degrees) {
  const auto blocks = static_cast<size_t>(ex.members * ex.local);
  if (ex.sent.size() != blocks || ex.received.size() != blocks) {
    throw std::invalid_argument("expert pipeline: counts for " + std::to_string(blocks) +
                                " (member, expert) blocks");
  }
  if (degrees.forward < 1 || degrees.backward < 1) {
    throw std::invalid_argument("expert pipeline: degrees must be >= 1 (forward " +
                                std::to_string(degrees.forward) + ", backward " +
                                std::to_string(degrees.backward) + ")");
  }
}

}  // namespace

bool expert_gradients_partial() { return partial_expert_gradients; }

torch::Tensor run_expert_pipeline(const torch::Tensor& rows, const ExpertExchange& exchange,
                                  ExpertDegrees degrees, Collectives& dispatch, Collectives& combine,
                                  const ExpertCompute& compute, std::function<void()> gap) {
  check(exchange, degrees);
  auto state = std::make_shared<PipelineState>();
  state->exchange = exchange;
  state->degrees = degrees;
  state->atoms = std::lcm(degrees.forward, degrees.backward);
  state->dispatch = &dispatch;
  state->combine = &combine;
  state->gap = std::move(gap);
  state->device = rows.device();
  state->computed.assign(static_cast<size_t>(state->atoms),
                         std::vector<AtomExpert>(static_cast<size_t>(exchange.local)));
  const bool record = torch::GradMode::is_enabled();
  const auto ch = cut(exchange, degrees.forward, state->atoms, state->device);
  auto output =
      pipelined(rows.detach().contiguous(), ch, dispatch, combine,
                [&](int c, const torch::Tensor& received, InFlight& flight) {
                  auto outputs = torch::zeros_like(received);
                  for (int64_t a = c * ch.atoms_per_chunk; a < (c + 1) * ch.atoms_per_chunk; ++a) {
                    for (int64_t l = 0; l < exchange.local; ++l) {
                      const auto& where = ch.expert_rows[static_cast<size_t>(a)][static_cast<size_t>(l)];
                      if (where.numel() == 0) continue;
                      auto input = received.index_select(0, where).requires_grad_(record);
                      const auto y = compute(l, input);
                      outputs.index_copy_(0, where, y.detach());
                      if (record)
                        state->computed[static_cast<size_t>(a)][static_cast<size_t>(l)] = {input, y};
                      flight.progress();
                    }
                  }
                  return outputs;
                });
  if (record) {
    auto node = std::shared_ptr<ExpertPipelineBackward>(new ExpertPipelineBackward(state),
                                                        torch::autograd::deleteNode);
    node->set_next_edges(torch::autograd::collect_next_edges(rows));
    torch::autograd::set_history(output, node);
  }
  return output;
}

}  // namespace rondo
