#include "orchestrator/model_source.h"

#include <filesystem>

#include "common/atomic_file.h"
#include "common/errors.h"

namespace rondo {

namespace fs = std::filesystem;

ModelSource model_source(const std::string& dir) {
  const fs::path from(dir);
  ModelSource out;
  if (fs::exists(from / "model.safetensors") && fs::exists(from / "config.yaml")) {
    out.config = load_config((from / "config.yaml").string());
    out.files.push_back((from / "model.safetensors").string());
    if (fs::exists(from / "hf_config.json")) out.hf_config = (from / "hf_config.json").string();
    if (fs::exists(from / "tokenizer.json")) out.tokenizer = (from / "tokenizer.json").string();
    return out;
  }
  fs::path step = from;
  if (fs::exists(from / "checkpoints" / "latest")) {
    auto latest = read_file((from / "checkpoints" / "latest").string());
    latest.erase(latest.find_last_not_of(" \n") + 1);
    step = from / "checkpoints" / latest;
  }
  if (!fs::exists(step / "manifest.json")) {
    throw CheckpointError(
        dir,
        "is neither a rondo weights directory (model.safetensors, config.yaml), a checkpoint "
        "step (manifest.json) nor a run directory with checkpoints");
  }
  const auto run_config = step.parent_path().parent_path() / "config.yaml";
  if (!fs::exists(run_config))
    throw CheckpointError(step.string(), "has no run config at " + run_config.string());
  out.config = load_config(run_config.string());
  const auto started = fs::path(out.config.checkpoint.load) / "hf_config.json";
  if (!out.config.checkpoint.load.empty() && fs::exists(started)) out.hf_config = started.string();
  const auto tokenizer = fs::path(out.config.checkpoint.load) / "tokenizer.json";
  if (!out.config.checkpoint.load.empty() && fs::exists(tokenizer)) out.tokenizer = tokenizer.string();
  for (const auto& f : fs::directory_iterator(step)) {
    const auto name = f.path().filename().string();
    if (name.starts_with("model-") && name.ends_with(".safetensors")) out.files.push_back(f.path().string());
  }
  if (out.files.empty()) {
    throw CheckpointError(step.string(),
                          "has no model-*.safetensors shards (one written before checkpoints kept them?)");
  }
  return out;
}

void copy_tokenizer_files(const std::string& from, const std::string& to) {
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    const auto src = fs::path(from) / name;
    if (fs::exists(src)) write_file_atomic((fs::path(to) / name).string(), read_file(src.string()));
  }
}

}  // namespace rondo
