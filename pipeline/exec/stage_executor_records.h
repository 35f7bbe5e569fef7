// What StageExecutor keeps per transfer and per microbatch during a step, shared by its
// translation units (stage_executor.cpp, stateless_tasks.cpp). Internal to the executor.
#pragma once

#include <torch/torch.h>

#include <memory>

#include "comms/communicator.h"
#include "pipeline/exec/stage_executor.h"
#include "pipeline/exec/weight_grad_store.h"

namespace rondo {

struct StageExecutor::Receive {
  torch::Tensor buffer;
  int peer = -1;
  std::unique_ptr<CommRequest> request;  // posted this step, not yet waited for
  int64_t posted_ns = 0;
};

struct StageExecutor::Send {
  bool ahead = false;    // a forward of the next step's: its receiver takes it in the next step
  torch::Tensor tensor;  // kept alive until the send completes
  std::unique_ptr<CommRequest> request;
  int64_t posted_ns = 0;
};

struct StageExecutor::Microbatch {
  torch::Tensor input;       // the stage input as a leaf requiring grad (stages after the first)
  torch::Tensor output;      // hidden states, or the unscaled loss on the last stage
  torch::Tensor tokens;      // full recomputation, stages with the embedding or LM head: the ids
  torch::Tensor input_grad;  // after B or I: the gradient with respect to `input`
  WeightGradStore weights;   // weight gradients deferred by I until W
};

}  // namespace rondo
