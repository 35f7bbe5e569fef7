// Loading a checkpoint written with another pipeline stage partition (pipeline.stage_partition:
// the re-plan around a slow rank gives its stage fewer layers): every parameter is taken by name
// from whichever stage's model shard holds it, and AdamW's moments by name from whichever stage's
// optimizer shard held them, by the flat layout written beside each (flat_order.h). Only AdamW's
// flat state can be cut this way; another optimizer's is refused, naming the key.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/checkpoint_manifest.h"
#include "proto/plan.pb.h"

namespace rondo {

// Transformer layers per pipeline stage, in stage order.
std::vector<int> plan_stage_layers(const plan::Plan& plan);

// The names and sizes of the parameters AdamW's flat moments hold, in order, as JSON.
std::string flat_layout_json(const torch::nn::Module& model);
// The layout file beside an optimizer shard ("optim-pp0-tp0.pt" -> "optim-pp0-tp0.layout.json").
std::string flat_layout_name(const std::string& optimizer_shard);

// Loads `model` and `optimizer` (FlatAdamW) from the shards of step_dir for every stage of the
// manifest's pipeline, at this rank's tensor- and expert-parallel position (`position_tail`:
// "-tp0", "-tp0-ep1"). Throws CheckpointError naming the file and the tensor on anything missing.
void load_repartitioned(const std::filesystem::path& step_dir, const CheckpointManifest& manifest,
                        const std::string& position_tail, torch::nn::Module& model,
                        torch::optim::Optimizer& optimizer);

}  // namespace rondo
