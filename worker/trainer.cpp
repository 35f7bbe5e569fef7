// Trainer: setup, the step loop and checkpoints. Its state is Trainer::Impl (worker/trainer_impl.h);
// what a finished step and an evaluation report is in worker/trainer_reports.cpp.
#include "worker/trainer_impl.h"

namespace rondo {

namespace fs = std::filesystem;

void Trainer::Impl::setup() {
  const auto& t = plan.training();
  const auto& m = plan.model();
  at::set_num_threads(static_cast<int>(t.num_threads()));
  device = training_device(t, world.size(), local_rank >= 0 ? local_rank : rank);
  if (plan.comms().timing_recorder()) {
    recorder = std::make_unique<TimingRecorder>(plan.comms().recorder_capacity());
  }
  // Every collective a rank can wait in is recorded: a hang inside the step's statistics must show
  // in the flight dump as well as one inside the gradient reduction.
  world_coll = std::make_unique<Collectives>(world, recorder.get());
  world_coll->set_group("world", {});
  stats_coll = std::make_unique<Collectives>(world, recorder.get());
  stats_coll->set_group("stats", {});
  split_corpus();
  build_dp_group();
  build_cp_group();
  moe = MoeTraining::make(plan, rank, world, recorder.get());  // collective with expert parallelism
  dp_coll->set_emulated_link_bandwidth(plan.comms().emulated_link_gbps() * 1e9);
  std::vector<int> everyone(static_cast<size_t>(world.size()));
  for (size_t i = 0; i < everyone.size(); ++i) everyone[i] = static_cast<int>(i);
  p2p_comm = world.split(everyone);

  windows = std::make_unique<SampleWindows>(
      corpus, SampleWindows::Options{.seed = t.seed(),
                                     .seq_length = static_cast<uint64_t>(m.seq_length()),
                                     .global_batch_size = t.global_batch_size(),
                                     .pack = plan.data().pack(),
                                     .pad = plan.data().pad()});
  batches = std::make_unique<StepBatches>(plan, me, *windows, device);
  torch::manual_seed(t.seed());
  weights = make_rank_weights({plan, rank, device, world, *dp_coll, recorder.get(),
                               moe ? moe->runtime() : nullptr, moe ? moe->expert_dp() : nullptr});
  if (moe) moe->choose_degrees(plan, weights->model(), rank, run_dir);  // collective over the expert group
  const auto& c = me.coords();
  updates = make_step_updates(*weights, *stats_coll, world, recorder.get(),
                              c.dp() == 0 && c.cp() == 0 && c.tp() == 0);
  executor =
      std::make_unique<StageExecutor>(plan, rank, *p2p_comm, recorder.get(), weights->shared_replica());
  if (moe) moe->runtime()->set_loss_scale(executor->loss_scale());
  if (plan.data().chunk_size() > 0) {
    chunked = std::make_unique<ChunkedStepModel>(plan, rank, *this, *batches, weights->model(),
                                                 executor->loss_scale());
  }
  if (plan.hdp().enabled())  // collective: a communicator for the rings
    hdp = std::make_unique<HdpStepModel>(plan, *this, corpus, *batches, weights->model(), world,
                                         recorder.get());
  schedule = schedule_of_plan(plan);
  if (t.eval_interval() > 0) {  // collective: a communicator for the forward transfers
    validation = std::make_unique<Validation>(plan, rank, validation_corpus, world, recorder.get(), device,
                                              context_parallel());
  }
  checkpointer =
      std::make_unique<Checkpointer>((fs::path(run_dir) / "checkpoints").string(), plan, rank, *world_coll);
  if (rank == 0) {
    events = std::make_unique<LineAppender>((fs::path(run_dir) / "events.jsonl").string());
    log->info("model: {}, {} layers, hidden {}; data {} ({} tokens)", m.family(), m.num_layers(),
              m.hidden_size(), corpus.source(), corpus.size());
  }
  log->info("{}", weights->describe());
  if (t.emulate_compute()) {
    log->info(
        "compute is emulated (training.emulate_compute): each F/B/I/W sleeps for its predicted "
        "duration; transfers, reductions and the optimizer are real; losses read 0");
  }
}

void Trainer::Impl::split_corpus() {
  const auto& weights = plan.data().split();
  if (weights.empty()) return;
  const auto documents = corpus.num_documents();
  auto parts = rondo::split_corpus(corpus, {weights.begin(), weights.end()}, plan.model().seq_length() + 1);
  corpus = std::move(parts.training);
  validation_corpus = std::move(parts.validation);
  if (rank == 0)
    log->info("data.split: {} tokens train, {} validate ({} of {} documents)", corpus.size(),
              validation_corpus.size(), validation_corpus.num_documents(), documents);
}

void Trainer::Impl::build_dp_group() {
  // Creating a sub-communicator is collective over the world: every rank takes part for every
  // data-parallel group, in the plan's order. With context parallelism the gradients are summed
  // over the data- and context-parallel ranks together (each computed a share of the rows).
  const auto kind = gradient_group_kind(plan.mesh());
  const plan::Group* mine = nullptr;
  for (const auto& g : plan.mesh().groups()) {
    if (g.kind() != kind) continue;
    std::vector<int> ranks(g.ranks().begin(), g.ranks().end());
    if (static_cast<int>(ranks.size()) == world.size()) {
      mine = &g;
      break;  // one group spanning the world: reuse it
    }
    auto sub = world.split(ranks);
    if (sub) {
      dp_comm = std::move(sub);
      mine = &g;
    }
  }
  if (!mine) throw PlanError("rank " + std::to_string(rank) + " is in no data-parallel group of the plan");
  std::vector<int> ranks(mine->ranks().begin(), mine->ranks().end());
  live_rings = std::make_unique<LiveRings>(ranks, rank);
  dp_coll = std::make_unique<Collectives>(dp_comm ? *dp_comm : world, recorder.get());
  // Data-parallel groups are disjoint: the first member names one.
  std::string name = "dp@" + std::to_string(ranks.front());
  if (mine->ring_size() > 0) {
    // The plan's ring order (world ranks) as the group's members.
    std::vector<int> order;
    for (uint32_t r : mine->ring()) {
      order.push_back(
          static_cast<int>(std::find(ranks.begin(), ranks.end(), static_cast<int>(r)) - ranks.begin()));
    }
    dp_coll->set_ring_order(std::move(order));
  }
  dp_coll->set_group(std::move(name), dp_comm ? std::move(ranks) : std::vector<int>{});
}

void Trainer::Impl::build_cp_group() {
  const int64_t cp = plan.mesh().cp();
  if (cp <= 1) return;
  std::vector<int> members;
  for (const auto& g : plan.mesh().groups()) {  // collective: every rank, every group, plan order
    if (g.kind() != plan::GROUP_CP) continue;
    auto sub = world.split(std::vector<int>(g.ranks().begin(), g.ranks().end()));
    if (!sub) continue;
    cp_comm = std::move(sub);  // its index order is the cp coordinate: the ring
    members.assign(g.ranks().begin(), g.ranks().end());
  }
  if (!cp_comm)
    throw PlanError("rank " + std::to_string(rank) + " is in no context-parallel group of the plan");
  cp_comm->set_timeout(world.timeout());
  cp_ring = std::make_unique<RecordedTransfers>(*cp_comm, recorder.get(), std::move(members), "ring");
  context = {zigzag_indices(plan.model().seq_length(), cp, me.coords().cp()), cp_ring.get()};
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

StepSums Trainer::Impl::local_sums(const StepTimes& so_far) {
  const auto& c = me.coords();
  StepSums sums;
  sums.stage_f.assign(so_far.stage_f.size(), 0.0);
  sums.stage_b.assign(so_far.stage_b.size(), 0.0);
  sums.stage_w.assign(so_far.stage_w.size(), 0.0);
  sums.stage_b_lead.assign(so_far.stage_b_lead.size(), 0.0);
  if (hdp)
    sums.targets = hdp->rank_targets();
  else if (c.pp() == 0 && c.tp() == 0 && c.cp() == 0)
    sums.targets = batches->step_targets();
  if (chunked) {
    const auto stats = chunked->take_step_stats();
    sums.chunks = static_cast<double>(stats.chunks);
    sums.chunks_recomputed = static_cast<double>(stats.recomputed_chunks);
    step_longest_sequence = static_cast<double>(stats.longest_sequence);
  }
  sums.loss = so_far.loss_sum * executor->loss_scale();
  sums.compute_s = so_far.compute_s;
  if (moe) sums.moe = moe->take_step_values();
  // Stateless and asynchronous: the update's thread adds the norm once it has the gradients.
  sums.grad_norm_squared = weights->gradient_norm_squared(step - 1).value_or(0.0);
  if (c.dp() == 0 && c.cp() == 0 && c.tp() == 0) {
    sums.stage_f = so_far.stage_f;
    sums.stage_b = so_far.stage_b;
    sums.stage_w = so_far.stage_w;
    sums.stage_b_lead = so_far.stage_b_lead;
  }
  return sums;
}

void Trainer::Impl::optimizer_step(const StepTimes& so_far) {
  updates->optimizer_step(step - 1, lr, local_sums(so_far));
}

Trainer::Trainer(const plan::Plan& plan, std::string run_dir, Communicator& world, int local_rank)
    : impl_(std::make_unique<Impl>(plan, std::move(run_dir), world, local_rank)) {
  impl_->setup();
}

Trainer::~Trainer() = default;

void Trainer::request_checkpoint() { impl_->checkpoint_requested = true; }

void Trainer::request_stop() { impl_->stop_requested = true; }

void Trainer::request_rings(uint64_t version, std::vector<std::vector<int>> rings) {
  impl_->live_rings->receive(version, std::move(rings));
}

void Trainer::Impl::apply_rings(const LiveRings::Change& change, int64_t at) {
  // Every rank decides alike (the version is agreed, the rings the same on every rank).
  const auto refuse = [&](const std::string& why) {
    log->warn("gradient rings version {} not applied: {}", change.version, why);
  };
  if (!change.refused.empty()) return refuse(change.refused);
  if (weights->delayed()) return refuse("an asynchronous stream reduces on its own thread");
  if (!weights->set_ring_order(change.order)) return refuse("this run mode keeps the plan's rings");
  dp_coll->set_ring_order(change.order);
  if (rank == 0) {
    log->info("gradients reduced round the rings of version {} from step {}", change.version, at + 1);
    event({{"event", "rings_applied"},
           {"version", change.version},
           {"from_step", at + 1},
           {"rings", change.rings}});
  }
}

void Trainer::on_step(std::function<void(report::StepReport&&)> callback) {
  impl_->on_step = std::move(callback);
}

const TimingRecorder* Trainer::recorder() const { return impl_->recorder.get(); }

std::pair<int64_t, bool> Trainer::Impl::resume() {
  const auto& ck = plan.checkpoint();
  const auto manifest =
      ck.resume() ? checkpointer->load(ck.resume_step(), *weights->model(), weights->checkpointed_optimizer())
                  : std::nullopt;
  if (!manifest && !ck.load().empty()) {  // the run's own checkpoint comes first
    const size_t set = read_weights_files({(std::filesystem::path(ck.load()) / "model.safetensors").string()},
                                          *weights->model(), /*exact=*/false);
    if (rank == 0) {
      log->info("started from the weights in {} ({} parameters on rank 0, fresh optimizer)", ck.load(), set);
      event({{"event", "initial_weights"}, {"dir", ck.load()}});
    }
    return {0, true};
  }
  if (!manifest) return {0, false};
  if (rank == 0) {
    log->info("resumed from checkpoint step-{} ({} samples consumed)", manifest->step,
              manifest->consumed_samples);
    event({{"event", "resumed"}, {"step", manifest->step}});
  }
  return {manifest->step, true};
}

std::shared_ptr<MetricsWriter::Step> Trainer::Impl::run_one_step(int64_t at, int64_t first, bool exiting) {
  auto report = std::make_shared<MetricsWriter::Step>();
  report->before = ResourceUsage::now();
  const auto t0 = Clock::now();
  step = at;
  batches->set_step(at);
  lr = learning_rate(plan.training(), at);
  report->times =
      executor->run_step(step_model(), {at == first, at == plan.training().train_iters() || exiting});
  report->step = at;
  report->lr = lr;
  report->step_s = seconds_since(t0);
  report->after = ResourceUsage::now();
  return report;
}

StepMaxima Trainer::Impl::local_maxima(const MetricsWriter::Step& report) {
  // Memory and page faults of the worst rank, and the span of the step's compute over all ranks
  // (negated start: one max serves both), in a small max-allreduce outside the step's time.
  return {.max_rss_mb = report.after.max_rss_mb,
          .page_faults = report.after.minor_faults - report.before.minor_faults,
          .first_compute_ns_negated = -static_cast<double>(report.times.first_compute_ns),
          .last_compute_ns = static_cast<double>(report.times.last_compute_ns),
          .longest_sequence = step_longest_sequence,
          .busiest_compute_s = report.times.compute_s,
          .checkpoint_requested = checkpoint_requested.exchange(false) ? 1.0 : 0.0,
          .stop_requested = stop_requested.load() ? 1.0 : 0.0,
          .rings_received_negated = -static_cast<double>(live_rings->received())};
}

void Trainer::Impl::checkpoint_if_due(int64_t at, bool stopping) {
  const auto& ck = plan.checkpoint();
  const bool periodic = ck.interval() > 0 && at % static_cast<int64_t>(ck.interval()) == 0;
  const bool final = at == plan.training().train_iters() && ck.interval() > 0;
  const bool requested = std::exchange(agreed_checkpoint, false);
  if (!(periodic || stopping || final || requested)) return;
  updates->drain();
  checkpointer->save(at, windows->consumed_samples(static_cast<uint64_t>(at)), *weights->model(),
                     weights->checkpointed_optimizer());
  if (rank == 0) event({{"event", "checkpoint"}, {"step", at}, {"requested", requested}});
}

int64_t Trainer::run() {
  auto& s = *impl_;
  const auto& t = s.plan.training();
  const int64_t train_iters = t.train_iters();
  const auto [start_step, loaded] = s.resume();
  if (start_step >= train_iters) {
    if (s.rank == 0) s.log->info("already trained to step {} of {}: nothing to do", start_step, train_iters);
    return start_step;
  }
  s.first_step = start_step;
  s.weights->before_first_step(loaded);
  if (s.rank == 0) s.open_metrics(start_step);
  // A step is done once its statistics are summed (asynchronous: by the update's thread, during
  // the next step).
  s.updates->begin_run(start_step, [&s](const MetricsWriter::Step& r) { s.step_done(r); });

  int64_t step = start_step;
  while (step < train_iters) {
    ++step;
    if (s.recorder && s.plan.comms().timing_recorder_blocks() > 0)
      s.recorder->set_recording(s.records_step(step));
    const bool exiting =
        (t.exit_interval() > 0 && step % static_cast<int64_t>(t.exit_interval()) == 0) || step >= s.stop_at;
    const auto report = s.run_one_step(step, start_step + 1, exiting);
    // Validation on the step's updated weights: a synchronous step has them now (and reports the
    // evaluation with itself); an asynchronous stream once it has drained.
    const bool evaluating = s.validation && s.validation->due(step, exiting);
    if (evaluating && !s.weights->delayed()) s.evaluate(step);
    s.updates->end_step(step - 1, s.lr, s.local_maxima(*report), report);
    if (evaluating && s.weights->delayed()) {
      s.updates->drain();
      s.evaluate(step);
    }
    // A stop agreed at step k: a synchronous run ends there; an asynchronous stream drains first.
    if (s.agreed_stop && s.stop_at == std::numeric_limits<int64_t>::max())
      s.stop_at = s.updates->stop_step(step);
    const bool stopping = exiting || step >= s.stop_at;
    s.checkpoint_if_due(step, stopping);
    if (stopping && step < train_iters) {
      s.log_stop(step);
      break;
    }
  }
  s.updates->drain();
  if (s.metrics) s.metrics->log_summary();
  return step;
}

}  // namespace rondo
