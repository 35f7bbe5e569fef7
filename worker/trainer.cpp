#include "worker/trainer.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <numbers>

#include "common/errors.h"
#include "common/logging.h"
#include "comms/bucketed_allreduce.h"
#include "comms/collectives.h"
#include "comms/gradient_buckets.h"
#include "data/global_batch_sampler.h"
#include "data/text_corpus.h"
#include "proto/plan.pb.h"
#include "worker/checkpointer.h"
#include "worker/flat_adamw.h"
#include "worker/gpt_model.h"

namespace rondo {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// DDP's small first bucket: communication starts as soon as the last layers' gradients are final.
constexpr double kFirstBucketMb = 1.0;

// This process's resource usage: the peak resident set and the page faults and CPU time so far.
struct ResourceUsage {
  double max_rss_mb = 0;
  double minor_faults = 0;
  double user_s = 0;
  double sys_s = 0;
  static ResourceUsage now() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    const auto secs = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + 1e-6 * tv.tv_usec; };
    return {static_cast<double>(u.ru_maxrss) / 1024.0, static_cast<double>(u.ru_minflt), secs(u.ru_utime),
            secs(u.ru_stime)};
  }
};

double learning_rate(const plan::TrainingSpec& t, int64_t step) {
  const auto warmup = static_cast<int64_t>(t.lr_warmup_iters());
  if (warmup > 0 && step <= warmup) return t.lr() * static_cast<double>(step) / static_cast<double>(warmup);
  if (t.lr_decay_style() == "constant") return t.lr();
  const double span = static_cast<double>(static_cast<int64_t>(t.train_iters()) - warmup);
  const double ratio = span > 0 ? static_cast<double>(step - warmup) / span : 1.0;
  const double coeff =
      t.lr_decay_style() == "linear" ? 1.0 - ratio : 0.5 * (std::cos(std::numbers::pi * ratio) + 1.0);
  return t.min_lr() + coeff * (t.lr() - t.min_lr());
}

std::string format_eta(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  }
  return buf;
}

// Appends whole lines with one write(2) each, so a killed writer never leaves half a line.
class LineAppender {
 public:
  explicit LineAppender(const std::string& path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd_ < 0) throw Error("cannot open " + path + " for appending");
  }
  ~LineAppender() {
    if (fd_ >= 0) ::close(fd_);
  }
  void append(const std::string& line) {
    const std::string data = line + "\n";
    if (::write(fd_, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
      throw Error("short write to metrics file");
    }
  }

 private:
  int fd_ = -1;
};

}  // namespace

struct Trainer::Impl {
  const plan::Plan& plan;
  std::string run_dir;
  Communicator& world;
  int rank;
  const plan::RankPlan& me;
  std::shared_ptr<spdlog::logger> log = logging::get("worker");

  std::unique_ptr<TimingRecorder> recorder;
  std::unique_ptr<Communicator> dp_comm;
  std::unique_ptr<Collectives> world_coll;
  std::unique_ptr<Collectives> dp_coll;
  std::unique_ptr<Collectives> stats_coll;  // per-step statistics, kept out of the flight recorder
  // Overlapped gradient reduction (comms.overlap_grad_reduce with more than one data-parallel
  // rank), fed by post-hooks on the parameters' gradient accumulators, which must stay alive.
  std::unique_ptr<BucketedAllreduce> reducer;
  std::vector<std::shared_ptr<torch::autograd::Node>> grad_accumulators;

