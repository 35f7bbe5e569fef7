// The stage executor without MPI: the ranks of a plan as threads over an InProcessCommunicator,
// the model a fake whose layers are scalar weights. Every synchronous schedule runs each rank's
// forwards and backwards in its plan's order, and every one computes the same loss and the same
// gradients as the single-stage run of the same batch (the property the system tests check with
// the real GPT, here in milliseconds). An asynchronous stream carries the next step's forwards
// (and their received activations) across the step boundary to the right backwards. Chunked
// pipeline steps each run their own schedule, of another length and other chunk groups.
#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "common/errors.h"
#include "comms/in_process_communicator.h"
#include "orchestrator/config.h"
#include "orchestrator/plan_builder.h"
#include "pipeline/exec/stage_executor.h"
#include "pipeline/exec/step_schedule.h"
#include "pipeline/pipeline_schedule.h"

namespace rondo {
namespace {

constexpr int kLayers = 4, kMicroBatch = 2, kSeq = 3, kHidden = 8, kVocab = 5;

// "F1.3": stage 1's forward of microbatch 3; "B1": a backward (B or I) of stage 1.
std::string call(char kind, int stage, int microbatch = -1) {
  std::string out(1, kind);
  out += std::to_string(stage);
  if (microbatch >= 0) {
    out += '.';
    out += std::to_string(microbatch);
  }
  return out;
}

// One weight per layer: a stage multiplies its input by its layers' weights. The first stage
// turns token ids into [mb, seq, hidden]; the last one's loss pairs its output with the targets
// of the microbatch it is told it computes, so an activation handed to the wrong microbatch
// changes the loss and the gradients.
class FakeModel : public StepModel {
 public:
  explicit FakeModel(const plan::Plan& plan, int rank) : plan_(plan) {
    for (uint32_t s : plan.ranks(rank).stages()) {
      const auto& st = plan.stages(static_cast<int>(s));
      for (uint32_t l = st.first_layer(); l < st.first_layer() + st.num_layers(); ++l) {
        weights[static_cast<int>(l)] = torch::full({}, 1.0 + 0.1 * l, torch::requires_grad());
      }
    }
  }

  torch::Tensor tokens(int microbatch) override {
    // Sample-dependent ids: microbatch m's rows are its first samples in the global batch of its
    // step (from num_microbatches on: the next step's, run ahead in an asynchronous stream).
    const int m = static_cast<int>(plan_.training().num_microbatches());
    const int at = step + microbatch / m;
    return torch::arange(kSeq + 1, torch::kLong).repeat({kMicroBatch, 1}) + 3 * (microbatch % m + 1) + 7 * at;
  }
  torch::Tensor forward(int stage, int microbatch, const torch::Tensor& input) override {
    calls.push_back(call('F', stage, microbatch));
    const auto& st = plan_.stages(stage);
    auto x =
        st.has_embedding() ? input.to(torch::kFloat32).unsqueeze(-1).expand({-1, -1, kHidden}) * 0.1 : input;
    for (uint32_t l = st.first_layer(); l < st.first_layer() + st.num_layers(); ++l)
      x = x * weights.at(static_cast<int>(l));
    if (st.has_lm_head()) x = x.mean(-1, true).expand({-1, -1, kVocab});
    return x;
  }
  torch::Tensor loss(int, const torch::Tensor& logits, const torch::Tensor& targets) override {
    return (logits.select(-1, 0) * targets.to(torch::kFloat32)).mean();
  }
  void before_backward(int stage, bool) override { calls.push_back(call('B', stage)); }
  void reduce_gradients() override { calls.push_back("ALLREDUCE"); }
  void optimizer_step(const StepTimes&) override {
    calls.push_back("OPTIM");
    // The weights never change; the step's gradients are taken and cleared for the next.
    step_gradients.clear();
    for (auto& [layer, w] : weights) {
      step_gradients[layer] = w.grad().defined() ? w.grad().item<double>() : 0.0;
      if (w.grad().defined()) w.mutable_grad().zero_();
    }
  }

  int step = 0;                          // the step being run (0-based)
  std::map<int, torch::Tensor> weights;  // layer -> weight
  std::map<int, double> step_gradients;  // layer -> the last OPTIM's gradient
  std::vector<std::string> calls;
  std::vector<std::string> scheduled;  // the calls this step's own schedule orders (chunked steps)

