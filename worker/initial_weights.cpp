#include "worker/initial_weights.h"

#include <filesystem>

#include "common/errors.h"
#include "common/safetensors.h"

namespace rondo {

size_t load_initial_weights(const std::string& dir, torch::nn::Module& model) {
  const SafetensorsFile file((std::filesystem::path(dir) / "model.safetensors").string());
  torch::NoGradGuard no_grad;
  size_t set = 0;
  for (auto& p : model.named_parameters()) {
    const auto& e = file.at(p.key());
    if (e.shape != p.value().sizes().vec()) {
      std::string want;
      for (auto d : p.value().sizes()) want += (want.empty() ? "" : ", ") + std::to_string(d);
      throw CheckpointError(file.path(),
                            "tensor '" + p.key() + "' does not have the model's shape [" + want + "]");
    }
    auto host = torch::empty(p.value().sizes(), torch::kFloat32);
    file.read_f32(p.key(), host.data_ptr<float>());
    p.value().copy_(host);
    ++set;
  }
  return set;
}

}  // namespace rondo
