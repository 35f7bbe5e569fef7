// StepTimes: what one step cost a rank, as the stage executor measured it. Torch-free, so that
// what reports a step (metrics rows, step reports) needs no LibTorch header.
#pragma once

#include <cstdint>
#include <vector>

namespace rondo {

// What one step cost this rank (seconds) and the losses it computed.
struct StepTimes {
  double data_s = 0;
  double forward_s = 0;
  double backward_s = 0;  // B, I and W
  double recv_wait_s = 0;
  double send_wait_s = 0;
  double allreduce_s = 0;
  double optimizer_s = 0;
  double loss_sum = 0;  // of the microbatch losses computed here (last stage), unscaled
  int losses = 0;
  // Compute (F, B, I, W) only: the seconds spent, per plan stage summed over microbatches (I
  // counts into `stage_b`, as the first part of a full backward; with a backward partition of
  // its own, `stage_b` and `stage_w` are per backward stage), and the wall-clock span from the
  // first compute's start to the last one's end.
  double compute_s = 0;
  std::vector<double> stage_f, stage_b, stage_w;
  // With a backward partition of its own: per backward stage, the part of stage_b that ran
  // before the incoming gradient was waited for (the recomputation).
  std::vector<double> stage_b_lead;
  int64_t first_compute_ns = 0, last_compute_ns = 0;
};

}  // namespace rondo