 private:
  const plan::Plan& plan_;
};

struct RunResult {
  double loss = 0;                                  // the step's mean loss (scaled microbatch losses, summed)
  std::map<int, double> gradients;                  // layer -> gradient of its weight
  std::vector<std::vector<std::string>> calls;      // per rank
  std::vector<std::vector<std::string>> scheduled;  // per rank: what its step schedule ordered (if any)
};

using ModelFactory = std::function<std::unique_ptr<FakeModel>(const plan::Plan&, int rank)>;

// `steps` steps of one stream (an asynchronous plan: its warm-up in the first, its drain in the
// last), each rank's model made by `make`: per step, the scaled loss and each layer's gradient
// summed over the ranks, and what each rank's model was called for.
std::vector<RunResult> run_stream(const plan::Plan& plan, int steps, const ModelFactory& make = {}) {
  const int n = static_cast<int>(plan.mesh().world_size());
  auto world = InProcessCommunicator::create_world(n);
  std::vector<RunResult> out(static_cast<size_t>(steps));
  for (auto& step : out) {
    step.calls.resize(static_cast<size_t>(n));
    step.scheduled.resize(static_cast<size_t>(n));
  }
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::mutex mu;
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        world[static_cast<size_t>(r)]->set_timeout(std::chrono::seconds(20));
        auto made = make ? make(plan, r) : std::make_unique<FakeModel>(plan, r);
        auto& model = *made;
        StageExecutor executor(plan, r, *world[static_cast<size_t>(r)], nullptr);
        for (int s = 0; s < steps; ++s) {
          model.step = s;
          const auto times = executor.run_step(model, {s == 0, s == steps - 1});
          std::lock_guard lock(mu);
          auto& step = out[static_cast<size_t>(s)];
          step.loss += times.loss_sum * executor.loss_scale();
          for (const auto& [layer, g] : model.step_gradients) step.gradients[layer] += g;
          step.calls[static_cast<size_t>(r)] = std::exchange(model.calls, {});
          step.scheduled[static_cast<size_t>(r)] = std::exchange(model.scheduled, {});
        }
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return out;
}

RunResult run_step(const plan::Plan& plan) { return run_stream(plan, 1).front(); }

plan::Plan plan_for(const std::string& schedule, int pp, bool async = false) {
  std::vector<std::string> sets = {"model.num_layers=" + std::to_string(kLayers),
                                   "model.hidden_size=" + std::to_string(kHidden),
                                   "model.num_attention_heads=2",
                                   "model.ffn_hidden_size=16",
                                   "model.seq_length=" + std::to_string(kSeq),
                                   "training.micro_batch_size=" + std::to_string(kMicroBatch),
                                   "training.global_batch_size=8",
                                   "parallel.world_size=" + std::to_string(pp),
                                   "parallel.pipeline_model_parallel_size=" + std::to_string(pp),
                                   "pipeline.schedule=" + schedule};
  if (schedule == "interleaved_1f1b" || schedule == "looped_bfs")
    sets.push_back("parallel.virtual_pipeline_model_parallel_size=2");
  if (async) sets.push_back("pipeline.async=true");
  return build_plan(parse_config("", "t", sets));
}

// What the plan orders a rank to compute: its F actions ("F{stage}.{microbatch}") and its B and
// I actions ("B{stage}"), in plan order, with ALLREDUCE and OPTIM.
std::vector<std::string> planned_calls(const plan::Plan& plan, int rank) {
  std::vector<std::string> out;
  for (const auto& a : plan.ranks(rank).actions()) {
    switch (a.kind()) {
      case plan::ACTION_F:
        out.push_back(call('F', static_cast<int>(a.stage()), static_cast<int>(a.microbatch())));
        break;
      case plan::ACTION_B:
      case plan::ACTION_I:
        out.push_back(call('B', static_cast<int>(a.stage())));
        break;
      case plan::ACTION_ALLREDUCE:
        out.push_back("ALLREDUCE");
        break;
      case plan::ACTION_OPTIM:
        out.push_back("OPTIM");
        break;
      default:
        break;
    }
  }
  return out;
}

TEST(StageExecutor, EverySynchronousScheduleRunsThePlansOrderAndEqualsOneStage) {
  const auto reference = run_step(plan_for("1f1b", 1));
  ASSERT_EQ(reference.gradients.size(), static_cast<size_t>(kLayers));
  for (const auto& name : schedule_names()) {
    if (name == "roundpipe") continue;  // stateless workers: node-shared memory, tested end to end
    SCOPED_TRACE(name);
    const auto plan = plan_for(name, 2);
    const auto result = run_step(plan);
    for (int r = 0; r < 2; ++r)
      EXPECT_EQ(result.calls[static_cast<size_t>(r)], planned_calls(plan, r)) << "rank " << r;
    EXPECT_NEAR(result.loss, reference.loss, 1e-6 * std::abs(reference.loss));
    ASSERT_EQ(result.gradients.size(), static_cast<size_t>(kLayers));
    for (const auto& [layer, g] : reference.gradients)
      EXPECT_NEAR(result.gradients.at(layer), g, 1e-5 * std::abs(g)) << "layer " << layer;
  }
}

// PipeDream-2BW's stream at pp=2 and 4: a step's window runs the next step's first forwards
// ahead (microbatches num_microbatches + m), and carry_ahead hands their state to that step as its
// microbatches m, whose backwards must find it. With weights that never change, every step then
// equals the one-stage run of its own batch; state handed to the wrong microbatch changes a loss
// or hangs a transfer (checked by renumbering it wrongly: the test fails).
TEST(StageExecutor, AnAsynchronousStreamCarriesTheNextStepsForwardsToTheirBackwards) {
  constexpr int kSteps = 4;
  const auto reference = run_stream(plan_for("1f1b", 1), kSteps);
  for (int pp : {2, 4}) {
    SCOPED_TRACE("pp=" + std::to_string(pp));
    const auto plan = plan_for("1f1b", pp, /*async=*/true);
    ASSERT_TRUE(plan.asynchronous());
    bool ahead = false;
    for (const auto& a : plan.ranks(0).actions()) ahead |= a.ahead();
    ASSERT_TRUE(ahead) << "the plan runs no forward ahead";
    const auto stream = run_stream(plan, kSteps);
    for (int s = 0; s < kSteps; ++s) {
      const auto& want = reference[static_cast<size_t>(s)];
      const auto& got = stream[static_cast<size_t>(s)];
      EXPECT_NEAR(got.loss, want.loss, 1e-6 * std::abs(want.loss)) << "step " << s;
      for (const auto& [layer, g] : want.gradients)
        EXPECT_NEAR(got.gradients.at(layer), g, 1e-5 * std::abs(g)) << "step " << s << ", layer " << layer;
    }
    // The steps differ (their batches do), so a step paired with another's activations shows.
    EXPECT_GT(std::abs(reference[0].loss - reference[1].loss), 1e-3 * std::abs(reference[0].loss));
  }
}

TEST(StageExecutor, ATransferNobodySendsTimesOutNamingThePeer) {
  const auto plan = plan_for("1f1b", 2);
  auto world = InProcessCommunicator::create_world(2);
  world[1]->set_timeout(std::chrono::milliseconds(100));
  FakeModel model(plan, 1);
  StageExecutor executor(plan, 1, *world[1], nullptr);  // rank 0 never runs: its activations never come
  try {
    executor.run_step(model);
    FAIL() << "no timeout";
  } catch (const TimeoutError& e) {
    EXPECT_EQ(e.peer(), 0) << e.what();
  }
}

// Chunked pipeline training's steps: the fake model hands each step its own schedule -- another
// number of chunks, other lengths, other groups (pipeline/exec/step_schedule.h) -- and a chunk of
// `tokens` tokens is one row of that many.
struct ChunkStep {
  std::vector<int> groups;
  std::vector<int64_t> tokens;
};

// The calls a step schedule orders: planned_calls(), and a recomputed chunk's forward again in its
// backward.
std::vector<std::string> scheduled_calls(const StepSchedule& schedule) {
  std::vector<std::string> out;
  for (const auto& a : schedule.actions) {
    plan::Plan one;
    *one.add_ranks()->add_actions() = a;
    for (auto& c : planned_calls(one, 0)) out.push_back(std::move(c));
    if (a.kind() == plan::ACTION_B && schedule.recompute.at(a.microbatch()))
      out.push_back(call('F', static_cast<int>(a.stage()), static_cast<int>(a.microbatch())));
  }
  return out;
}

class ChunkStepModel : public FakeModel {
 public:
  ChunkStepModel(const plan::Plan& plan, int rank, std::vector<ChunkStep> steps)
      : FakeModel(plan, rank), plan_(plan), rank_(rank), steps_(std::move(steps)) {}
  const StepSchedule* step_schedule() override {
    const auto& s = steps_.at(static_cast<size_t>(step));
    schedule_ = chunked_step_schedule(plan_, rank_, ChunkGroups(s.groups), s.tokens);
    scheduled = scheduled_calls(schedule_);
    return &schedule_;
  }
  torch::Tensor tokens(int microbatch) override { return chunk_tokens(step, microbatch); }
  torch::Tensor chunk_tokens(int at, int chunk) const {
    const int64_t n = steps_.at(static_cast<size_t>(at)).tokens.at(static_cast<size_t>(chunk));
    return torch::arange(n + 1, torch::kLong).unsqueeze(0) + 2 * chunk + 5 * at;
  }

