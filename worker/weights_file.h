// A model's parameters as a safetensors file (common/safetensors.h) under their model-wide names,
// float32: the model shards of checkpoints, and the initial weights of checkpoint.load (a rondo
// weights directory, `rondo convert --from-hf`). Reading copies each parameter in place (the flat
// buffers parameters are bound to keep them) from a CPU copy, on any device; a missing tensor or
// another shape is a CheckpointError naming the file and the tensor.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace rondo {

std::string weights_file_bytes(torch::nn::Module& model);

// Sets every parameter of `model` from whichever of the files at `paths` holds it (a checkpoint's
// model shards: each parameter in one); with `exact`, the files hold no other tensors. Returns how
// many parameters were set.
size_t read_weights_files(const std::vector<std::string>& paths, torch::nn::Module& model, bool exact);

}  // namespace rondo
