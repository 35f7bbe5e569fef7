#include "worker/trainer_impl.h"

namespace rondo {

namespace fs = std::filesystem;

report::StepReport Trainer::Impl::step_report(const MetricsWriter::Step& r, double tokens_per_s,
                                              int64_t train_iters) {
  report::StepReport out;
  out.set_step(r.step);
  out.set_train_iters(train_iters);
  out.set_step_time_s(r.step_s);
  out.set_lr(r.lr);
  out.set_tokens_per_s(tokens_per_s);
  if (rank == 0) {  // the sums live there
    out.set_loss(updates->summed().loss);
    out.set_grad_norm(updates->grad_norm());
    if (hdp) *out.mutable_hdp() = hdp->step_report(r.worst.busiest_compute_s, mean_compute_s(), true);
    if (moe) *out.mutable_moe() = moe->step_report(updates->summed().moe);
    if (unreported_validation)
      std::exchange(unreported_validation, std::nullopt)->to_report(*out.mutable_validation());
  }
  out.set_data_s(r.times.data_s);
  out.set_forward_s(r.times.forward_s);
  out.set_backward_s(r.times.backward_s);
  out.set_allreduce_s(r.times.allreduce_s);
  out.set_optimizer_s(r.times.optimizer_s);
  out.set_p2p_wait_s(r.times.recv_wait_s + r.times.send_wait_s);
  out.set_rss_mb(r.after.max_rss_mb);
  out.set_run_queue_wait_s(std::max(0.0, r.after.run_queue_s - r.before.run_queue_s));
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
          .step_tokens = hdp ? std::function<double()>([this] { return step_tokens(); }) : nullptr,
          .attempt = attempt,
          .world_size = world.size(),
          .stream = weights->delayed() != nullptr,
          .predicted_bubble = [this](const StepSums& sums) { return predicted_bubble(sums); },
          .tensorboard_dir = t.tensorboard() ? (fs::path(run_dir) / "tensorboard").string() : ""},
      log);
  if (auto* delayed = weights->delayed()) {
    metrics->add_fields([this, delayed](const MetricsWriter::Step&, nlohmann::json& row) {
      row["async"] = true;
      row["delay_correction"] = name_of(plan.delay_correction());
      row["delayed_update_s"] = delayed->last_update_s();
      row["delayed_update_wait_s"] = delayed->take_waited_s();
    });
  }
  if (plan.data().chunk_size() > 0) {
    metrics->add_fields([this](const MetricsWriter::Step& r, nlohmann::json& row) {
      row["chunks"] = updates->summed().chunks;
      row["chunks_recomputed"] = updates->summed().chunks_recomputed;
      row["longest_sequence"] = r.worst.longest_sequence;
    });
  }
  if (moe) {
    metrics->add_fields([this](const MetricsWriter::Step&, nlohmann::json& row) {
      moe->metrics_fields(updates->summed().moe, row);
    });
  }
  if (hdp) {
    metrics->add_fields([this](const MetricsWriter::Step& r, nlohmann::json& row) {
      hdp->metrics_fields(r.worst.busiest_compute_s, mean_compute_s(), row);
    });
  }
  if (plan.comms().timing_recorder_blocks() > 0) {
    metrics->add_fields([this](const MetricsWriter::Step& r, nlohmann::json& row) {
      row["recorded"] = records_step(r.step);
    });
  }
  weights->add_metrics(*metrics);
}

void Trainer::Impl::step_done(const MetricsWriter::Step& r) {
  // Its report to the coordinator, and rank 0's metrics row.
  agreed_checkpoint |= r.worst.checkpoint_requested > 0;
  agreed_stop |= r.worst.stop_requested > 0;
  if (const auto change = live_rings->agree(static_cast<uint64_t>(-r.worst.rings_received_negated)))
    apply_rings(*change, r.step);
  const auto& t = plan.training();
  if (on_step) on_step(step_report(r, step_tokens() / r.step_s, t.train_iters()));
  if (!metrics) return;
  const auto& summed = updates->summed();
  if (!std::isfinite(summed.loss))
    throw Error("loss is " + std::to_string(summed.loss) + " at step " + std::to_string(r.step));
  metrics->write(r, summed);
}

void Trainer::Impl::evaluate(int64_t at) {
  const auto result = validation->evaluate(at, weights->model(), *stats_coll);
  if (moe) moe->take_step_values();  // the router's load of the validation batches is no step's
  if (rank != 0) return;
  metrics->write_evaluation({.step = at,
                             .loss = result.loss,
                             .targets = result.targets,
                             .seconds = result.seconds,
                             .iters = static_cast<int64_t>(plan.training().eval_iters())});
  unreported_validation = result;
}

void Trainer::Impl::log_stop(int64_t at) {
  if (rank != 0) return;
  const bool by_request = at >= stop_at;
  if (by_request)
    log->info("stopping at step {} as requested (coordinator or signal)", at);
  else
    log->info("exit_interval {} reached at step {}: stopping", plan.training().exit_interval(), at);
  event({{"event", by_request ? "stop_requested" : "exit_interval"}, {"step", at}});
}

}  // namespace rondo
