// Checkpoint manifests (torch-free, so the coordinator can verify checkpoints too).
//
// Layout: CHECKPOINTS/step-N/ holds the shard files and manifest.json (format version, step,
// consumed samples, mesh, and each file's size and CRC-32). A step directory is assembled as
// step-N.partial and renamed into place only after its manifest is written; CHECKPOINTS/latest
// ("step-N") is replaced by atomic rename last. A checkpoint is loadable only if its manifest
// parses and every file listed matches its size and checksum.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace rondo {

inline constexpr int kCheckpointFormatVersion = 1;

struct CheckpointFileEntry {
  std::string name;
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
};

struct CheckpointManifest {
  int format_version = kCheckpointFormatVersion;
  int64_t step = 0;
  uint64_t consumed_samples = 0;
  int world_size = 0;
  int tp = 1, pp = 1, dp = 1, cp = 1, ep = 1;
  // Transformer layers per pipeline stage, in stage order, as the shards hold them (empty in
  // checkpoints written before it was recorded: the plan's own, then). Another partition loads
  // by name from every stage's shards (worker/checkpointer.h).
  std::vector<int> stage_layers;
  std::vector<CheckpointFileEntry> files;

  std::string to_json() const;
  // Throws CheckpointError naming `source` if the text is not a valid manifest.
  static CheckpointManifest from_json(const std::string& text, const std::string& source);
};

std::string checkpoint_step_dir(const std::string& checkpoints_dir, int64_t step);

// Reads and fully verifies step-N (manifest, sizes, CRCs). Throws CheckpointError naming the
// first bad file and what is wrong with it.
CheckpointManifest verify_checkpoint(const std::string& checkpoints_dir, int64_t step);

// The step `latest` points to, or nullopt if there is no `latest`. Throws CheckpointError if it
// exists but is malformed.
std::optional<int64_t> latest_checkpoint_step(const std::string& checkpoints_dir);

// Completed step directories (not .partial), ascending.
std::vector<int64_t> list_checkpoint_steps(const std::string& checkpoints_dir);

// The newest step below `before` that verifies, or nullopt.
std::optional<int64_t> newest_valid_checkpoint_before(const std::string& checkpoints_dir, int64_t before);

}  // namespace rondo
