// The plan format's version (Plan.version): the coordinator writes it, the worker refuses any
// other. Bump it on every change a worker of the other version would misread.
//   1: data parallelism (every rank held the whole model).
//   2: stages partition the model (global parameter names, per-parameter seeded initialisation);
//      pipeline transfers are non-blocking and every action kind is executed.
//   3: model.recompute_granularity; schedule, optimizer and LR-decay style as enums (an unset or
//      unknown value is refused); emulated compute with the prediction's per-stage op durations.
//   4: stateless workers execute (roundpipe: backward_stages, prediction.stage_backward_lead_s);
//      data.format names how data.path is read (an empty one is refused).
//   5: data.pack (document-aware samples), chunked training (data.chunk_size, chunk_balance as
//      an enum, chunks_in_memory) and the lognormal synthetic mix (data.lognormal).
//   6: chunked training with pipeline parallelism: data.pipeline_chunk_lengths, the schedule's
//      microbatches being chunks (num_microbatches x chunks per step); data.pad.
//   7: asynchronous pipelines (asynchronous, delay_correction, Action.ahead).
//   8: training.device, data.format, comms.backend and comms.allreduce as enums (new field
//      numbers, the string ones reserved); prediction.device_tflops.
//   9: model.family (the worker builds the model from that family's registered parts);
//      delay_correction velocity_prediction.
//  10: a chunked pipeline plan's actions are one representative step: the worker runs each step's
//      own schedule over the step's chunks (data.pipeline_chunk_lengths).
//  11: Group.ring: a data-parallel group's ring allreduce order (comms.avoid_links).
//  12: the llama and qwen3 families' model keys (num_query_groups, kv_channels, rotary, norm
//      epsilon) and checkpoint.load (initial weights); checkpoints' model shards are safetensors.
//  13: HdpSpec.rank_hosts and cross_host_bytes_per_s (HDP groups placed by host).
//  14: comms.timing_recorder_blocks (a worker ignoring it would record every step of a measurement).
#pragma once

#include <cstdint>

namespace rondo {

inline constexpr uint32_t kPlanVersion = 14;

}  // namespace rondo
