#include "worker/flat_order.h"

#include "parallelism/exec/moe_layer.h"

namespace rondo {

std::vector<std::pair<std::string, torch::Tensor>> flat_order(const torch::nn::Module& model) {
  std::vector<std::pair<std::string, torch::Tensor>> dense, experts;
  for (const auto& item : model.named_parameters()) {
    if (!item.value().requires_grad()) continue;
    (is_expert_parameter(item.key()) ? experts : dense).emplace_back(item.key(), item.value());
  }
  dense.insert(dense.end(), experts.begin(), experts.end());
  return dense;
}

}  // namespace rondo
