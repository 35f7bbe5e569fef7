// Checkpointer: saves and restores a worker's training state as a sharded, checksummed
// checkpoint (see common/checkpoint_manifest.h for the layout and atomicity rules).
// Model and optimizer shards are written once per (pp, tp) position by its dp=0, cp=0 rank (with
// expert parallelism once per (pp, tp, ep): the experts differ along ep)
// (stateless workers share one model shard, written by pipeline rank 0); every rank writes its
// RNG state. save() and load() are collective over `world`. A checkpoint of another pipeline stage
// partition loads by name (checkpoint_repartition.h).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "common/checkpoint_manifest.h"
#include "comms/collectives.h"
#include "proto/plan.pb.h"

namespace rondo {

class Checkpointer {
 public:
  Checkpointer(std::string checkpoints_dir, const plan::Plan& plan, int rank, Collectives& world);

  void save(int64_t step, uint64_t consumed_samples, torch::nn::Module& model,
            torch::optim::Optimizer& optimizer);

  // Restores step `resume_step` (0: the `latest` one). Returns its manifest, or nullopt when
  // there is nothing to resume. Throws CheckpointError on every rank if any rank finds the
  // checkpoint incomplete or corrupt; rank 0's message names the bad file and the newest valid
  // earlier checkpoint.
  std::optional<CheckpointManifest> load(int64_t resume_step, torch::nn::Module& model,
                                         torch::optim::Optimizer& optimizer);

  const std::string& dir() const { return dir_; }

 private:
  // "pp<k>-tp<k>" (stateless workers: pp0), "-ep<k>" added with expert parallelism.
  std::string position() const;
  std::string position_tail() const;  // "-tp<k>[-ep<k>]"
  void load_rng(const std::filesystem::path& step_dir, const CheckpointManifest& manifest) const;
  std::string model_shard_name() const;
  std::string optimizer_shard_name() const;
  std::string rng_name() const;
  bool writes_model_shard() const;
  bool writes_optimizer_shard() const;

  std::string dir_;
  const plan::Plan& plan_;
  int rank_;
  Collectives& world_;
};

}  // namespace rondo
