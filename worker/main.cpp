// rondo-worker: one rank of a rondo job. Launched by `rondo run` through mpirun (or srun); reads
// RUN_DIR/plan.pb, trains, and leaves RUN_DIR/logs/rank-K.{log,status.json} behind. With a
// coordinator (RONDO_CONTROL_ADDRESS) it registers, heart-beats, reports every step and takes its
// commands. On failure it records a typed status and its flight recorder (file and coordinator),
// then leaves the teardown to the coordinator, which first collects every surviving rank's dump.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <thread>

#include <google/protobuf/util/json_util.h>
#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "common/logging.h"
#include "comms/collectives.h"
#include "comms/mpi/mpi_communicator.h"
#include "control/control_client.h"
#include "control/flight_records.h"
#include "launch/rank_discovery.h"
#include "proto/plan.pb.h"
#include "proto/plan_version.h"
#include "proto/report.pb.h"
#include "worker/command_relay.h"
#include "worker/fused_ops.h"
#include "worker/generator.h"
#include "worker/malloc_policy.h"
#include "worker/model_family.h"
#include "worker/plan_contract.h"
#include "worker/runtime_environment.h"
#include "worker/trainer.h"

namespace fs = std::filesystem;
using rondo::Error;

namespace {

// How long a failed rank waits for the coordinator to collect the other ranks' flight dumps and
// tear the job down before it aborts the job itself.
constexpr std::chrono::seconds kTeardownWait{30};

std::string hostname() {
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

std::string to_json_text(const google::protobuf::Message& m) {
  std::string text;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(m, &text, options);
  return text;
}

// A rank's status: logs/rank-K.status.json (protobuf JSON of report.WorkerStatus) and the
// coordinator, when there is one.
struct StatusWriter {
  fs::path logs;
  int rank = 0;
  rondo::ControlClient* control = nullptr;

  void write(rondo::report::WorkerStatus st) const {
    st.set_rank(rank);
    st.set_pid(::getpid());
    st.set_host(hostname());
    if (control) st.set_attempt(control->attempt());
    try {
      rondo::write_file_atomic((logs / ("rank-" + std::to_string(rank) + ".status.json")).string(),
                               to_json_text(st) + "\n");
    } catch (const Error&) {
    }
    if (control) {
      control->set_state(st.state());
      control->send_status(st);
    }
  }
  void write(rondo::report::WorkerState state) const {
    rondo::report::WorkerStatus st;
    st.set_state(state);
    write(st);
  }
};

// The typed failure of an exception: what the coordinator decides a restart on.
rondo::report::WorkerStatus failure_status(const std::exception& e) {
  rondo::report::WorkerStatus st;
  st.set_state(rondo::report::FAILED);
  st.set_error(e.what());
  st.set_peer(-1);
  if (const auto* c = dynamic_cast<const rondo::ConfigError*>(&e)) {
    st.set_failure(rondo::report::CONFIG_ERROR);
    st.set_config_key(c->key());
    st.set_error(std::string("config error: ") + e.what());
  } else if (dynamic_cast<const rondo::PlanError*>(&e) != nullptr) {
    st.set_failure(rondo::report::PLAN_ERROR);
  } else if (const auto* t = dynamic_cast<const rondo::TimeoutError*>(&e)) {
    st.set_failure(rondo::report::COMM_TIMEOUT);
    st.set_peer(t->peer());
  } else if (const auto* c = dynamic_cast<const rondo::CommError*>(&e)) {
    st.set_failure(rondo::report::COMM_ERROR);
    st.set_peer(c->peer());
  } else {
    st.set_failure(rondo::report::TRAINING_ERROR);
  }
  return st;
}

// The flight recorder to logs/rank-K.flight.json and the coordinator.
void dump_flight(const rondo::TimingRecorder& recorder, int rank, const fs::path& logs,
                 const std::string& reason, rondo::ControlClient* control) {
  auto dump = rondo::flight_dump(recorder.snapshot(), rank, reason);
  if (control) dump.set_attempt(control->attempt());
  const auto path = logs / ("rank-" + std::to_string(rank) + ".flight.json");
  try {
    rondo::write_file_atomic(path.string(), to_json_text(dump) + "\n");
    rondo::logging::get("worker")->error("flight recorder dumped to {} ({})", path.string(), reason);
  } catch (const Error&) {
  }
  if (control) control->send_flight(dump);
}

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int len = 0;
  MPI_Get_library_version(text, &len);
  std::string s(text, static_cast<size_t>(len));
  return s.substr(0, s.find_first_of(",\n"));
}

rondo::plan::Plan read_plan(const std::string& path) {
  rondo::plan::Plan plan;
  std::ifstream in(path, std::ios::binary);
  if (!in || !plan.ParseFromIstream(&in)) throw rondo::PlanError("cannot read plan " + path);
  if (plan.version() != rondo::kPlanVersion) {
    throw rondo::PlanError(path + " is a version " + std::to_string(plan.version()) +
                           " plan; this rondo-worker runs version " + std::to_string(rondo::kPlanVersion) +
                           " plans: plan it again with the matching `rondo`");
  }
  rondo::check_plan_contract(plan, rondo::model_family_names());
  return plan;
}

// Rank 0 writes RUN_DIR/workers.json: rank -> host, pid.
void write_workers(rondo::Communicator& world, const fs::path& run_dir) {
  struct Entry {
    char host[120];
    int32_t pid;
    int32_t rank;
  };
  Entry mine{};
  ::gethostname(mine.host, sizeof(mine.host) - 1);
  mine.pid = ::getpid();
  mine.rank = world.rank();
  std::vector<Entry> all(static_cast<size_t>(world.size()));
  rondo::Collectives coll(world, nullptr);
  coll.allgather(&mine, all.data(), sizeof(Entry) / 4, rondo::DType::kInt32);
  if (world.rank() != 0) return;
  nlohmann::json j = nlohmann::json::array();
  for (const auto& e : all) j.push_back({{"rank", e.rank}, {"host", e.host}, {"pid", e.pid}});
  rondo::write_file_atomic((run_dir / "workers.json").string(), j.dump(2) + "\n");
}

std::atomic<bool> g_stop_signal{false};
void on_stop_signal(int) { g_stop_signal = true; }

// SIGUSR1 (Slurm's warning before the time limit), polled until `finished`: the trainer stops
// after its step with a checkpoint.
std::thread watch_stop_signal(const std::atomic<bool>& finished, rondo::Trainer& trainer) {
  return std::thread([&finished, &trainer] {
    while (!finished) {
      if (g_stop_signal.exchange(false)) {
        rondo::logging::get("worker")->info("SIGUSR1: stopping after this step with a checkpoint");
        trainer.request_stop();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
}

// After a failure: with a coordinator, it collects the ranks' dumps first (commands still reach
// the trainer meanwhile), then stops the job; only if it does not (it is gone), this rank aborts
// the job itself.
int abort_job(bool coordinated, int exit_code, rondo::CommandRelay& relay) {
  if (coordinated) {
    rondo::logging::get("worker")->error("waiting up to {} s for the coordinator to stop the job",
                                         kTeardownWait.count());
    std::this_thread::sleep_for(kTeardownWait);
  }
  relay.detach();
  spdlog::shutdown();
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  return exit_code;
}

// What a coordinator's command does to a running trainer.
void apply_command(rondo::Trainer& t, const rondo::control::Command& c, int rank, const fs::path& logs,
                   rondo::ControlClient* control) {
  switch (c.kind()) {
    case rondo::control::Command::CHECKPOINT_NOW:
      t.request_checkpoint();
      break;
    case rondo::control::Command::STOP:
      t.request_stop();
      break;
    case rondo::control::Command::SET_RINGS: {
      std::vector<std::vector<int>> rings;
      for (const auto& ring : c.rings().rings()) rings.emplace_back(ring.ranks().begin(), ring.ranks().end());
      t.request_rings(c.rings().version(), std::move(rings));
      break;
    }
    case rondo::control::Command::DUMP_FLIGHT:
      if (t.recorder()) dump_flight(*t.recorder(), rank, logs, "the coordinator asked", control);
      break;
    default:
      break;
  }
}

// Registers this rank with the coordinator; its commands go through `relay` to the trainer once
// one runs (those that come before it are kept for it).
void connect_control(rondo::ControlClient& control, rondo::CommandRelay& relay) {
  rondo::control::RegisterRequest info;
  info.set_host(hostname());
  info.set_pid(::getpid());
  info.set_rondo_version(RONDO_VERSION);
  info.set_plan_version(rondo::kPlanVersion);
  info.set_torch_version(rondo::runtime_environment("", "").value("torch_version", std::string("?")));
  info.set_mpi_version(mpi_library_version());
  control.register_rank(info, rondo::kControlCallDeadline * 6);
  control.start([&relay](const rondo::control::Command& c) { relay.deliver(c); });
}

struct RuntimeChoices {
  std::string malloc_policy, cpu_kernels;  // as runtime.json describes them
};

// What the plan asks of this process before the model exists: the world it was planned for, the
// allocator policy (so that every tensor comes from it), the CPU kernels, the communication
// timeout and, with more ranks than cores on the node (`local_ranks`, the launcher's count), idle
// waits that back off further. An asynchronous plan needs MPI_THREAD_MULTIPLE.
RuntimeChoices prepare_runtime(const rondo::plan::Plan& plan, rondo::Communicator& world,
                               const rondo::MpiRuntime& mpi, int local_ranks) {
  const int rank = world.rank();
  if (plan.mesh().world_size() != static_cast<uint32_t>(world.size())) {
    throw rondo::PlanError("rank " + std::to_string(rank) + ": the plan is for " +
                           std::to_string(plan.mesh().world_size()) + " ranks but " +
                           std::to_string(world.size()) + " were launched");
  }
  RuntimeChoices out{rondo::apply_malloc_policy(plan.training().malloc_policy()),
                     rondo::describe_cpu_kernels(plan.training().cpu_kernels())};
  world.set_timeout(std::chrono::duration<double>(plan.comms().timeout_s()));
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (local_ranks > static_cast<int>(cores)) {
    rondo::PollBackoff::set_oversubscribed(true);
    if (rank == 0) {
      rondo::logging::get("worker")->info(
          "{} ranks share this node's {} cores: long communication waits sleep up to {} us between polls",
          local_ranks, cores, rondo::PollBackoff::kOversubscribedSleep.count());
    }
  }
  if (plan.asynchronous() && mpi.thread_level() < MPI_THREAD_MULTIPLE) {
    throw rondo::ConfigError("pipeline.async",
                             "the update and the step's statistics run on a thread of their own, which needs "
                             "an MPI with MPI_THREAD_MULTIPLE; this one provides level " +
                                 std::to_string(mpi.thread_level()));
  }
  return out;
}

}  // namespace

// `rondo-worker generate ...` (run by `rondo generate`): one process, no MPI; prints one JSON line,
// {"ids": [...], "prompt_logits": [...]}.
int run_generate(int argc, char** argv) {
  CLI::App app{"rondo-worker generate: tokens from a model (started by `rondo generate`)"};
  std::string plan_path, prompt;
  rondo::GenerateOptions o;
  bool no_cache = false;
  app.add_option("--plan", plan_path, "plan.pb of the model")->required();
  app.add_option("--weights", o.weight_files, "safetensors files holding the parameters")->required();
  app.add_option("--prompt-ids", prompt, "token ids, comma-separated")->required();
  app.add_option("--max-tokens", o.max_tokens);
  app.add_option("--temperature", o.temperature);
  app.add_option("--top-p", o.top_p);
  app.add_option("--seed", o.seed);
  app.add_option("--stop-id", o.stop_ids, "stop after generating this id (repeatable)");
  app.add_flag("--no-kv-cache", no_cache);
  CLI11_PARSE(app, argc - 1, argv + 1);
  o.kv_cache = !no_cache;
  try {
    for (size_t at = 0; at < prompt.size();) {
      const size_t comma = std::min(prompt.find(',', at), prompt.size());
      o.prompt.push_back(std::stoll(prompt.substr(at, comma - at)));
      at = comma + 1;
    }
    const auto out = rondo::generate(read_plan(plan_path), o);
    std::printf("%s\n",
                nlohmann::json({{"ids", out.ids}, {"prompt_logits", out.prompt_logits}}).dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rondo-worker generate: %s\n", e.what());
    return 1;
  }
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "generate") return run_generate(argc, argv);
  // Who this process is, from the launcher's environment, before MPI or any device is touched.
  const auto discovered = rondo::discover_rank();
  rondo::MpiRuntime mpi(&argc, &argv);
  CLI::App app{"rondo-worker: one rank of a rondo training job (started by `rondo run`)"};
  std::string run_dir;
  app.add_option("--run-dir", run_dir, "run directory holding plan.pb")->required();
  CLI11_PARSE(app, argc, argv);

  auto world = rondo::MpiCommunicator::world();
  const int rank = world->rank();
  const fs::path logs = fs::path(run_dir) / "logs";
  fs::create_directories(logs);
  rondo::logging::init(rank, (logs / ("rank-" + std::to_string(rank) + ".log")).string(), rank == 0);
  auto log = rondo::logging::get("worker");
  if (discovered) {
    log->info("{}{}", discovered->describe(),
              discovered->rank == rank ? "" : "; MPI says rank " + std::to_string(rank) + ", which counts");
  } else {
    log->info("no launcher variables (torchrun, Open MPI, PMIx, PMI, Slurm): rank {} from MPI", rank);
  }
  // SIGUSR1 (Slurm's warning before the time limit): finish the step, checkpoint, exit cleanly.
  std::signal(SIGUSR1, on_stop_signal);

  rondo::CommandRelay relay;  // outlives the control client's thread that delivers to it
  std::unique_ptr<rondo::ControlClient> control;
  StatusWriter status{logs, rank, nullptr};
  std::unique_ptr<rondo::Trainer> trainer;
  std::atomic<bool> finished{false};
  std::thread signal_watch;
  int exit_code = rondo::kExitFailure;
  try {
    control = rondo::ControlClient::from_environment(rank);
    status.control = control.get();
    if (control) connect_control(*control, relay);
    status.write(rondo::report::RUNNING);

    const auto plan = read_plan((fs::path(run_dir) / "plan.pb").string());
    const auto runtime = prepare_runtime(plan, *world, mpi, discovered ? discovered->local_size : -1);
    write_workers(*world, run_dir);
    trainer =
        std::make_unique<rondo::Trainer>(plan, run_dir, *world, discovered ? discovered->local_rank : -1);
    if (control) {
      trainer->on_step([&](rondo::report::StepReport&& r) {
        control->set_step(r.step());
        control->queue_report(std::move(r));
      });
    }
    relay.attach([&trainer, &control, rank, &logs](const rondo::control::Command& c) {
      apply_command(*trainer, c, rank, logs, control.get());
    });
    signal_watch = watch_stop_signal(finished, *trainer);
    if (rank == 0) {
      const auto env = rondo::runtime_environment(runtime.malloc_policy, runtime.cpu_kernels);
      log->info("{}", rondo::runtime_environment_summary(env));
      rondo::write_file_atomic((fs::path(run_dir) / "runtime.json").string(), env.dump(2) + "\n");
    }
    trainer->run();
    finished = true;
    signal_watch.join();
    status.write(rondo::report::DONE);
    relay.detach();
    control.reset();  // sends what is still queued
    return rondo::kExitOk;
  } catch (const std::exception& e) {
    const auto st = failure_status(e);
    if (st.failure() == rondo::report::CONFIG_ERROR) exit_code = rondo::kExitConfigError;
    log->error("{}", st.error());
    status.write(st);
    if (trainer && trainer->recorder())
      dump_flight(*trainer->recorder(), rank, logs, st.error(), control.get());
  }
  finished = true;
  if (signal_watch.joinable()) signal_watch.join();
  return abort_job(control != nullptr, exit_code, relay);
}
