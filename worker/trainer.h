// Trainer: executes a plan on one rank. Builds the GPT and optimizer from the plan, restores the
// latest checkpoint if asked, then runs each step's actions in plan order (F, B, ALLREDUCE,
// OPTIM), writing RUN_DIR/metrics.jsonl and progress lines on rank 0 and checkpoints at the
// configured interval. Torch-free header (pimpl) so that main.cpp compiles fast.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "comms/communicator.h"
#include "comms/timing_recorder.h"

namespace rondo {

namespace plan {
class Plan;
}

class Trainer {
 public:
  // `world` spans every rank of the plan; it must outlive the trainer.
  Trainer(const plan::Plan& plan, std::string run_dir, Communicator& world);
  ~Trainer();

  // Trains until training.train_iters or training.exit_interval; returns the last step done.
  int64_t run();

  // The flight recorder (null when comms.timing_recorder is off).
  const TimingRecorder* recorder() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rondo
