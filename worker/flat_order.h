// The order a rank's trained parameters lie in its flat buffers (gradients, AdamW's parameters and
// moments): the dense ones, then the experts' (summed over their replicas only), each part in model
// order; frozen parameters (LoRA's base) are left out. What bound_weights.h lays the buffers out by
// and what a checkpoint records beside AdamW's flat moments, so that another stage partition can
// take each parameter's moments by name (checkpointer.h).
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace rondo {

std::vector<std::pair<std::string, torch::Tensor>> flat_order(const torch::nn::Module& model);

}  // namespace rondo
