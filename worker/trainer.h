// Trainer: executes a plan on one rank. Builds the GPT and optimizer from the plan, restores the
// latest checkpoint if asked, then runs each step's actions in plan order (F, B, ALLREDUCE,
// OPTIM), writing RUN_DIR/metrics.jsonl and progress lines on rank 0 and checkpoints at the
// configured interval. Torch-free header (pimpl) so that main.cpp compiles fast.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comms/communicator.h"
#include "comms/timing_recorder.h"

namespace rondo {

namespace plan {
class Plan;
}
namespace report {
class StepReport;
}

class Trainer {
 public:
  // `world` spans every rank of the plan; it must outlive the trainer. `local_rank` (the
  // launcher's, -1 when unknown) picks the device on a node with several.
  Trainer(const plan::Plan& plan, std::string run_dir, Communicator& world, int local_rank = -1);
  ~Trainer();

  // Trains until training.train_iters or training.exit_interval; returns the last step done.
  int64_t run();

  // The flight recorder (null when comms.timing_recorder is off).
  const TimingRecorder* recorder() const;

  // Requests from another thread (the control plane, a signal handler's flag). Every rank takes
  // them at the same step, agreed through the step's statistics: a checkpoint after that step; a
  // stop checkpoints and returns from run() (an asynchronous stream drains one step later).
  void request_checkpoint();
  void request_stop();
  // The gradients' rings (each a data-parallel group's world ranks in ring order), version
  // `version` (counting up from 1): every rank reduces round them from the step after the first
  // one by whose end all ranks have this version (agreed through the step's statistics).
  // Synchronous runs with workers bound to their stages; others log and keep their rings.
  void request_rings(uint64_t version, std::vector<std::vector<int>> rings);
  // Called on every rank once a step's statistics are known (the step after, asynchronously),
  // with this rank's report and the flight records since the previous one.
  void on_step(std::function<void(report::StepReport&&)> callback);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rondo
