#include "worker/metrics_writer.h"

#include <algorithm>
#include <cmath>

#include "common/duration_format.h"

namespace rondo {

namespace {

// A row's numbers as TensorBoard tags: its own fields by name, an object's as "name/field".
std::vector<std::pair<std::string, double>> scalars_of(const nlohmann::json& row) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& [key, value] : row.items()) {
    if (key == "step" || key == "attempt") continue;
    if (value.is_number()) out.emplace_back(key, value.get<double>());
    if (!value.is_object()) continue;
    for (const auto& [field, inner] : value.items()) {
      if (inner.is_number()) out.emplace_back(key + "/" + field, inner.get<double>());
    }
  }
  return out;
}

}  // namespace

MetricsWriter::MetricsWriter(Options options, std::shared_ptr<spdlog::logger> log)
    : options_(std::move(options)),
      log_(std::move(log)),
      out_(options_.path),
      tensorboard_(options_.tensorboard_dir.empty()
                       ? nullptr
                       : std::make_unique<TensorBoardWriter>(options_.tensorboard_dir)),
      last_step_(options_.first_step) {}

void MetricsWriter::add_fields(Fields fields) { fields_.push_back(std::move(fields)); }

void MetricsWriter::write(const Step& r, const StepSums& summed) {
  const auto& times = r.times;
  const auto& worst = r.worst;
  const double grad_norm = std::sqrt(summed.grad_norm_squared);
  const double tokens =
      options_.step_tokens ? options_.step_tokens() : static_cast<double>(options_.tokens_per_step);
  const double tps = tokens / r.step_s;
  nlohmann::json row = {{"step", r.step},
                        {"attempt", options_.attempt},
                        {"loss", summed.loss},
                        {"grad_norm", grad_norm},
                        {"lr", r.lr},
                        {"tokens", tokens},
                        {"step_time_s", r.step_s},
                        {"tokens_per_s", tps},
                        {"targets", summed.targets},
                        {"data_s", times.data_s},
                        {"forward_s", times.forward_s},
                        {"backward_s", times.backward_s},
                        {"p2p_wait_s", times.recv_wait_s + times.send_wait_s},
                        {"allreduce_s", times.allreduce_s},
                        {"optimizer_s", times.optimizer_s},
                        {"max_rss_mb", worst.max_rss_mb},
                        {"page_faults", worst.page_faults},
                        {"cpu_user_s", r.after.user_s - r.before.user_s},
                        {"cpu_sys_s", r.after.sys_s - r.before.sys_s},
                        {"run_queue_wait_s", std::max(0.0, r.after.run_queue_s - r.before.run_queue_s)}};
  double span_s = worst.compute_span_s();
  if (options_.stream && previous_compute_end_ns_ > 0) {
    span_s = (worst.last_compute_ns - previous_compute_end_ns_) * 1e-9;
  }
  previous_compute_end_ns_ = worst.last_compute_ns;
  if (span_s > 0) {
    row["compute_span_s"] = span_s;
    row["bubble_fraction"] = std::max(0.0, 1.0 - summed.compute_s / (span_s * options_.world_size));
    if (options_.predicted_bubble) row["bubble_fraction_predicted"] = options_.predicted_bubble(summed);
  }
  for (const auto& add : fields_) add(r, row);
  out_.append(row.dump());
  if (tensorboard_) tensorboard_->scalars(r.step, scalars_of(row));

  elapsed_s_ += r.step_s;
  tokens_ += tokens;
  if (r.step == options_.first_step + 1) first_loss_ = summed.loss;
  last_loss_ = summed.loss;
  last_step_ = r.step;
  if (r.step % options_.log_interval == 0 || r.step == options_.train_iters) {
    const double per_step = elapsed_s_ / static_cast<double>(r.step - options_.first_step);
    log_->info("step {}/{} | loss {:.4f} | grad norm {:.3f} | lr {:.2e} | {:.0f} tokens/s | ETA {}", r.step,
               options_.train_iters, summed.loss, grad_norm, r.lr, tps,
               format_duration(per_step * static_cast<double>(options_.train_iters - r.step)));
  }
}

void MetricsWriter::write_evaluation(const Evaluation& e) {
  const double perplexity = std::exp(e.loss);
  const nlohmann::json row = {{"step", e.step},           {"attempt", options_.attempt},
                              {"val_loss", e.loss},       {"val_perplexity", perplexity},
                              {"val_targets", e.targets}, {"eval_iters", e.iters},
                              {"eval_s", e.seconds}};
  out_.append(row.dump());
  if (tensorboard_) tensorboard_->scalars(e.step, {{"val_loss", e.loss}, {"val_perplexity", perplexity}});
  log_->info("validation after step {}: loss {:.4f} | perplexity {:.2f} | {:.0f} targets in {}", e.step,
             e.loss, perplexity, e.targets, format_duration(e.seconds));
}

void MetricsWriter::log_summary() const {
  if (last_step_ <= options_.first_step) return;
  log_->info("trained steps {}-{} in {}: loss {:.4f} -> {:.4f}, {:.0f} tokens/s on average",
             options_.first_step + 1, last_step_, format_duration(elapsed_s_), first_loss_, last_loss_,
             tokens_ / elapsed_s_);
}

}  // namespace rondo
