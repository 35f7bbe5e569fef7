#include "worker/trainer.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/line_appender.h"
#include "common/logging.h"
#include "comms/collectives.h"
#include "control/flight_records.h"
#include "data/sample_windows.h"
#include "data/token_corpus.h"
#include "pipeline/exec/plan_schedule.h"
#include "pipeline/exec/stage_executor.h"
#include "pipeline/exec/weight_grad_store.h"
#include "pipeline/schedule_simulator.h"
#include "proto/plan.pb.h"
#include "proto/plan_names.h"
#include "proto/report.pb.h"
#include "worker/checkpointer.h"
#include "worker/chunked_microbatch.h"
#include "worker/delayed_update.h"
#include "worker/gradient_reduction.h"
#include "worker/learning_rate.h"
#include "worker/metrics_writer.h"
#include "worker/optimizer_factory.h"
#include "worker/pipeline_chunks.h"
#include "worker/staged_model.h"
#include "worker/step_statistics.h"

namespace rondo {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

struct Trainer::Impl : StepModel {
  const plan::Plan& plan;
  std::string run_dir;
  Communicator& world;
  int rank;
  int local_rank;  // the launcher's, -1 when unknown
  const plan::RankPlan& me;
  std::shared_ptr<spdlog::logger> log = logging::get("worker");

  std::unique_ptr<TimingRecorder> recorder;
  std::unique_ptr<Communicator> dp_comm;
  std::unique_ptr<Communicator> p2p_comm;  // pipeline transfers (a duplicate of the world)
  std::unique_ptr<Collectives> world_coll;
  std::unique_ptr<Collectives> dp_coll;
  std::unique_ptr<Collectives>
      stats_coll;  // per-step statistics, recorded like the rest (a hang there must show)
  // The gradients' sum over the data-parallel group (workers bound to stages; after run()'s
  // checkpoint load, whose new parameters carry its hooks).
  std::unique_ptr<GradientReduction> reduction;
  void build_reduction();
  // The weight version this step computes on (asynchronous: two alternate; otherwise 0).
  int step_version() const { return delayed ? DelayedUpdate::version(step - 1) : 0; }

