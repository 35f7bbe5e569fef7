#include "worker/checkpointer.h"

#include <cstring>
#include <filesystem>
#include <sstream>

#include "common/atomic_file.h"
#include "common/crc32.h"
#include "common/errors.h"
#include "common/logging.h"
#include "worker/checkpoint_repartition.h"
#include "worker/flat_adamw.h"
#include "worker/weights_file.h"

namespace rondo {

namespace fs = std::filesystem;

namespace {

// Fixed-size record so that file lists can be allgathered without a size exchange.
struct FileRecord {
  char name[112];
  uint64_t bytes;
  uint32_t crc32;
  uint32_t used;
};
static_assert(sizeof(FileRecord) % 4 == 0);
constexpr int kRecordsPerRank = 4;  // model, optimizer and its layout, RNG

// Modules and optimizers serialize through an archive; tensors through torch::save.
template <typename T>
std::string serialize(T& value) {
  std::ostringstream out;
  if constexpr (std::is_same_v<std::decay_t<T>, torch::Tensor>) {
    torch::save(value, out);
  } else {
    torch::serialize::OutputArchive archive;
    value.save(archive);
    archive.save_to(out);
  }
  return out.str();
}

template <typename T>
void deserialize(T& value, const std::string& path) {
  torch::serialize::InputArchive archive;
  archive.load_from(path);
  value.load(archive);
}

}  // namespace

Checkpointer::Checkpointer(std::string checkpoints_dir, const plan::Plan& plan, int rank, Collectives& world)
    : dir_(std::move(checkpoints_dir)), plan_(plan), rank_(rank), world_(world) {}

// With expert parallelism each expert group's first replica (data-parallel index < ep) writes its
// experts with the rest of its stages: one shard per (pp, tp, ep) position.
bool Checkpointer::writes_optimizer_shard() const {
  const auto& c = plan_.ranks(rank_).coords();
  return c.dp() < plan_.mesh().ep() && c.cp() == 0;
}

std::string Checkpointer::position() const {
  const auto& c = plan_.ranks(rank_).coords();
  const auto pp = plan_.stateless_workers() ? 0 : c.pp();
  return "pp" + std::to_string(pp) + position_tail();
}

std::string Checkpointer::position_tail() const {
  const auto& c = plan_.ranks(rank_).coords();
  return "-tp" + std::to_string(c.tp()) + (plan_.mesh().ep() > 1 ? "-ep" + std::to_string(c.ep()) : "");
}

// Stateless workers all hold the whole (shared) model: pipeline rank 0 writes it, every worker
// reads it; each writes the optimizer state of the stages it owns.
bool Checkpointer::writes_model_shard() const {
  return writes_optimizer_shard() && (!plan_.stateless_workers() || plan_.ranks(rank_).coords().pp() == 0);
}

std::string Checkpointer::model_shard_name() const { return "model-" + position() + ".safetensors"; }

std::string Checkpointer::optimizer_shard_name() const {
  const auto& c = plan_.ranks(rank_).coords();
  return "optim-pp" + std::to_string(c.pp()) + position_tail() + ".pt";
}

std::string Checkpointer::rng_name() const { return "rng-rank" + std::to_string(rank_) + ".pt"; }

void Checkpointer::save(int64_t step, uint64_t consumed_samples, torch::nn::Module& model,
                        torch::optim::Optimizer& optimizer) {
  const std::string final_dir = checkpoint_step_dir(dir_, step);
  const std::string partial = final_dir + ".partial";
  if (rank_ == 0) {
    fs::remove_all(partial);
    fs::create_directories(partial);
  }
  world_.barrier();

  std::vector<FileRecord> mine(kRecordsPerRank);
  std::memset(mine.data(), 0, mine.size() * sizeof(FileRecord));
  int used = 0;
  auto write = [&](const std::string& name, const std::string& bytes) {
    write_file_atomic((fs::path(partial) / name).string(), bytes);
    auto& rec = mine[static_cast<size_t>(used++)];
    std::snprintf(rec.name, sizeof(rec.name), "%s", name.c_str());
    rec.bytes = bytes.size();
    rec.crc32 = crc32_update(0, bytes.data(), bytes.size());
    rec.used = 1;
  };
  if (writes_model_shard()) write(model_shard_name(), weights_file_bytes(model));
  if (writes_optimizer_shard()) {
    write(optimizer_shard_name(), serialize(optimizer));
    // AdamW's flat moments by name, so that another stage partition can load them.
    if (!plan_.stateless_workers() && dynamic_cast<FlatAdamW*>(&optimizer))
      write(flat_layout_name(optimizer_shard_name()), flat_layout_json(model));
  }
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    auto state = gen.get_state();
    write(rng_name(), serialize(state));
  }

  const int n = world_.comm().size();
  std::vector<FileRecord> all(static_cast<size_t>(n * kRecordsPerRank));
  world_.allgather(mine.data(), all.data(), kRecordsPerRank * sizeof(FileRecord) / 4, DType::kInt32);

