#include "common/checkpoint_manifest.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/crc32.h"
#include "common/errors.h"

namespace rondo {

namespace fs = std::filesystem;

std::string CheckpointManifest::to_json() const {
  nlohmann::json j;
  j["format_version"] = format_version;
  j["step"] = step;
  j["consumed_samples"] = consumed_samples;
  j["world_size"] = world_size;
  j["mesh"] = {{"tp", tp}, {"pp", pp}, {"dp", dp}, {"cp", cp}, {"ep", ep}};
  if (!stage_layers.empty()) j["stage_layers"] = stage_layers;
  auto& files_json = j["files"] = nlohmann::json::array();
  for (const auto& f : files) {
    files_json.push_back({{"name", f.name}, {"bytes", f.bytes}, {"crc32", f.crc32}});
  }
  return j.dump(2) + "\n";
}

CheckpointManifest CheckpointManifest::from_json(const std::string& text, const std::string& source) {
  CheckpointManifest m;
  try {
    auto j = nlohmann::json::parse(text);
    m.format_version = j.at("format_version").get<int>();
    if (m.format_version != kCheckpointFormatVersion) {
      throw CheckpointError(source, "manifest format_version " + std::to_string(m.format_version) +
                                        " is not supported (expected " +
                                        std::to_string(kCheckpointFormatVersion) + ")");
    }
    m.step = j.at("step").get<int64_t>();
    m.consumed_samples = j.at("consumed_samples").get<uint64_t>();
    m.world_size = j.at("world_size").get<int>();
    const auto& mesh = j.at("mesh");
    m.tp = mesh.at("tp").get<int>();
    m.pp = mesh.at("pp").get<int>();
    m.dp = mesh.at("dp").get<int>();
    m.cp = mesh.at("cp").get<int>();
    m.ep = mesh.at("ep").get<int>();
    if (j.contains("stage_layers")) m.stage_layers = j.at("stage_layers").get<std::vector<int>>();
    for (const auto& f : j.at("files")) {
      m.files.push_back(
          {f.at("name").get<std::string>(), f.at("bytes").get<uint64_t>(), f.at("crc32").get<uint32_t>()});
    }
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(source, std::string("manifest is not valid: ") + e.what());
  }
  return m;
}

std::string checkpoint_step_dir(const std::string& checkpoints_dir, int64_t step) {
  return (fs::path(checkpoints_dir) / ("step-" + std::to_string(step))).string();
}

CheckpointManifest verify_checkpoint(const std::string& checkpoints_dir, int64_t step) {
  const std::string dir = checkpoint_step_dir(checkpoints_dir, step);
  const std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  if (!fs::is_directory(dir)) throw CheckpointError(dir, "directory is missing");
  if (!fs::is_regular_file(manifest_path)) {
    throw CheckpointError(manifest_path, "manifest is missing (partial checkpoint)");
  }
  auto m = CheckpointManifest::from_json(read_file(manifest_path), manifest_path);
  if (m.step != step) {
    throw CheckpointError(manifest_path, "manifest says step " + std::to_string(m.step) +
                                             ", directory says step " + std::to_string(step));
  }
  for (const auto& f : m.files) {
    const std::string path = (fs::path(dir) / f.name).string();
    if (!fs::is_regular_file(path)) throw CheckpointError(path, "file listed in the manifest is missing");
    uint64_t bytes = 0;
    const uint32_t crc = crc32_file(path, &bytes);
    if (bytes != f.bytes) {
      throw CheckpointError(path, "size " + std::to_string(bytes) + " bytes, manifest says " +
                                      std::to_string(f.bytes) + " (truncated?)");
    }
    if (crc != f.crc32) {
      throw CheckpointError(path, "CRC-32 mismatch (file " + std::to_string(crc) + ", manifest " +
                                      std::to_string(f.crc32) + "): corrupt");
    }
  }
  return m;
}

std::optional<int64_t> latest_checkpoint_step(const std::string& checkpoints_dir) {
  const std::string path = (fs::path(checkpoints_dir) / "latest").string();
  if (!fs::exists(path)) return std::nullopt;
  std::string text = read_file(path);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.rfind("step-", 0) != 0) throw CheckpointError(path, "malformed pointer '" + text + "'");
  try {
    return std::stoll(text.substr(5));
  } catch (const std::exception&) {
    throw CheckpointError(path, "malformed pointer '" + text + "'");
  }
}

std::vector<int64_t> list_checkpoint_steps(const std::string& checkpoints_dir) {
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("step-", 0) != 0) continue;
    const std::string num = name.substr(5);
    if (num.empty() || !std::all_of(num.begin(), num.end(), ::isdigit)) continue;
    steps.push_back(std::stoll(num));
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

std::optional<int64_t> newest_valid_checkpoint_before(const std::string& checkpoints_dir, int64_t before) {
  auto steps = list_checkpoint_steps(checkpoints_dir);
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (*it >= before) continue;
    try {
      verify_checkpoint(checkpoints_dir, *it);
      return *it;
    } catch (const CheckpointError&) {
    }
  }
  return std::nullopt;
}

}  // namespace rondo