  TextCorpus corpus;
  std::unique_ptr<GlobalBatchSampler> sampler;
  torch::Device device{torch::kCPU};
  GptModel model{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  torch::Tensor flat;  // every parameter's gradient (views into it) + one slot for the loss
  int64_t num_grad_elements = 0;
  std::unique_ptr<Checkpointer> checkpointer;
  std::unique_ptr<LineAppender> metrics;
  std::unique_ptr<LineAppender> events;

  Impl(const plan::Plan& p, std::string dir, Communicator& w)
      : plan(p),
        run_dir(std::move(dir)),
        world(w),
        rank(w.rank()),
        me(p.ranks(w.rank())),
        corpus(TextCorpus::load(p.data().path(), p.model().seq_length() + 1)) {}

  void setup();
  void build_dp_group();
  void build_reducer();
  torch::Tensor batch_tokens(int64_t step, uint32_t first_sample) const;
  void allreduce_gradients();
  double clip_gradients();
  void set_lr(double lr);
  void event(const nlohmann::json& e);
};

void Trainer::Impl::setup() {
  const auto& t = plan.training();
  const auto& m = plan.model();
  at::set_num_threads(static_cast<int>(t.num_threads()));
  if (t.device() == "cuda") {
    if (!torch::cuda::is_available()) {
      throw ConfigError("training.device", "cuda requested but this LibTorch has no usable GPU");
    }
    device = torch::Device(torch::kCUDA, static_cast<int>(rank % torch::cuda::device_count()));
  }
  if (plan.comms().timing_recorder()) {
    recorder = std::make_unique<TimingRecorder>(plan.comms().recorder_capacity());
  }
  world_coll = std::make_unique<Collectives>(world, recorder.get());
  stats_coll = std::make_unique<Collectives>(world, nullptr);
  build_dp_group();
  dp_coll->set_emulated_link_bandwidth(plan.comms().emulated_link_gbps() * 1e9);

  sampler =
      std::make_unique<GlobalBatchSampler>(t.seed(), corpus.size(), m.seq_length(), t.global_batch_size());
  torch::manual_seed(t.seed());
  model = GptModel(GptShape{m.num_layers(), m.hidden_size(), m.num_attention_heads(), m.ffn_hidden_size(),
                            m.vocab_size(), m.seq_length()});
  model->to(device);

  // Gradients live in one flat buffer so that a step needs one allreduce and no copies.
  for (const auto& p : model->parameters()) num_grad_elements += p.numel();
  flat = torch::zeros({num_grad_elements + 1}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  int64_t offset = 0;
  for (auto& p : model->parameters()) {
    p.mutable_grad() = flat.narrow(0, offset, p.numel()).view_as(p);
    offset += p.numel();
  }
  if (t.optimizer() == "adamw") {
    optimizer = std::make_unique<FlatAdamW>(model->parameters(), flat,
                                            torch::optim::AdamWOptions(t.lr())
                                                .betas({t.adam_beta1(), t.adam_beta2()})
                                                .eps(t.adam_eps())
                                                .weight_decay(t.weight_decay()));
  } else {
    optimizer = std::make_unique<torch::optim::SGD>(
        model->parameters(), torch::optim::SGDOptions(t.lr()).weight_decay(t.weight_decay()));
  }
  checkpointer =
      std::make_unique<Checkpointer>((fs::path(run_dir) / "checkpoints").string(), plan, rank, *world_coll);
  if (rank == 0) {
    metrics = std::make_unique<LineAppender>((fs::path(run_dir) / "metrics.jsonl").string());
    events = std::make_unique<LineAppender>((fs::path(run_dir) / "events.jsonl").string());
    log->info("model: {} parameters, {} layers, hidden {}, data {} ({} bytes)", num_grad_elements,
              m.num_layers(), m.hidden_size(), corpus.source(), corpus.size());
  }
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

void Trainer::Impl::build_reducer() {
  const auto& c = plan.comms();
  if (!c.overlap_grad_reduce() || dp_coll->comm().size() == 1) return;
  std::vector<size_t> elements;
  for (const auto& p : model->parameters()) elements.push_back(static_cast<size_t>(p.numel()));
  const auto mib = [](double mb) { return static_cast<size_t>(mb * 1024 * 1024); };
  auto buckets = plan_gradient_buckets(elements, 1, sizeof(float), mib(c.bucket_size_mb()),
                                       mib(std::min(c.bucket_size_mb(), kFirstBucketMb)));
  // Its own communicator: buckets in flight never match messages of other collectives.
  std::vector<int> all(static_cast<size_t>(dp_coll->comm().size()));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  auto comm = dp_coll->comm().split(all);
  BucketedAllreduce::Options options;
  options.native = c.allreduce() == "native" || !world.host_buffers();
  options.emulated_link_bps = c.emulated_link_gbps() * 1e9;
  reducer = std::make_unique<BucketedAllreduce>(std::move(comm), recorder.get(), flat.data_ptr<float>(),
                                                std::move(buckets), options);
  size_t index = 0;
  for (auto& p : model->parameters()) {
    auto accumulator = torch::autograd::impl::grad_accumulator(p);
    accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [r = reducer.get(), index](const torch::autograd::variable_list& outputs,
                                   const torch::autograd::variable_list&) {
          r->mark_ready(index);
          return outputs;
        }));
    grad_accumulators.push_back(std::move(accumulator));
    ++index;
  }
  if (rank == 0) {
    std::string sizes;
    for (const auto& b : reducer->buckets()) {
      sizes +=
          fmt::format("{}{:.2f}", sizes.empty() ? "" : ", ", static_cast<double>(b.count * 4) / (1 << 20));
    }
    log->info("gradient reduction overlapped with the backward: {} bucket(s) of [{}] MiB",
              reducer->buckets().size(), sizes);
  }
}

void Trainer::Impl::event(const nlohmann::json& e) {
  if (!events) return;
  nlohmann::json line = e;
  line["time"] = static_cast<double>(TimingRecorder::wall_ns()) * 1e-9;
  events->append(line.dump());
}

torch::Tensor Trainer::Impl::batch_tokens(int64_t step, uint32_t first_sample) const {
  const int64_t mb = plan.training().micro_batch_size(), len = plan.model().seq_length() + 1;
  auto tokens = torch::empty({mb, len}, torch::kLong);
  auto* out = tokens.data_ptr<int64_t>();
  const auto& bytes = corpus.bytes();
  for (int64_t i = 0; i < mb; ++i) {
    const uint64_t off =
        sampler->sample_offset(static_cast<uint64_t>(step), first_sample + static_cast<uint64_t>(i));
    for (int64_t j = 0; j < len; ++j) out[i * len + j] = bytes[off + static_cast<uint64_t>(j)];
  }
  return tokens.to(device);
}

void Trainer::Impl::allreduce_gradients() {
  if (plan.comms().allreduce() == "native" || !world.host_buffers()) {
    dp_coll->native_allreduce(flat.data_ptr(), static_cast<size_t>(flat.numel()), DType::kFloat32,
                              ReduceOp::kSum);
  } else {
    dp_coll->allreduce(flat.data_ptr(), static_cast<size_t>(flat.numel()), DType::kFloat32, ReduceOp::kSum);
  }
}

double Trainer::Impl::clip_gradients() {
  auto grads = flat.narrow(0, 0, num_grad_elements);
  const double norm = grads.norm(2).item<double>();
  const double clip = plan.training().clip_grad();
  if (clip > 0 && norm > clip) grads.mul_(clip / (norm + 1e-6));
  return norm;
}

void Trainer::Impl::set_lr(double lr) {
  for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
}

Trainer::Trainer(const plan::Plan& plan, std::string run_dir, Communicator& world)
    : impl_(std::make_unique<Impl>(plan, std::move(run_dir), world)) {
  impl_->setup();
}

Trainer::~Trainer() = default;

const TimingRecorder* Trainer::recorder() const { return impl_->recorder.get(); }

int64_t Trainer::run() {
  auto& s = *impl_;
  const auto& t = s.plan.training();
  const auto& ck = s.plan.checkpoint();
  const int64_t train_iters = t.train_iters();
  const int64_t tokens_per_step = static_cast<int64_t>(t.global_batch_size()) * s.plan.model().seq_length();
  const double scale = 1.0 / (static_cast<double>(t.num_microbatches()) * s.plan.mesh().dp());

  int64_t start_step = 0;
  if (ck.resume()) {
    if (auto manifest = s.checkpointer->load(ck.resume_step(), *s.model, *s.optimizer)) {
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
  // After the checkpoint load: loading replaces the parameters' storage, and with it the gradient
  // accumulators that the reducer's hooks attach to.
  s.build_reducer();

  const auto& actions = s.me.actions();
  // The backward that finalises a step's gradients is the last B before each ALLREDUCE: the
  // overlapped reducer is armed just before it, so earlier (accumulating) backwards send nothing.
  std::vector<bool> arms_reducer(static_cast<size_t>(actions.size()), false);
  for (int i = 0, last_b = -1; i < actions.size(); ++i) {
    if (actions[i].kind() == plan::ACTION_B) last_b = i;
    if (actions[i].kind() == plan::ACTION_ALLREDUCE && last_b >= 0) {
      arms_reducer[static_cast<size_t>(last_b)] = true;
      last_b = -1;
    }
  }
  const int64_t loss_slot = s.num_grad_elements;

  std::map<uint32_t, torch::Tensor> pending;  // microbatch -> loss awaiting its backward
  double elapsed_total = 0, first_loss = 0, last_loss = 0;
  int64_t step = start_step;
  while (step < train_iters) {
    ++step;
    const auto usage = ResourceUsage::now();
    const auto t0 = Clock::now();
    double data_s = 0, forward_s = 0, backward_s = 0, allreduce_s = 0, optimizer_s = 0;
    double grad_norm = 0, loss = 0, local_loss = 0;
    bool armed = false;
    const double lr = learning_rate(t, step);
    for (int i = 0; i < actions.size(); ++i) {
      const auto& a = actions[i];
      switch (a.kind()) {
        case plan::ACTION_F: {
          auto d0 = Clock::now();
          auto tokens =
              s.batch_tokens(step - 1, s.me.microbatch_first_sample(static_cast<int>(a.microbatch())));
          const int64_t len = tokens.size(1);
          data_s += seconds_since(d0);
          const auto f0 = Clock::now();
          pending[a.microbatch()] = s.model->loss(tokens.slice(1, 0, len - 1), tokens.slice(1, 1, len));
          forward_s += seconds_since(f0);
          break;
        }
        case plan::ACTION_B: {
          auto it = pending.find(a.microbatch());
          if (it == pending.end())
            throw PlanError("B before F for microbatch " + std::to_string(a.microbatch()));
          local_loss += it->second.item<double>();
          if (s.reducer && arms_reducer[static_cast<size_t>(i)]) {
            // The loss travels in bucket 0, launched during this backward.
            s.flat[loss_slot].fill_(local_loss * scale);
            s.reducer->arm();
            armed = true;
          }
          const auto b0 = Clock::now();
          (it->second * scale).backward();
          backward_s += seconds_since(b0);
          pending.erase(it);
          break;
        }
        case plan::ACTION_ALLREDUCE: {
          const auto a0 = Clock::now();
          if (s.reducer) {
            if (!armed) {
              s.flat[loss_slot].fill_(local_loss * scale);
              s.reducer->arm();
            }
            s.reducer->finish();
            armed = false;
          } else {
            s.flat[loss_slot].fill_(local_loss * scale);
            s.allreduce_gradients();
          }
          allreduce_s += seconds_since(a0);
          loss = s.flat[loss_slot].item<double>();
          break;
        }
        case plan::ACTION_OPTIM: {
          const auto o0 = Clock::now();
          grad_norm = s.clip_gradients();
          s.set_lr(lr);
          s.optimizer->step();
          s.flat.zero_();
          optimizer_s += seconds_since(o0);
          break;
        }
        default:
          throw PlanError("rank " + std::to_string(s.rank) + ": action kind " +
                          plan::ActionKind_Name(a.kind()) + " is not executable by this worker");
      }
    }
    const double step_s = seconds_since(t0);
    elapsed_total += step_s;

    // Memory and page faults of the worst rank (a small max-allreduce, outside the step's time).
    const auto now_usage = ResourceUsage::now();
    double worst[2] = {now_usage.max_rss_mb, now_usage.minor_faults - usage.minor_faults};
    s.stats_coll->allreduce(worst, 2, DType::kFloat64, ReduceOp::kMax);

    if (s.rank == 0) {
      if (!std::isfinite(loss))
        throw Error("loss is " + std::to_string(loss) + " at step " + std::to_string(step));
      const double tps = static_cast<double>(tokens_per_step) / step_s;
      nlohmann::json row = {{"step", step},
                            {"loss", loss},
                            {"grad_norm", grad_norm},
                            {"lr", lr},
                            {"tokens", tokens_per_step},
                            {"step_time_s", step_s},
                            {"tokens_per_s", tps},
                            {"data_s", data_s},
                            {"forward_s", forward_s},
                            {"backward_s", backward_s},
                            {"allreduce_s", allreduce_s},
                            {"optimizer_s", optimizer_s},
                            {"max_rss_mb", worst[0]},
                            {"page_faults", worst[1]},
                            {"cpu_user_s", now_usage.user_s - usage.user_s},
                            {"cpu_sys_s", now_usage.sys_s - usage.sys_s}};
      if (s.reducer) {
        row["grad_buckets"] = s.reducer->buckets().size();
        row["grad_buckets_started_in_backward"] = s.reducer->started_before_finish();
        row["grad_buckets_done_in_backward"] = s.reducer->completed_before_finish();
      }
      s.metrics->append(row.dump());
      if (step == start_step + 1) first_loss = loss;
      last_loss = loss;
      if (step % static_cast<int64_t>(t.log_interval()) == 0 || step == train_iters) {
        const double avg = elapsed_total / static_cast<double>(step - start_step);
        s.log->info("step {}/{} | loss {:.4f} | grad norm {:.3f} | lr {:.2e} | {:.0f} tokens/s | ETA {}",
                    step, train_iters, loss, grad_norm, lr, tps,
                    format_eta(avg * static_cast<double>(train_iters - step)));
      }
    }

    const bool exiting = t.exit_interval() > 0 && step % static_cast<int64_t>(t.exit_interval()) == 0;
    const bool periodic = ck.interval() > 0 && step % static_cast<int64_t>(ck.interval()) == 0;
    const bool final = step == train_iters && ck.interval() > 0;
    if (periodic || exiting || final) {
      s.checkpointer->save(step, s.sampler->consumed_samples(static_cast<uint64_t>(step)), *s.model,
                           *s.optimizer);
      if (s.rank == 0) s.event({{"event", "checkpoint"}, {"step", step}});
    }
    if (exiting && step < train_iters) {
      if (s.rank == 0) {
        s.log->info("exit_interval {} reached at step {}: stopping", t.exit_interval(), step);
        s.event({{"event", "exit_interval"}, {"step", step}});
      }
      break;
    }
  }
  if (s.rank == 0 && step > start_step) {
    s.log->info("trained steps {}-{} in {}: loss {:.4f} -> {:.4f}, {:.0f} tokens/s on average",
                start_step + 1, step, format_eta(elapsed_total), first_loss, last_loss,
                static_cast<double>(tokens_per_step * (step - start_step)) / elapsed_total);
  }
  return step;
}

}  // namespace rondo
