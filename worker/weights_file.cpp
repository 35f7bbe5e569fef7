#include "worker/weights_file.h"

#include <memory>
#include <vector>

#include "common/errors.h"
#include "common/safetensors.h"
#include "worker/staged_model.h"

namespace rondo {

std::string weights_file_bytes(torch::nn::Module& model) {
  std::vector<torch::Tensor> kept;  // contiguous CPU float32 copies the spans point into
  std::vector<SafetensorsTensor> tensors;
  for (const auto& p : model.named_parameters()) {
    kept.push_back(p.value().detach().to(torch::kCPU, torch::kFloat32).contiguous());
    const auto& t = kept.back();
    tensors.push_back({.name = p.key(),
                       .shape = t.sizes().vec(),
                       .values = {t.data_ptr<float>(), static_cast<size_t>(t.numel())}});
  }
  return safetensors_bytes(tensors, {{"format", "pt"}});
}

size_t read_weights_files(const std::vector<std::string>& paths, torch::nn::Module& model, bool exact) {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  size_t tensors = 0;
  for (const auto& path : paths) {
    files.push_back(std::make_unique<SafetensorsFile>(path));
    tensors += files.back()->entries().size();
  }
  if (files.empty()) throw CheckpointError("", "no weights file given");
  torch::NoGradGuard no_grad;
  size_t set = 0;
  for (auto& p : model.named_parameters()) {
    const SafetensorsFile* file = nullptr;
    for (const auto& f : files) {
      if (f->contains(p.key())) file = f.get();
    }
    // Base weights (checkpoint.load) have no LoRA adapters: those keep their initialisation.
    if (!file && !exact && is_lora_parameter(p.key())) continue;
    if (!file)
      throw CheckpointError(paths.front(),
                            "no tensor '" + p.key() + "'" + (paths.size() > 1 ? " in these files" : ""));
    const auto& e = file->at(p.key());
    if (e.shape != p.value().sizes().vec()) {
      std::string want;
      for (auto d : p.value().sizes()) want += (want.empty() ? "" : ", ") + std::to_string(d);
      throw CheckpointError(file->path(),
                            "tensor '" + p.key() + "' does not have the model's shape [" + want + "]");
    }
    auto host = torch::empty(p.value().sizes(), torch::kFloat32);
    file->read_f32(p.key(), host.data_ptr<float>());
    p.value().copy_(host);
    ++set;
  }
  if (exact && set != tensors) {
    throw CheckpointError(paths.front(), "holds " + std::to_string(tensors) +
                                             " tensors, this rank's stages " + std::to_string(set) +
                                             ": another layout?");
  }
  return set;
}

}  // namespace rondo
