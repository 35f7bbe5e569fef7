// checkpoint.load: a run starts from the weights of a rondo weights directory (its
// model.safetensors under rondo's parameter names, float32 or upcast; written by `rondo convert
// --from-hf`) instead of its seeded initialisation. Each rank reads only the parameters it holds,
// copied in place (the flat buffers they are bound to keep them); a missing tensor or another shape
// is a CheckpointError naming the file and the tensor.
#pragma once

#include <torch/torch.h>

#include <string>

namespace rondo {

// Returns how many parameters were set.
size_t load_initial_weights(const std::string& dir, torch::nn::Module& model);

}  // namespace rondo