  if (rank_ == 0) {
    CheckpointManifest m;
    m.step = step;
    m.consumed_samples = consumed_samples;
    m.world_size = n;
    const auto& mesh = plan_.mesh();
    m.tp = static_cast<int>(mesh.tp());
    m.pp = static_cast<int>(mesh.pp());
    m.dp = static_cast<int>(mesh.dp());
    m.cp = static_cast<int>(mesh.cp());
    m.ep = static_cast<int>(mesh.ep());
    m.stage_layers = plan_stage_layers(plan_);
    for (const auto& rec : all) {
      if (rec.used) m.files.push_back({std::string(rec.name), rec.bytes, rec.crc32});
    }
    write_file_atomic((fs::path(partial) / "manifest.json").string(), m.to_json());
    // Replace an existing step-N (a re-run after resume) only once the new one is complete.
    const std::string old = final_dir + ".old";
    const bool had_old = fs::exists(final_dir);
    if (had_old) {
      fs::remove_all(old);
      fs::rename(final_dir, old);
    }
    fs::rename(partial, final_dir);
    sync_directory(dir_);
    if (had_old) fs::remove_all(old);
    write_file_atomic((fs::path(dir_) / "latest").string(), "step-" + std::to_string(step) + "\n");
    logging::get("checkpoint")
        ->info("saved checkpoint step-{} ({} files) in {}", step, m.files.size(), final_dir);
  }
  world_.barrier();
}

std::optional<CheckpointManifest> Checkpointer::load(int64_t resume_step, torch::nn::Module& model,
                                                     torch::optim::Optimizer& optimizer) {
  std::optional<int64_t> step;
  std::string error;
  try {
    step = resume_step > 0 ? std::optional<int64_t>(resume_step) : latest_checkpoint_step(dir_);
  } catch (const CheckpointError& e) {
    error = e.what();
  }
  if (!step && error.empty()) return std::nullopt;

  std::optional<CheckpointManifest> manifest;
  if (error.empty()) {
    try {
      manifest = verify_checkpoint(dir_, *step);
    } catch (const CheckpointError& e) {
      error = e.what();
    }
  }
  int32_t ok = error.empty() ? 1 : 0;
  world_.allreduce(&ok, 1, DType::kInt32, ReduceOp::kMin);
  if (!ok) {
    if (error.empty()) throw CheckpointError(dir_, "another rank found the checkpoint invalid");
    std::string hint;
    if (step) {
      if (auto earlier = newest_valid_checkpoint_before(dir_, *step)) {
        hint = "; the newest valid earlier checkpoint is step-" + std::to_string(*earlier) +
               ": resume from it with --set checkpoint.resume_step=" + std::to_string(*earlier);
      } else {
        hint = "; no valid earlier checkpoint: start afresh with --set checkpoint.resume=false";
      }
    }
    throw CheckpointError(dir_, "refusing to load: " + error + hint);
  }

  const fs::path step_dir = checkpoint_step_dir(dir_, *step);
  if (!manifest->stage_layers.empty() && manifest->stage_layers != plan_stage_layers(plan_) &&
      !plan_.stateless_workers()) {
    load_repartitioned(step_dir, *manifest, position_tail(), model, optimizer);
    load_rng(step_dir, *manifest);
    return manifest;
  }
  const auto has = [&](const std::string& name) {
    for (const auto& f : manifest->files) {
      if (f.name == name) return true;
    }
    return false;
  };
  // Model shards are safetensors files; those of earlier rondo versions LibTorch archives (.pt).
  const auto legacy = model_shard_name().substr(0, model_shard_name().rfind('.')) + ".pt";
  const bool archive = !has(model_shard_name()) && has(legacy);
  if ((!has(model_shard_name()) && !archive) || !has(optimizer_shard_name())) {
    throw CheckpointError(step_dir.string(),
                          "has no shard " + model_shard_name() + " for this rank's (pp, tp, ep) position");
  }
  const auto model_path = (step_dir / (archive ? legacy : model_shard_name())).string();
  try {
    if (archive) {
      deserialize(model, model_path);
    } else {
      read_weights_files({model_path}, model, /*exact=*/true);
    }
  } catch (const std::exception& e) {
    // A valid file (its CRC passed) of another model shape or layout, e.g. from another rondo.
    throw CheckpointError(model_path, std::string("does not fit this rank's stages: ") + e.what());
  }
  const auto optimizer_path = (step_dir / optimizer_shard_name()).string();
  try {
    deserialize(optimizer, optimizer_path);
  } catch (const std::exception& e) {
    // A valid file (its CRC passed) holding another optimizer's state, e.g. from an older rondo.
    throw CheckpointError(optimizer_path, e.what());
  }
  load_rng(step_dir, *manifest);
  return manifest;
}

void Checkpointer::load_rng(const fs::path& step_dir, const CheckpointManifest& manifest) const {
  for (const auto& f : manifest.files) {
    if (f.name != rng_name()) continue;
    torch::Tensor state;
    torch::load(state, (step_dir / rng_name()).string());
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }
}

}  // namespace rondo
