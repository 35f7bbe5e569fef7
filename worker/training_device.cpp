#include "worker/training_device.h"

#include <string>

#include "common/errors.h"
#include "comms/mpi/mpi_communicator.h"

namespace rondo {

torch::Device training_device(const plan::TrainingSpec& t, int world_size, int local_rank) {
  if (t.device() != plan::DEVICE_CUDA) return torch::kCPU;
  if (!torch::cuda::is_available()) {
    throw ConfigError("training.device", "cuda requested but this LibTorch has no usable GPU");
  }
  if (world_size > 1 && !MpiRuntime::cuda_aware()) {
    throw ConfigError("training.device", "cuda on " + std::to_string(world_size) +
                                             " ranks needs a CUDA-aware MPI, and this one is not (ompi_info: "
                                             "mpi_built_with_cuda_support false); run one rank per job, or "
                                             "training.device=cpu");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(
                                         local_rank % static_cast<int>(torch::cuda::device_count())));
}

}  // namespace rondo