  TokenCorpus corpus;
  std::unique_ptr<SampleWindows> windows;  // what each sample reads, over `corpus`
  torch::Device device{torch::kCPU};
  // Stateless workers (RoundPipe): the replica's node-shared weights, gradients and optimizer
  // state, which the model's parameters view (declared first: it outlives the model).
  std::unique_ptr<SharedReplicaState> shared;
  std::vector<std::pair<torch::Tensor, int64_t>> shared_params;  // parameter, offset in the shared order
  StagedModel model{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  torch::Tensor flat;  // every parameter's gradient (views into it)
  // Asynchronous pipelines (plan.asynchronous): `model` holds the optimizer's weights, the newest;
  // step t computes on versions[t % 2] (0-based t), whose gradients are version_grads (flat, like
  // `flat`); `delayed` updates `model` from them one step late (worker/delayed_update.h).
  std::array<StagedModel, 2> versions{StagedModel{nullptr}, StagedModel{nullptr}};
  std::array<torch::Tensor, 2> version_grads;
  std::unique_ptr<DelayedUpdate> delayed;
  void setup_async(const ModelShape& shape, const std::vector<StageLayers>& local);
  DelayCorrection delay_correction() const;
  void log_async() const;
  // Stateless workers, asynchronous: the owned stages' summed gradients, which the update reads
  // while the next step's backwards accumulate into `flat`.
  torch::Tensor owned_grads;
  // The version the shared model's parameters view (stateless workers; -1: none yet).
  int bound_version = -1;
  void bind_version(int version);
  int64_t first_step = 0;  // 0-based index of the run's first step (after a resume)
  // The gradients this step's backwards accumulate: `flat`, or its compute version's.
  torch::Tensor step_grads() const {
    if (shared) return delayed ? owned_grads : flat;
    return delayed ? version_grads[static_cast<size_t>(step_version())] : flat;
  }
  // What the executor calls microbatch `microbatch` of this step: ids from num_microbatches on are
  // the next step's (run ahead in an asynchronous stream). The 0-based step it belongs to and
  // its number there.
  std::pair<int64_t, int> step_microbatch(int microbatch) const {
    const int m = static_cast<int>(plan.training().num_microbatches()) *
                  std::max(1, plan.data().pipeline_chunk_lengths_size());
    return {step - 1 + microbatch / m, microbatch % m};
  }
  // The model microbatch `microbatch` computes on (its step's weight version when asynchronous).
  StagedModel& compute_model(int microbatch) {
    if (!delayed) return model;
    const int64_t at = step_microbatch(microbatch).first;
    if (shared) {
      // The owners put each stage's version in place (the executor waited for it).
      bind_version(DelayedUpdate::version(at));
      return model;
    }
    if (at >= step) delayed->wait();  // the next step's version is the update in flight's
    return versions[static_cast<size_t>(DelayedUpdate::version(at))];
  }
  int64_t num_grad_elements = 0;
  std::unique_ptr<StageExecutor> executor;
  std::unique_ptr<Checkpointer> checkpointer;
  std::unique_ptr<MetricsWriter> metrics;  // rank 0's, from run() on
  std::unique_ptr<LineAppender> events;

  // The step being executed and what its OPTIM learned (asynchronous: the last step whose
  // statistics were summed).
  int64_t step = 0;
  double lr = 0;
  // The last step's statistics summed over the world (by OPTIM; asynchronous: on the update's thread).
  StepSums summed;
  double grad_norm() const { return std::sqrt(summed.grad_norm_squared); }
  PipelineSchedule schedule;  // the plan's, for the predicted bubble (rank 0)

  Impl(const plan::Plan& p, std::string dir, Communicator& w, int local)
      : plan(p),
        run_dir(std::move(dir)),
        world(w),
        rank(w.rank()),
        local_rank(local),
        me(p.ranks(w.rank())),
        corpus(load_corpus(p.data(), p.model().seq_length() + 1)) {}

  static TokenCorpus load_corpus(const plan::DataSpec& data, uint64_t min_tokens) {
    const auto& ln = data.lognormal();
    return TokenCorpus::load(data.path(), name_of(data.format()), min_tokens,
                             {ln.documents(), ln.mu(), ln.sigma(), ln.max_length(), ln.seed()});
  }

  void setup();
  // Stateless workers: the whole model over node-shared weights (see SharedReplicaState).
  void setup_stateless(const ModelShape& shape);
  // After a checkpoint load replaced the parameters' storage: share them again.
  void rebind_shared();
  // What a checkpoint saves as the optimizer: with a weight delay, also both weight versions.
  torch::optim::Optimizer& checkpointed_optimizer() { return delayed ? *delayed : *optimizer; }
  void build_dp_group();
  void event(const nlohmann::json& e);
  // The simulator's bubble for the plan's schedule with the op durations this step measured.
  double predicted_bubble(const StepSums& sums) const;

  // StepModel: what the executor calls back.
  torch::Tensor tokens(int microbatch) override;
  torch::Tensor forward(int stage, int microbatch, const torch::Tensor& input) override {
    if (pipeline_chunks) return chunk_forward(stage, microbatch, input);
    return compute_model(microbatch)
        ->forward_stage(stage, input, plan.data().pack() ? packing(microbatch).documents : torch::Tensor());
  }
  torch::Tensor loss(int microbatch, const torch::Tensor& logits, const torch::Tensor& targets) override {
    return model->loss(logits, counted_targets(microbatch, targets));
  }
  // data.chunk_size: the microbatch's sequences in chunks (worker/chunked_microbatch.h).
  torch::Tensor forward_loss(int stage, int microbatch, const torch::Tensor& input,
                             const torch::Tensor& targets) override {
    if (pipeline_chunks) return chunk_loss(stage, microbatch, input, targets);
    if (plan.data().chunk_size() == 0) return StepModel::forward_loss(stage, microbatch, input, targets);
    auto chunked = std::make_unique<ChunkedMicrobatch>(
        model, stage, input, counted_targets(microbatch, targets),
        plan.data().pack() ? packing(microbatch).documents : torch::Tensor(), chunking);
    auto loss = chunked->forward();
    // The one that backpropagates (with full recomputation, B reruns F's graph-less forward).
    if (torch::GradMode::is_enabled()) step_chunks.push_back(std::move(chunked));
    return loss;
  }
  // With data.pack a token's successor in another document is no target (-100: ignored); with
  // data.pad neither is a target outside the row's document.
  torch::Tensor counted_targets(int microbatch, const torch::Tensor& targets) {
    return masks_targets() ? targets.masked_fill(packing(microbatch).crossing, -100) : targets;
  }
  bool masks_targets() const { return windows->masks_targets(); }
  ChunkingOptions chunking;
  // Chunked training with pipeline parallelism: the schedule's microbatches are chunks
  // (worker/pipeline_chunks.h); schedule microbatch m is chunk m % chunks of row-microbatch
  // m / chunks, which tokens(), packing() and the loss translate.
  std::unique_ptr<PipelineChunks> pipeline_chunks;
  torch::Tensor chunk_forward(int stage, int microbatch, const torch::Tensor& input);
  // The chunk's summed cross-entropy scaled so that the executor's mean over the schedule's
  // microbatches is the row-microbatch's mean over its targets.
  torch::Tensor chunk_loss(int stage, int microbatch, const torch::Tensor& input,
                           const torch::Tensor& targets);
  int row_microbatch(int microbatch) const {
    return pipeline_chunks ? microbatch / pipeline_chunks->chunks() : microbatch;
  }
  // This step's so far, counted on the first stage: chunks, recomputed ones, the longest sequence.
  double pipeline_chunk_count = 0, pipeline_chunks_recomputed = 0, pipeline_longest_sequence = 0;
  std::vector<std::unique_ptr<ChunkedMicrobatch>> step_chunks;  // this step's, for their statistics
  double step_longest_sequence = 0;                             // this rank's
  // data.pack: microbatch `microbatch`'s document ids [mb, seq] and the targets that cross into
  // the next document [mb, seq]; data.pad: the targets outside the row's document. From the same
  // windows tokens() reads (cached for the step).
  struct Packing {
    torch::Tensor documents, crossing;
  };
  const Packing& packing(int microbatch);
  // The 0-based step and the index in its global batch of row `row` of microbatch `microbatch`.
  std::pair<uint64_t, uint64_t> sample_of(int microbatch, int64_t row) const {
    const auto [at, mb] = step_microbatch(microbatch);
    return {static_cast<uint64_t>(at), me.microbatch_first_sample(mb) + static_cast<uint64_t>(row)};
  }
  std::map<int, Packing> packings;  // this step's
  int64_t packings_step = -1;
  torch::Tensor stage_gradients(int stage) override {
    const auto r = shared->stage(stage);
    return flat.narrow(0, r.offset, r.count);
  }
  void before_backward(int stage, bool last) override;
  void after_backward(int stage, bool last) override;
  void reduce_gradients() override;
  void optimizer_step(const StepTimes& so_far) override;

  // The step's statistics as this rank saw them (main thread), to be summed over the world.
  StepSums local_sums(const StepTimes& so_far);
  // Sums and maxima over the world, in place: one small library allreduce each (a ring would take
  // 2(n-1) sequential exchanges).
  static void sum_over(Collectives& over, StepSums& sums);
  static void max_over(Collectives& over, StepMaxima& maxima);
  // Clipping and the optimizer step on the optimizer's gradients.
  void update_weights(const torch::Tensor& grads, double step_lr);
  std::atomic<bool> checkpoint_requested{false}, stop_requested{false};
  std::function<void(report::StepReport&&)> on_step;
  TimingRecorder::ReportCursor reported;  // the recorder's records already sent in a step report
  // The coordinator's launch number (RONDO_ATTEMPT): rows of a restarted attempt say so, and the
  // newest row of a step is the one that counts.
  const int attempt = [] {
    const char* a = std::getenv("RONDO_ATTEMPT");
    return a ? std::atoi(a) : 0;
  }();
  // This rank's report of a finished step, with the flight records since the last one.
  report::StepReport step_report(const MetricsWriter::Step& r, double tokens_per_s, int64_t train_iters);
  // Rank 0: the metrics writer, with the fields the run's parts add to each row.
  void open_metrics(int64_t first_step);
  // Asynchronous: the step's sums (OPTIM) wait for finish_async_step(), which sums them and the
  // worst values over the world and updates the weights on the update's thread.
  StepSums async_sums;
  std::unique_ptr<Communicator> async_comm;
  std::unique_ptr<Collectives> async_stats;
  // Stateless workers: the owned stages' reduction over the data-parallel replicas, on the update's
  // thread (recorded too: the recorder locks).
  std::unique_ptr<Collectives> async_dp;
  void finish_async_step(StepMaxima worst, const std::shared_ptr<MetricsWriter::Step>& report);
};

void Trainer::Impl::setup() {
  const auto& t = plan.training();
  const auto& m = plan.model();
  if (const auto& d = plan.data(); d.chunk_size() > 0) {
    if (d.chunks_in_memory() < 1 || (plan.stages_size() != 1 && d.pipeline_chunk_lengths_size() == 0)) {
      throw PlanError("plan: chunked training needs data.chunks_in_memory >= 1 (got " +
                      std::to_string(d.chunks_in_memory()) +
                      ") and one stage holding the whole model or data.pipeline_chunk_lengths (got " +
                      std::to_string(plan.stages_size()) + " stages)");
    }
    chunking = {d.chunk_size(), chunk_balance_from_name(name_of(d.chunk_balance())), d.chunks_in_memory()};
  }
  at::set_num_threads(static_cast<int>(t.num_threads()));
  if (t.device() == plan::DEVICE_CUDA) {
    if (!torch::cuda::is_available()) {
      throw ConfigError("training.device", "cuda requested but this LibTorch has no usable GPU");
    }
    // The launcher's local rank picks the device; the global rank only when none was discovered.
    device = torch::Device(
        torch::kCUDA, static_cast<int>((local_rank >= 0 ? local_rank : rank) % torch::cuda::device_count()));
  }
  if (plan.comms().timing_recorder()) {
    recorder = std::make_unique<TimingRecorder>(plan.comms().recorder_capacity());
  }
  // Every collective a rank can wait in is recorded: a hang inside the step's statistics must show
  // in the flight dump as well as one inside the gradient reduction.
  world_coll = std::make_unique<Collectives>(world, recorder.get());
  stats_coll = std::make_unique<Collectives>(world, recorder.get());
  build_dp_group();
  dp_coll->set_emulated_link_bandwidth(plan.comms().emulated_link_gbps() * 1e9);
  std::vector<int> everyone(static_cast<size_t>(world.size()));
  for (size_t i = 0; i < everyone.size(); ++i) everyone[i] = static_cast<int>(i);
  p2p_comm = world.split(everyone);
  if (plan.asynchronous()) {
    // The update's thread sums each step's statistics over a communicator of its own.
    async_comm = world.split(everyone);
    async_stats = std::make_unique<Collectives>(*async_comm, recorder.get());  // the recorder locks
  }

  windows = std::make_unique<SampleWindows>(
      corpus, SampleWindows::Options{.seed = t.seed(),
                                     .seq_length = static_cast<uint64_t>(m.seq_length()),
                                     .global_batch_size = t.global_batch_size(),
                                     .pack = plan.data().pack(),
                                     .pad = plan.data().pad()});
  torch::manual_seed(t.seed());
  const ModelShape shape{m.num_layers(),
                         m.hidden_size(),
                         m.num_attention_heads(),
                         m.ffn_hidden_size(),
                         m.vocab_size(),
                         m.seq_length(),
                         m.recompute_granularity() == plan::RECOMPUTE_SELECTIVE,
                         t.cpu_kernels() == plan::CPU_KERNELS_FUSED};
  if (plan.stateless_workers()) {
    setup_stateless(shape);
  } else {
    std::vector<StageLayers> local;
    for (uint32_t index : me.stages()) {
      const auto& st = plan.stages(static_cast<int>(index));
      local.push_back({static_cast<int>(st.index()), static_cast<int>(st.first_layer()),
                       static_cast<int>(st.num_layers()), st.has_embedding(), st.has_lm_head()});
    }
    model = StagedModel(model_family(m.family()), shape, local, t.seed());
    model->to(device);

    // Gradients live in one flat buffer so that a step needs one allreduce and no copies.
    for (const auto& p : model->parameters()) num_grad_elements += p.numel();
    flat = torch::zeros({num_grad_elements}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
    int64_t offset = 0;
    for (auto& p : model->parameters()) {
      p.mutable_grad() = flat.narrow(0, offset, p.numel()).view_as(p);
      offset += p.numel();
    }
    OptimizerParameters over{.params = model->parameters(), .grads = flat};
    for (const auto& item : model->named_parameters()) over.named.emplace_back(item.key(), item.value());
    over.stacked_matrices = model_family(m.family()).stacked_matrices;
    optimizer = make_optimizer(t, std::move(over));
    if (plan.asynchronous()) setup_async(shape, local);
    if (const auto& lengths = plan.data().pipeline_chunk_lengths(); !lengths.empty()) {
      try {
        pipeline_chunks =
            std::make_unique<PipelineChunks>(model, std::vector<int64_t>(lengths.begin(), lengths.end()));
      } catch (const std::invalid_argument& e) {
        throw PlanError(std::string("plan data.pipeline_chunk_lengths: ") + e.what());
      }
    }
  }
  executor = std::make_unique<StageExecutor>(plan, rank, *p2p_comm, recorder.get(), shared.get());
  schedule = schedule_of_plan(plan);
  checkpointer =
      std::make_unique<Checkpointer>((fs::path(run_dir) / "checkpoints").string(), plan, rank, *world_coll);
  if (rank == 0) {
    events = std::make_unique<LineAppender>((fs::path(run_dir) / "events.jsonl").string());
    log->info("model: {}, {} layers, hidden {}; data {} ({} tokens)", m.family(), m.num_layers(),
              m.hidden_size(), corpus.source(), corpus.size());
  }
  std::string held;
  if (shared) {
    for (int k = 0; k < shared->stage_count(); ++k) {
      if (shared->owns(k)) held += (held.empty() ? "" : ", ") + std::to_string(k);
    }
    log->info(
        "this rank holds {} parameters: backward stage(s) {} (stateless worker: it updates these, and runs "
        "any stage's task on the {} parameters its pipeline replica shares in node memory)",
        shared->owned().count, held, shared->elements());
  } else {
    for (const auto& st : model->stages()) held += (held.empty() ? "" : ", ") + std::to_string(st.index);
    log->info("this rank holds {} parameters: stage(s) {}", num_grad_elements, held);
  }
  if (t.emulate_compute()) {
    log->info(
        "compute is emulated (training.emulate_compute): each F/B/I/W sleeps for its predicted "
        "duration; transfers, reductions and the optimizer are real; losses read 0");
  }
}

DelayCorrection Trainer::Impl::delay_correction() const {
  const auto correction = plan.delay_correction();
  if (correction == plan::DELAY_CORRECTION_UNSPECIFIED || name_of(correction).empty()) {
    throw PlanError("plan field delay_correction = " + std::to_string(correction) +
                    " is not one this worker runs (a plan from another rondo?)");
  }
  return correction == plan::DELAY_CORRECTION_ERROR_FEEDBACK        ? DelayCorrection::kErrorFeedback
         : correction == plan::DELAY_CORRECTION_WEIGHT_PREDICTION   ? DelayCorrection::kWeightPrediction
         : correction == plan::DELAY_CORRECTION_VELOCITY_PREDICTION ? DelayCorrection::kVelocityPrediction
                                                                    : DelayCorrection::kNone;
}

void Trainer::Impl::log_async() const {
  log->info(
      "asynchronous pipeline (PipeDream-2BW): step t computes on the weights before step t-1's update; "
      "the update overlaps the next step (two weight versions, correction {})",
      name_of(plan.delay_correction()));
}

void Trainer::Impl::setup_async(const ModelShape& shape, const std::vector<StageLayers>& local) {
  const auto correction = delay_correction();
  std::array<std::vector<torch::Tensor>, 2> params;
  for (size_t k = 0; k < versions.size(); ++k) {
    versions[k] = StagedModel(model_family(plan.model().family()), shape, local, plan.training().seed());
    versions[k]->to(device);
    version_grads[k] = torch::zeros_like(flat);
    int64_t offset = 0;
    for (auto& p : versions[k]->parameters()) {
      p.mutable_grad() = version_grads[k].narrow(0, offset, p.numel()).view_as(p);
      offset += p.numel();
      params[k].push_back(p);
    }
  }
  delayed = std::make_unique<DelayedUpdate>(*optimizer, model->parameters(), std::move(params), correction);
  if (rank == 0) log_async();
}

void Trainer::Impl::setup_stateless(const ModelShape& shape) {
  const auto& t = plan.training();
  if (device.is_cuda())
    throw ConfigError("training.device", "roundpipe's stateless workers run on the CPU only so far");
  // The pipeline replica: this rank's pipeline group, in pipeline order (a collective split).
  std::unique_ptr<Communicator> replica;
  for (const auto& g : plan.mesh().groups()) {
    if (g.kind() != plan::GROUP_PP) continue;
    std::vector<int> ranks(g.ranks().begin(), g.ranks().end());
    std::sort(ranks.begin(), ranks.end(),
              [&](int a, int b) { return plan.ranks(a).coords().pp() < plan.ranks(b).coords().pp(); });
    auto sub = world.split(ranks);
    if (sub) replica = std::move(sub);
  }
  if (!replica) throw PlanError("rank " + std::to_string(rank) + " is in no pipeline group of the plan");
  const int p = replica->size();
  if (plan.backward_stages_size() < p) {
    throw PlanError("stateless workers: " + std::to_string(plan.backward_stages_size()) +
                    " backward stages cannot give each of " + std::to_string(p) + " workers one to update");
  }

  model = StagedModel(model_family(plan.model().family()), shape, stateless_model_layers(plan), t.seed());
  // Backward stage k's parameters: those of its atoms, in model order.
  std::vector<std::vector<torch::Tensor>> stage_params;
  std::vector<int64_t> elements;
  for (const auto& st : plan.backward_stages()) {
    const auto [first, end] = stateless_stage_atoms(plan, st);
    auto& ps = stage_params.emplace_back();
    for (int atom = first; atom < end; ++atom) {
      for (const auto& param : model->stage_parameters(atom)) ps.push_back(param);
    }
    int64_t n = 0;
    for (const auto& param : ps) n += param.numel();
    elements.push_back(n);
  }
  shared = std::make_unique<SharedReplicaState>(
      std::move(replica), elements, static_cast<int>(t.num_microbatches()),
      std::vector<int64_t>{static_cast<int64_t>(t.micro_batch_size()), plan.model().seq_length(),
                           plan.model().hidden_size()},
      plan.asynchronous() ? 2 : 1);
  num_grad_elements = shared->elements();
  flat = torch::zeros({num_grad_elements}, torch::kFloat32);
  // Private gradients in the shared order (the executor moves each backward's into the shared
  // ones). Every worker initialised the same weights: the owners copy theirs in, all view them.
  std::vector<torch::Tensor> owned;
  for (int k = 0; k < shared->stage_count(); ++k) {
    int64_t offset = shared->stage(k).offset;
    for (auto& param : stage_params[static_cast<size_t>(k)]) {
      param.mutable_grad() = flat.narrow(0, offset, param.numel()).view_as(param);
      if (shared->owns(k)) owned.push_back(param);
      shared_params.push_back({param, offset});
      offset += param.numel();
    }
  }
  rebind_shared();
  const auto range = shared->owned();
  if (!plan.asynchronous()) {
    optimizer =
        make_optimizer(t, {.params = owned,
                           .grads = flat.narrow(0, range.offset, range.count),
                           .flat_params = shared->parameters().narrow(0, range.offset, range.count),
                           .moments = shared->optimizer_state().narrow(1, range.offset, range.count)});
    return;
  }
  // Asynchronous: the owner's optimizer updates a private copy of its stages (the newest
  // weights) from their summed gradients; both shared versions start from it (W(-1) = W(0)).
  owned_grads = torch::zeros({range.count}, torch::kFloat32);
  auto master = torch::zeros({range.count}, torch::kFloat32);
  std::vector<torch::Tensor> copies;
  for (const auto& param : owned) copies.push_back(param.detach().clone());
  optimizer = make_optimizer(t, {.params = std::move(copies),
                                 .grads = owned_grads,
                                 .flat_params = master,
                                 .moments = shared->optimizer_state().narrow(1, range.offset, range.count)});
  std::array<std::vector<torch::Tensor>, 2> params;
  for (int k = 0; k < 2; ++k)
    params[static_cast<size_t>(k)] = {shared->parameters(k).narrow(0, range.offset, range.count)};
  delayed = std::make_unique<DelayedUpdate>(*optimizer, std::vector<torch::Tensor>{master}, std::move(params),
                                            delay_correction());
  if (dp_coll->comm().size() > 1) async_dp = std::make_unique<Collectives>(dp_coll->comm(), recorder.get());
  shared->replica().native_barrier();  // every owner's versions are in place
  if (rank == 0) log_async();
}

void Trainer::Impl::rebind_shared() {
  torch::NoGradGuard no_grad;
  // Owners first write what they hold (after a load: the restored values; asynchronous runs
  // restore both versions with the optimizer's state instead) ...
  const auto owned = shared->owned();
  for (int v = 0; v < shared->versions() && !delayed; ++v) {
    for (auto& [param, at] : shared_params) {
      if (at < owned.offset || at >= owned.offset + owned.count) continue;
      auto view = shared->parameters(v).narrow(0, at, param.numel()).view_as(param);
      if (view.data_ptr() != param.data_ptr()) view.copy_(param);
    }
  }
  // ... then every worker views the shared values.
  shared->replica().native_barrier();
  bound_version = -1;
  bind_version(0);
}

void Trainer::Impl::bind_version(int version) {
  if (version == bound_version) return;
  torch::NoGradGuard no_grad;
  for (auto& [param, at] : shared_params) {
    param.set_data(shared->parameters(version).narrow(0, at, param.numel()).view_as(param));
  }
  bound_version = version;
}

void Trainer::Impl::build_dp_group() {
  // Creating a sub-communicator is collective over the world: every rank takes part for every
  // data-parallel group, in the plan's order.
  for (const auto& g : plan.mesh().groups()) {
    if (g.kind() != plan::GROUP_DP) continue;
    std::vector<int> ranks(g.ranks().begin(), g.ranks().end());
    if (static_cast<int>(ranks.size()) == world.size()) {
      dp_coll = std::make_unique<Collectives>(world, recorder.get());
      return;  // one group spanning the world: reuse it
    }
    auto sub = world.split(ranks);
    if (sub) dp_comm = std::move(sub);
  }
  if (!dp_comm) throw PlanError("rank " + std::to_string(rank) + " is in no data-parallel group of the plan");
  dp_coll = std::make_unique<Collectives>(*dp_comm, recorder.get());
}

void Trainer::Impl::build_reduction() {
  if (shared) return;
  // The models whose backwards produce the gradients, with their buffers: the model, or the two
  // weight versions of an asynchronous run.
  std::vector<GradientReduction::Source> sources;
  if (delayed) {
    for (size_t k = 0; k < versions.size(); ++k) sources.push_back({versions[k], version_grads[k]});
  } else {
    sources.push_back({model, flat});
  }
  reduction = std::make_unique<GradientReduction>(plan.comms(), *dp_coll, recorder.get(),
                                                  world.host_buffers(), std::move(sources));
  if (rank == 0 && reduction->overlapped())
    log->info("gradient reduction overlapped with the backward: {}", reduction->describe());
}

double Trainer::Impl::predicted_bubble(const StepSums& sums) const {
  const double m = schedule.microbatches;
  StageCosts costs;
  for (double f : sums.stage_f) costs.f.push_back(f / m);
  for (size_t i = 0; i < sums.stage_b.size(); ++i) {
    costs.b.push_back((sums.stage_b[i] + sums.stage_w[i]) / m);
    costs.w.push_back(sums.stage_w[i] / m);
  }
  for (double lead : sums.stage_b_lead) costs.b_lead.push_back(lead / m);
  return steady_state_bubble(schedule, simulate_schedule(schedule, costs));
}

void Trainer::Impl::event(const nlohmann::json& e) {
  if (!events) return;
  nlohmann::json line = e;
  line["time"] = static_cast<double>(TimingRecorder::wall_ns()) * 1e-9;
  events->append(line.dump());
}

torch::Tensor Trainer::Impl::chunk_forward(int stage, int microbatch, const torch::Tensor& input) {
  const auto& documents =
      plan.data().pack() ? packing(row_microbatch(microbatch)).documents : torch::Tensor();
  if (model->stage(stage).has_embedding) {
    // Counted once per chunk, where it enters the pipeline; a recomputed one in its graph-less forward.
    if (!torch::GradMode::is_enabled() || !executor->recomputes(microbatch)) ++pipeline_chunk_count;
    if (!torch::GradMode::is_enabled()) ++pipeline_chunks_recomputed;
    const double longest = documents.defined() ? document_positions(documents).max().item<double>() + 1
                                               : static_cast<double>(plan.model().seq_length());
    pipeline_longest_sequence = std::max(pipeline_longest_sequence, longest);
  }
  return pipeline_chunks->forward(stage, microbatch, input, documents);
}

torch::Tensor Trainer::Impl::chunk_loss(int stage, int microbatch, const torch::Tensor& input,
                                        const torch::Tensor& targets) {
  const int row = row_microbatch(microbatch), j = microbatch % pipeline_chunks->chunks();
  torch::Tensor counted = targets;
  double row_targets = static_cast<double>(plan.training().micro_batch_size() * plan.model().seq_length());
  if (plan.data().pack()) {
    const auto& crossing = packing(row).crossing;
    const int64_t b = pipeline_chunks->begin(j);
    counted = targets.masked_fill(crossing.slice(1, b, b + pipeline_chunks->length(j)), -100);
    row_targets = static_cast<double>(crossing.numel() - crossing.sum().item<int64_t>());
  }
  const auto logits = chunk_forward(stage, microbatch, input);
  const auto sum = torch::nn::functional::cross_entropy(
      logits.view({-1, logits.size(-1)}), counted.reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum).ignore_index(-100));
  return sum * (static_cast<double>(pipeline_chunks->chunks()) / std::max(row_targets, 1.0));
}

const Trainer::Impl::Packing& Trainer::Impl::packing(int microbatch) {
  if (packings_step != step) {
    packings.clear();
    packings_step = step;
  }
  auto it = packings.find(microbatch);
  if (it != packings.end()) return it->second;
  const int64_t mb = plan.training().micro_batch_size(), len = plan.model().seq_length();
  auto documents = torch::empty({mb, len}, torch::kLong);
  auto crossing = torch::empty({mb, len}, torch::kBool);
  static_assert(sizeof(bool) == sizeof(uint8_t));
  for (int64_t i = 0; i < mb; ++i) {
    const auto [at, sample] = sample_of(microbatch, i);
    windows->documents(at, sample, documents.data_ptr<int64_t>() + i * len,
                       reinterpret_cast<uint8_t*>(crossing.data_ptr<bool>()) + i * len);
  }
  return packings.emplace(microbatch, Packing{documents.to(device), crossing.to(device)}).first->second;
}

torch::Tensor Trainer::Impl::tokens(int microbatch) {
  const int64_t mb = plan.training().micro_batch_size();
  int64_t len = plan.model().seq_length() + 1;
  uint64_t begin = 0;  // a pipeline chunk: its tokens of each row, and the next one (its last target)
  if (pipeline_chunks) {
    const int j = microbatch % pipeline_chunks->chunks();
    begin = static_cast<uint64_t>(pipeline_chunks->begin(j));
    len = pipeline_chunks->length(j) + 1;
  }
  auto out = torch::empty({mb, len}, torch::kLong);
  for (int64_t i = 0; i < mb; ++i) {
    const auto [at, sample] = sample_of(row_microbatch(microbatch), i);
    windows->tokens(at, sample, begin, static_cast<size_t>(len),
                    static_cast<int64_t>(plan.model().vocab_size()), out.data_ptr<int64_t>() + i * len);
  }
  return out.to(device);
}

void Trainer::Impl::before_backward(int stage, bool last) {
  if (reduction) reduction->before_backward(step_version(), stage, last);
}

void Trainer::Impl::after_backward(int stage, bool last) {
  if (reduction) reduction->after_backward(step_version(), stage, last);
}

void Trainer::Impl::reduce_gradients() {
  if (shared) {
    // The stages this worker owns: their summed gradients, from the shared memory, then over the
    // data-parallel replicas (the other gradients here are zero).
    if (delayed) return;  // the update's thread takes them (finish_async_step())
    const auto r = shared->owned();
    auto mine = flat.narrow(0, r.offset, r.count);
    mine.copy_(shared->gradients().narrow(0, r.offset, r.count));
    if (dp_coll->comm().size() > 1) {
      dp_coll->allreduce(mine.data_ptr(), static_cast<size_t>(r.count), DType::kFloat32, ReduceOp::kSum);
    }
  } else {
    reduction->reduce(step_version(), step_grads());
  }
}

StepSums Trainer::Impl::local_sums(const StepTimes& so_far) {
  const auto& c = me.coords();
  StepSums sums;
  sums.stage_f.assign(so_far.stage_f.size(), 0.0);
  sums.stage_b.assign(so_far.stage_b.size(), 0.0);
  sums.stage_w.assign(so_far.stage_w.size(), 0.0);
  sums.stage_b_lead.assign(so_far.stage_b_lead.size(), 0.0);
  if (c.pp() == 0 && c.tp() == 0 && c.cp() == 0) {
    const double row_targets =
        static_cast<double>(plan.training().micro_batch_size() * plan.model().seq_length());
    for (int m = 0; m < static_cast<int>(plan.training().num_microbatches()); ++m) {
      if (!masks_targets()) {
        sums.targets += row_targets;
        continue;
      }
      const auto& crossing = packing(m).crossing;
      sums.targets += static_cast<double>(crossing.numel() - crossing.sum().item<int64_t>());
    }
  }
  sums.chunks = pipeline_chunk_count;
  sums.chunks_recomputed = pipeline_chunks_recomputed;
  step_longest_sequence = pipeline_longest_sequence;
  pipeline_chunk_count = pipeline_chunks_recomputed = pipeline_longest_sequence = 0;
  if (pipeline_chunks) pipeline_chunks->clear();
  for (const auto& chunked : step_chunks) {
    const auto& st = chunked->stats();
    sums.chunks += static_cast<double>(st.chunks);
    sums.chunks_recomputed += static_cast<double>(st.recomputed_chunks);
    step_longest_sequence = std::max(step_longest_sequence, static_cast<double>(st.longest_sequence));
  }
  step_chunks.clear();
  sums.loss = so_far.loss_sum * executor->loss_scale();
  sums.compute_s = so_far.compute_s;
  if (c.dp() == 0 && c.cp() == 0 && c.tp() == 0) {
    // Stateless and asynchronous: the update's thread adds the norm once it has the gradients.
    const double norm = shared && delayed ? 0.0 : step_grads().norm(2).item<double>();
    sums.grad_norm_squared = norm * norm;
    sums.stage_f = so_far.stage_f;
    sums.stage_b = so_far.stage_b;
    sums.stage_w = so_far.stage_w;
    sums.stage_b_lead = so_far.stage_b_lead;
  }
  return sums;
}

void Trainer::Impl::sum_over(Collectives& over, StepSums& sums) {
  auto values = sums.to_values();
  over.native_allreduce(values.data(), values.size(), DType::kFloat64, ReduceOp::kSum);
  sums.from_values(values);
}

void Trainer::Impl::max_over(Collectives& over, StepMaxima& maxima) {
  auto values = maxima.to_values();
  over.native_allreduce(values.data(), values.size(), DType::kFloat64, ReduceOp::kMax);
  maxima = StepMaxima::from_values(values);
}

void Trainer::Impl::update_weights(const torch::Tensor& grads, double step_lr) {
  // `grads`, the optimizer's gradients, hold the step's, summed over the data-parallel ranks.
  const double clip = plan.training().clip_grad();
  if (const double norm = grad_norm(); clip > 0 && norm > clip) grads.mul_(clip / (norm + 1e-6));
  for (auto& group : optimizer->param_groups()) group.options().set_lr(step_lr);
  optimizer->step();
  grads.zero_();
}

void Trainer::Impl::optimizer_step(const StepTimes& so_far) {
  auto sums = local_sums(so_far);
  if (delayed) {
    // Summed and applied after the window, off the critical path (finish_async_step()).
    async_sums = std::move(sums);
    return;
  }
  sum_over(*stats_coll, sums);
  summed = std::move(sums);
  update_weights(flat, lr);
}

void Trainer::Impl::finish_async_step(StepMaxima worst, const std::shared_ptr<MetricsWriter::Step>& report) {
  // On the update's thread, over a communicator of its own, while the next step computes: a
  // world-wide sum here would otherwise hold every rank at each step's end, draining the stream.
  const int64_t executor_step = step - 1 - first_step;  // SharedReplicaState's numbering
  const auto update = [this, sums = std::move(async_sums), worst, report, grads = step_grads(), step_lr = lr,
                       executor_step]() mutable {
    if (shared) {
      // The owned stages' sums over the pipeline replica, then over the data-parallel replicas;
      // this step's turns then close and the next step's open.
      const auto r = shared->owned();
      shared->wait_owned(executor_step, std::chrono::duration<double>(plan.comms().timeout_s()));
      owned_grads.copy_(shared->gradients().narrow(0, r.offset, r.count));
      shared->finish_step(executor_step);
      if (async_dp) {
        async_dp->allreduce(owned_grads.data_ptr(), static_cast<size_t>(r.count), DType::kFloat32,
                            ReduceOp::kSum);
      }
      const auto& c = me.coords();
      if (c.dp() == 0 && c.cp() == 0 && c.tp() == 0)
        sums.grad_norm_squared = std::pow(owned_grads.norm(2).item<double>(), 2);
    }
    sum_over(*async_stats, sums);
    max_over(*async_stats, worst);
    summed = std::move(sums);
    report->worst = worst;
    if (shared) {
      update_weights(grads, step_lr);  // the optimizer reads owned_grads itself
    } else {
      flat.copy_(grads);
      grads.zero_();
      update_weights(flat, step_lr);
    }
  };
  // Stateless workers: the other workers may compute on the owned stages' new version once it is
  // written (the executor's steps are counted from the run's first).
  std::function<void()> written;
  if (shared) written = [this, executor_step] { shared->mark_updated(executor_step); };
  delayed->begin(step - 1, update, written);
}

Trainer::Trainer(const plan::Plan& plan, std::string run_dir, Communicator& world, int local_rank)
    : impl_(std::make_unique<Impl>(plan, std::move(run_dir), world, local_rank)) {
  impl_->setup();
}

Trainer::~Trainer() = default;

void Trainer::request_checkpoint() { impl_->checkpoint_requested = true; }

void Trainer::request_stop() { impl_->stop_requested = true; }

void Trainer::on_step(std::function<void(report::StepReport&&)> callback) {
  impl_->on_step = std::move(callback);
}

report::StepReport Trainer::Impl::step_report(const MetricsWriter::Step& r, double tokens_per_s,
                                              int64_t train_iters) {
  report::StepReport out;
  out.set_step(r.step);
  out.set_train_iters(train_iters);
  out.set_step_time_s(r.step_s);
  out.set_lr(r.lr);
  out.set_tokens_per_s(tokens_per_s);
  if (rank == 0) {  // the sums live there
    out.set_loss(summed.loss);
    out.set_grad_norm(grad_norm());
  }
  out.set_data_s(r.times.data_s);
  out.set_forward_s(r.times.forward_s);
  out.set_backward_s(r.times.backward_s);
  out.set_allreduce_s(r.times.allreduce_s);
  out.set_optimizer_s(r.times.optimizer_s);
  out.set_p2p_wait_s(r.times.recv_wait_s + r.times.send_wait_s);
  out.set_rss_mb(r.after.max_rss_mb);
  out.set_time_ns(TimingRecorder::wall_ns());
  if (recorder) {
    for (const auto& record : recorder->take_closed(reported)) to_report(record, out.add_collectives());
  }
  return out;
}

void Trainer::Impl::open_metrics(int64_t first_step) {
  const auto& t = plan.training();
  metrics = std::make_unique<MetricsWriter>(
      MetricsWriter::Options{
          .path = (fs::path(run_dir) / "metrics.jsonl").string(),
          .first_step = first_step,
          .train_iters = static_cast<int64_t>(t.train_iters()),
          .log_interval = static_cast<int64_t>(t.log_interval()),
          .tokens_per_step = static_cast<int64_t>(t.global_batch_size()) * plan.model().seq_length(),
          .attempt = attempt,
          .world_size = world.size(),
          .stream = delayed != nullptr,
          .predicted_bubble = [this](const StepSums& sums) { return predicted_bubble(sums); }},
      log);
  if (delayed) {
    metrics->add_fields([this](const MetricsWriter::Step&, nlohmann::json& row) {
      row["async"] = true;
      row["delay_correction"] = name_of(plan.delay_correction());
      row["delayed_update_s"] = delayed->last_update_s();
      row["delayed_update_wait_s"] = delayed->take_waited_s();
    });
  }
  if (plan.data().chunk_size() > 0) {
    metrics->add_fields([this](const MetricsWriter::Step& r, nlohmann::json& row) {
      row["chunks"] = summed.chunks;
      row["chunks_recomputed"] = summed.chunks_recomputed;
      row["longest_sequence"] = r.worst.longest_sequence;
    });
  }
  if (reduction) {
    reduction->add_metrics(*metrics,
                           [this](int64_t at) { return delayed ? DelayedUpdate::version(at - 1) : 0; });
  }
}

const TimingRecorder* Trainer::recorder() const { return impl_->recorder.get(); }

int64_t Trainer::run() {
  auto& s = *impl_;
  const auto& t = s.plan.training();
  const auto& ck = s.plan.checkpoint();
  const int64_t train_iters = t.train_iters();
  const int64_t tokens_per_step = static_cast<int64_t>(t.global_batch_size()) * s.plan.model().seq_length();

  int64_t start_step = 0;
  if (ck.resume()) {
    if (auto manifest = s.checkpointer->load(ck.resume_step(), *s.model, s.checkpointed_optimizer())) {
      if (s.shared) s.rebind_shared();
      start_step = manifest->step;
      if (s.rank == 0) {
        s.log->info("resumed from checkpoint step-{} ({} samples consumed)", start_step,
                    manifest->consumed_samples);
        s.event({{"event", "resumed"}, {"step", start_step}});
      }
    }
  }
  if (start_step >= train_iters) {
    if (s.rank == 0) s.log->info("already trained to step {} of {}: nothing to do", start_step, train_iters);
    return start_step;
  }
  s.first_step = start_step;
  // After the checkpoint load: loading replaces the parameters' storage, and with it the gradient
  // accumulators that the reducer's hooks attach to.
  s.build_reduction();

  if (s.rank == 0) s.open_metrics(start_step);
  // Requests from outside the loop, agreed through a step's maxima: every rank sees the same.
  bool agreed_checkpoint = false, agreed_stop = false;
  // Once a step's statistics are summed (asynchronous: by the update's thread, during the next
  // step): its report to the coordinator, and rank 0's metrics row.
  const auto step_done = [&](const MetricsWriter::Step& r) {
    agreed_checkpoint |= r.worst.checkpoint_requested > 0;
    agreed_stop |= r.worst.stop_requested > 0;
    if (s.on_step) s.on_step(s.step_report(r, static_cast<double>(tokens_per_step) / r.step_s, train_iters));
    if (!s.metrics) return;
    if (!std::isfinite(s.summed.loss))
      throw Error("loss is " + std::to_string(s.summed.loss) + " at step " + std::to_string(r.step));
    s.metrics->write(r, s.summed);
  };
  // Asynchronous: the step whose statistics and update are on the update's thread.
  std::shared_ptr<MetricsWriter::Step> pending;
  const auto finish_pending = [&] {
    if (!s.delayed) return;
    // A stateless worker's own additions first: other owners' update threads wait for them.
    if (s.shared && pending) {
      s.shared->flush_own(pending->step - 1 - s.first_step,
                          std::chrono::duration<double>(s.plan.comms().timeout_s()));
    }
    s.delayed->wait();
    if (pending) step_done(*pending);
    pending.reset();
  };

  // A stop agreed at step k: a synchronous step ends there; an asynchronous stream drains first,
  // so its last step is k + 1.
  int64_t stop_at = std::numeric_limits<int64_t>::max();
  int64_t step = start_step;
  while (step < train_iters) {
    ++step;
    auto report = std::make_shared<MetricsWriter::Step>();
    report->before = ResourceUsage::now();
    const auto t0 = Clock::now();
    s.step = step;
    s.lr = learning_rate(t, step);
    const bool exiting =
        (t.exit_interval() > 0 && step % static_cast<int64_t>(t.exit_interval()) == 0) || step >= stop_at;
    report->times = s.executor->run_step(s, {step == start_step + 1, step == train_iters || exiting});
    report->step = step;
    report->lr = s.lr;
    report->step_s = seconds_since(t0);

    // Memory and page faults of the worst rank, and the span of the step's compute over all ranks
    // (negated start: one max serves both), in a small max-allreduce outside the step's time.
    report->after = ResourceUsage::now();
    const auto& times = report->times;
    StepMaxima worst{.max_rss_mb = report->after.max_rss_mb,
                     .page_faults = report->after.minor_faults - report->before.minor_faults,
                     .first_compute_ns_negated = -static_cast<double>(times.first_compute_ns),
                     .last_compute_ns = static_cast<double>(times.last_compute_ns),
                     .longest_sequence = s.step_longest_sequence,
                     .checkpoint_requested = s.checkpoint_requested.exchange(false) ? 1.0 : 0.0,
                     .stop_requested = s.stop_requested.load() ? 1.0 : 0.0};
    if (s.delayed) {
      finish_pending();
      s.finish_async_step(worst, report);
      pending = report;
    } else {
      s.max_over(*s.stats_coll, worst);
      report->worst = worst;
      step_done(*report);
    }

    if (agreed_stop && stop_at == std::numeric_limits<int64_t>::max()) stop_at = s.delayed ? step + 1 : step;
    const bool stopping = exiting || step >= stop_at;
    const bool periodic = ck.interval() > 0 && step % static_cast<int64_t>(ck.interval()) == 0;
    const bool final = step == train_iters && ck.interval() > 0;
    const bool requested = std::exchange(agreed_checkpoint, false);
    if (periodic || stopping || final || requested) {
      finish_pending();
      s.checkpointer->save(step, s.windows->consumed_samples(static_cast<uint64_t>(step)), *s.model,
                           s.checkpointed_optimizer());
      if (s.rank == 0) s.event({{"event", "checkpoint"}, {"step", step}, {"requested", requested}});
    }
    if (stopping && step < train_iters) {
      if (s.rank == 0) {
        const bool by_request = step >= stop_at;
        if (by_request)
          s.log->info("stopping at step {} as requested (coordinator or signal)", step);
        else
          s.log->info("exit_interval {} reached at step {}: stopping", t.exit_interval(), step);
        s.event({{"event", by_request ? "stop_requested" : "exit_interval"}, {"step", step}});
      }
      break;
    }
  }
  finish_pending();
  if (s.metrics) s.metrics->log_summary();
  return step;
}

}  // namespace rondo
