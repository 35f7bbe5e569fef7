#include "worker/checkpoint_repartition.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/errors.h"
#include "worker/flat_adamw.h"
#include "worker/flat_order.h"
#include "worker/weights_file.h"

namespace rondo {

namespace fs = std::filesystem;

std::vector<int> plan_stage_layers(const plan::Plan& plan) {
  std::vector<int> layers(static_cast<size_t>(plan.stages_size()), 0);
  for (const auto& st : plan.stages()) layers.at(st.index()) = static_cast<int>(st.num_layers());
  return layers;
}

std::string flat_layout_json(const torch::nn::Module& model) {
  nlohmann::json layout = nlohmann::json::array();
  for (const auto& [name, p] : flat_order(model)) layout.push_back({name, p.numel()});
  return layout.dump() + "\n";
}

std::string flat_layout_name(const std::string& optimizer_shard) {
  return optimizer_shard.substr(0, optimizer_shard.rfind('.')) + ".layout.json";
}

namespace {

// One stage's AdamW state: its flat moments and where each parameter lies in them.
struct StageMoments {
  FlatAdamW::State state;
  std::map<std::string, std::pair<int64_t, int64_t>> at;  // name -> (offset, elements)
};

StageMoments read_stage_moments(const fs::path& shard) {
  StageMoments s;
  torch::serialize::InputArchive archive;
  archive.load_from(shard.string());
  if (!FlatAdamW::read_state(archive, s.state)) {
    throw CheckpointError(shard.string(), "holds no AdamW flat moments to re-partition");
  }
  const fs::path layout_path = shard.parent_path() / flat_layout_name(shard.filename().string());
  std::ifstream in(layout_path);
  if (!in) {
    throw CheckpointError(layout_path.string(),
                          "is missing: the checkpoint predates re-partitioning (resume with its own "
                          "pipeline.stage_partition)");
  }
  int64_t offset = 0;
  for (const auto& entry : nlohmann::json::parse(in)) {
    const auto n = entry.at(1).get<int64_t>();
    s.at[entry.at(0).get<std::string>()] = {offset, n};
    offset += n;
  }
  if (offset > s.state.exp_avg.numel())
    throw CheckpointError(layout_path.string(), "lays out more elements than its shard's moments hold");
  return s;
}

}  // namespace

void load_repartitioned(const fs::path& step_dir, const CheckpointManifest& manifest,
                        const std::string& position_tail, torch::nn::Module& model,
                        torch::optim::Optimizer& optimizer) {
  if (!dynamic_cast<FlatAdamW*>(&optimizer)) {
    throw CheckpointError(step_dir.string(),
                          "was written with another pipeline.stage_partition; only training.optimizer "
                          "adamw (synchronous) state can be re-partitioned");
  }
  std::vector<std::string> model_shards;
  std::vector<StageMoments> stages;
  for (int k = 0; k < manifest.pp; ++k) {
    const std::string tail = "-pp" + std::to_string(k) + position_tail;
    model_shards.push_back((step_dir / ("model" + tail + ".safetensors")).string());
    stages.push_back(read_stage_moments(step_dir / ("optim" + tail + ".pt")));
  }
  read_weights_files(model_shards, model, /*exact=*/false);
  std::vector<torch::Tensor> exp_avg, exp_avg_sq;
  for (const auto& [name, p] : flat_order(model)) {
    const auto holder =
        std::find_if(stages.begin(), stages.end(), [&](const auto& s) { return s.at.count(name); });
    if (holder == stages.end())
      throw CheckpointError(step_dir.string(), "no stage's optimizer shard holds moments for '" + name + "'");
    const auto [offset, n] = holder->at.at(name);
    if (n != p.numel())
      throw CheckpointError(step_dir.string(), "the moments of '" + name + "' have " + std::to_string(n) +
                                                   " elements, the parameter " + std::to_string(p.numel()));
    exp_avg.push_back(holder->state.exp_avg.narrow(0, offset, n));
    exp_avg_sq.push_back(holder->state.exp_avg_sq.narrow(0, offset, n));
  }
  // Through an archive of this rank's own layout: what FlatAdamW::load reads.
  torch::serialize::OutputArchive out;
  FlatAdamW::write_state(out, {stages.front().state.step, torch::cat(exp_avg), torch::cat(exp_avg_sq)});
  std::stringstream bytes;
  out.save_to(bytes);
  torch::serialize::InputArchive in;
  in.load_from(bytes);
  optimizer.load(in);
}

}  // namespace rondo