 private:
  const plan::Plan& plan_;
  int rank_;
  std::vector<ChunkStep> steps_;
  StepSchedule schedule_;
};

plan::Plan chunked_plan(const std::string& schedule, int pp) {
  auto plan = plan_for(schedule, pp);
  plan.mutable_data()->add_pipeline_chunk_lengths(kSeq);  // the plan's own step: one chunk a row
  plan.mutable_data()->set_chunks_in_memory(1);
  return plan;
}

TEST(StageExecutor, ChunkedStepsRunTheirOwnSchedulesAndEqualOneStage) {
  const std::vector<ChunkStep> steps = {{{1, 3, 1}, {2, 3, 1, 2, 3}}, {{2, 1}, {1, 4, 2}}, {{1}, {3}}};
  for (const std::string schedule : {"1f1b", "gpipe"}) {
    for (int pp : {2, 4}) {
      SCOPED_TRACE(schedule + " pp=" + std::to_string(pp));
      const auto plan = chunked_plan(schedule, pp);
      const auto got = run_stream(plan, static_cast<int>(steps.size()), [&](const plan::Plan& p, int r) {
        return std::make_unique<ChunkStepModel>(p, r, steps);
      });
      for (size_t s = 0; s < steps.size(); ++s) {
        for (int r = 0; r < pp; ++r)
          EXPECT_EQ(got[s].calls[static_cast<size_t>(r)], got[s].scheduled[static_cast<size_t>(r)])
              << "step " << s << " rank " << r << " left its schedule's order";
      }
      // One stage over the same chunks: each chunk's loss, the mean over the step's chunks.
      const auto one = plan_for("1f1b", 1);
      ChunkStepModel whole(one, 0, steps);
      for (size_t s = 0; s < steps.size(); ++s) {
        whole.step = static_cast<int>(s);
        const int chunks = static_cast<int>(steps[s].tokens.size());
        double loss = 0;
        for (int c = 0; c < chunks; ++c) {
          const auto ids = whole.chunk_tokens(whole.step, c);
          const auto l =
              whole.loss(c, whole.forward(0, c, ids.slice(1, 0, ids.size(1) - 1)), ids.slice(1, 1)) /
              static_cast<double>(chunks);
          l.backward();
          loss += l.item<double>();
        }
        whole.optimizer_step({});
        EXPECT_NEAR(got[s].loss, loss, 1e-6 * std::abs(loss)) << "step " << s;
        for (const auto& [layer, g] : whole.step_gradients)
          EXPECT_NEAR(got[s].gradients.at(layer), g, 1e-5 * std::abs(g))
              << "step " << s << " layer " << layer;
      }
    }
  }
}

TEST(StageExecutor, AChunkedPlanNeedsEveryStepsScheduleAndOnlyItTakesOne) {
  auto world = InProcessCommunicator::create_world(2);
  const auto chunked = chunked_plan("1f1b", 2);
  FakeModel plain_model(chunked, 0);
  StageExecutor executor(chunked, 0, *world[0], nullptr);
  EXPECT_THROW(executor.run_step(plain_model), PlanError);
  const auto plain = plan_for("1f1b", 2);
  ChunkStepModel chunk_model(plain, 0, {{{1}, {3}}});
  StageExecutor plain_executor(plain, 0, *world[0], nullptr);
  EXPECT_THROW(plain_executor.run_step(chunk_model), PlanError);
}

}  // namespace
}  // namespace rondo
