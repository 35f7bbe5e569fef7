// rondo-worker: one rank of a rondo job. Launched by `rondo run` through mpirun (or srun); reads
// RUN_DIR/plan.pb, trains, and leaves RUN_DIR/logs/rank-K.{log,status.json} behind. On failure it
// records the error (and the flight recorder) and aborts the whole job.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "common/logging.h"
#include "comms/collectives.h"
#include "comms/mpi/mpi_communicator.h"
#include "proto/plan.pb.h"
#include "proto/plan_version.h"
#include "worker/malloc_policy.h"
#include "worker/runtime_environment.h"
#include "worker/trainer.h"

namespace fs = std::filesystem;
using rondo::Error;

namespace {

void write_status(const fs::path& logs, int rank, const std::string& state, const std::string& error = "") {
  nlohmann::json j = {{"rank", rank}, {"state", state}, {"pid", ::getpid()}};
  if (!error.empty()) j["error"] = error;
  try {
    rondo::write_file_atomic((logs / ("rank-" + std::to_string(rank) + ".status.json")).string(),
                             j.dump() + "\n");
  } catch (const Error&) {
  }
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

}  // namespace

int main(int argc, char** argv) {
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
  write_status(logs, rank, "running");

  std::unique_ptr<rondo::Trainer> trainer;
  int exit_code = rondo::kExitFailure;
  try {
    const auto plan = read_plan((fs::path(run_dir) / "plan.pb").string());
    if (plan.mesh().world_size() != static_cast<uint32_t>(world->size())) {
      throw rondo::PlanError("rank " + std::to_string(rank) + ": the plan is for " +
                             std::to_string(plan.mesh().world_size()) + " ranks but " +
                             std::to_string(world->size()) + " were launched");
    }
    // Before the model exists, so that every tensor comes from the chosen allocator policy.
    const std::string malloc_policy = rondo::apply_malloc_policy(plan.training().malloc_policy());
    world->set_timeout(std::chrono::duration<double>(plan.comms().timeout_s()));
    // More ranks than cores on this node (Open MPI names the node's rank count): idle waits back
    // off further, leaving the cores to the ranks that work.
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    if (local != nullptr && std::strtoul(local, nullptr, 10) > cores) {
      rondo::PollBackoff::set_oversubscribed(true);
      if (rank == 0) {
        log->info(
            "{} ranks share this node's {} cores: long communication waits sleep up to {} us between polls",
            local, cores, rondo::PollBackoff::kOversubscribedSleep.count());
      }
    }
    if (plan.asynchronous() && mpi.thread_level() < MPI_THREAD_MULTIPLE) {
      throw rondo::ConfigError(
          "pipeline.async",
          "the update and the step's statistics run on a thread of their own, which needs "
          "an MPI with MPI_THREAD_MULTIPLE; this one provides level " +
              std::to_string(mpi.thread_level()));
    }
    write_workers(*world, run_dir);
    trainer = std::make_unique<rondo::Trainer>(plan, run_dir, *world);
    if (rank == 0) {
      const auto env = rondo::runtime_environment(malloc_policy);
      log->info("{}", rondo::runtime_environment_summary(env));
      rondo::write_file_atomic((fs::path(run_dir) / "runtime.json").string(), env.dump(2) + "\n");
    }
    trainer->run();
    write_status(logs, rank, "done");
    return rondo::kExitOk;
  } catch (const rondo::ConfigError& e) {
    exit_code = rondo::kExitConfigError;
    log->error("config error: {}", e.what());
    write_status(logs, rank, "failed", std::string("config error: ") + e.what());
  } catch (const std::exception& e) {
    log->error("{}", e.what());
    write_status(logs, rank, "failed", e.what());
    if (trainer && trainer->recorder()) {
      const auto dump = rondo::TimingRecorder::to_json(trainer->recorder()->snapshot(), rank);
      const auto path = logs / ("rank-" + std::to_string(rank) + ".flight.json");
      try {
        rondo::write_file_atomic(path.string(), dump.dump(1) + "\n");
        log->error("flight recorder dumped to {}", path.string());
      } catch (const Error&) {
      }
    }
  }
  spdlog::shutdown();
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  return exit_code;
}
