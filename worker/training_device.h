// The device a rank trains on (training.device): the CPU, or the GPU its launcher's local rank
// picks (the global rank where none was discovered). Refused, naming training.device, where CUDA
// would fail: no usable GPU in this LibTorch, or several ranks over an MPI that is not CUDA-aware
// (it would read device pointers as host memory: a crash, not an error).
#pragma once

#include <torch/torch.h>

#include "proto/plan.pb.h"

namespace rondo {

torch::Device training_device(const plan::TrainingSpec& training, int world_size, int local_rank);

}  // namespace rondo
