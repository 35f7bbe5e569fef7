#include "worker/validation.h"

#include "common/errors.h"
#include "common/stopwatch.h"
#include "worker/microbatch_forward.h"

namespace rondo {

namespace {

const TokenCorpus& checked(const TokenCorpus& corpus, const plan::Plan& plan) {
  const auto need = static_cast<uint64_t>(plan.model().seq_length()) + 1;
  if (corpus.size() < need) {
    throw ConfigError("data.split", "the validation documents (" + corpus.source() + ") hold " +
                                        std::to_string(corpus.size()) +
                                        " tokens; evaluation needs at least " + std::to_string(need) +
                                        " (model.seq_length + 1): give validation a larger share");
  }
  return corpus;
}

}  // namespace

Validation::Validation(const plan::Plan& plan, int rank, const TokenCorpus& corpus, Communicator& world,
                       TimingRecorder* recorder, torch::Device device, const ContextParallel* context)
    : plan_(plan),
      me_(plan.ranks(rank)),
      context_(context),
      windows_(checked(corpus, plan),
               SampleWindows::Options{.seed = plan.training().seed(),
                                      .seq_length = static_cast<uint64_t>(plan.model().seq_length()),
                                      .global_batch_size = plan.training().global_batch_size(),
                                      .pack = plan.data().pack(),
                                      .pad = plan.data().pad()}) {
  batches_ = std::make_unique<StepBatches>(plan, me_, windows_, device);
  std::vector<int> everyone(static_cast<size_t>(world.size()));
  for (size_t i = 0; i < everyone.size(); ++i) everyone[i] = static_cast<int>(i);
  p2p_ = world.split(everyone);
  if (!plan.stateless_workers())
    executor_ = std::make_unique<StageExecutor>(plan, rank, *p2p_, recorder, nullptr, /*forward_only=*/true);
}

Validation::~Validation() = default;

void Validation::Result::to_report(report::ValidationReport& out) const {
  out.set_step(step);
  out.set_loss(loss);
  out.set_perplexity(perplexity());
  out.set_targets(targets);
  out.set_seconds(seconds);
}

bool Validation::due(int64_t step, bool exiting) const {
  const auto interval = static_cast<int64_t>(plan_.training().eval_interval());
  if (interval == 0) return false;
  return step % interval == 0 || step == static_cast<int64_t>(plan_.training().train_iters()) || exiting;
}

Validation::Result Validation::evaluate(int64_t step, StagedModel& model, Collectives& stats) {
  const auto t0 = std::chrono::steady_clock::now();
  model_ = &model;
  const auto& c = me_.coords();
  // [the scaled losses, the counted targets] of this rank, over every batch.
  std::vector<double> sums(2, 0.0);
  const auto iters = static_cast<int64_t>(plan_.training().eval_iters());
  for (int64_t i = 1; i <= iters; ++i) {
    batches_->set_step(i);
    if (executor_) {
      const auto times = executor_->run_step(*this);
      sums[0] += times.loss_sum * executor_->loss_scale();
    } else {
      sums[0] += whole_model_losses(model);
    }
    if (c.pp() == 0 && c.tp() == 0 && c.cp() == 0) sums[1] += batches_->step_targets();
  }
  model_ = nullptr;
  stats.allreduce(sums.data(), sums.size(), DType::kFloat64, ReduceOp::kSum);
  return {.step = step,
          .loss = sums[0] / static_cast<double>(iters),
          .targets = sums[1],
          .seconds = seconds_since(t0)};
}

double Validation::whole_model_losses(StagedModel& model) {
  torch::NoGradGuard no_graph;
  const auto m = static_cast<int>(plan_.training().num_microbatches());
  const int workers = static_cast<int>(plan_.mesh().pp()), me = static_cast<int>(me_.coords().pp());
  double sum = 0;
  for (int mb = me; mb < m; mb += workers) {
    const auto tokens = batches_->tokens(mb);
    auto x = tokens.slice(1, 0, tokens.size(1) - 1);
    for (const auto& atom : model->stages())
      x = microbatch_forward(model, *batches_, mb, atom.index, x, nullptr);
    sum +=
        microbatch_loss(model, *batches_, mb, x, tokens.slice(1, 1, tokens.size(1)), nullptr).item<double>();
  }
  return sum / (static_cast<double>(m) * static_cast<double>(plan_.mesh().dp()));
}

torch::Tensor Validation::tokens(int microbatch) { return batches_->tokens(microbatch); }

torch::Tensor Validation::forward(int stage, int microbatch, const torch::Tensor& input) {
  return microbatch_forward(*model_, *batches_, microbatch, stage, input, context_);
}

torch::Tensor Validation::loss(int microbatch, const torch::Tensor& logits, const torch::Tensor& targets) {
  return microbatch_loss(*model_, *batches_, microbatch, logits, targets, context_);
}

void Validation::reduce_gradients() {
  throw PlanError("validation: a gradient reduction in a forward-only step");
}

void Validation::optimizer_step(const StepTimes&) {
  throw PlanError("validation: an optimizer step in a forward-only step");
}

}  // namespace rondo
