// Pipeline schedules as data: per-rank ordered compute actions (F, B, or the split backward I
// and W) over stages and microbatches, produced by pure generator functions (no LibTorch). The
// plan builder turns them into plan actions with sends/receives; the simulator times them; the
// validator proves them well formed.
#pragma once

#include <string>
#include <vector>

#include "pipeline/layer_times.h"
#include "pipeline/stage_costs.h"

namespace rondo {

enum class ComputeKind { kF, kB, kI, kW };

// Share of a microbatch's activations kept from I until W (see PipelineSchedule).
inline constexpr double kDefaultWeightGradMemory = 0.5;
char compute_kind_letter(ComputeKind kind);

// Chunked long-context training: the schedule's microbatches are chunks, in groups of consecutive
// ids -- a long sequence's dependent chunks, or one standalone chunk (packed short sequences). On
// each stage a group's forwards run in order (a chunk attends to its earlier chunks' keys and
// values) and its backwards in reverse (a chunk's backward adds to its earlier chunks' key and
// value gradients). No groups: independent microbatches.
class ChunkGroups {
 public:
  ChunkGroups() = default;
  explicit ChunkGroups(std::vector<int> sizes);  // each >= 1, in microbatch order
  static ChunkGroups uniform(int microbatches, int size);

  bool empty() const { return sizes_.empty(); }
  const std::vector<int>& sizes() const { return sizes_; }
  int microbatches() const { return static_cast<int>(first_.size()); }
  int largest() const;
  // The group of `microbatch`: its first id and one past its last (itself alone without groups).
  int first(int microbatch) const { return empty() ? microbatch : first_.at(static_cast<size_t>(microbatch)); }
  int end(int microbatch) const { return empty() ? microbatch + 1 : end_.at(static_cast<size_t>(microbatch)); }
  // The microbatches in the order a group-respecting backward runs them: groups in order, each
  // group's chunks in reverse.
  std::vector<int> backward_order() const;

 private:
  std::vector<int> sizes_, first_, end_;
};

struct ComputeAction {
  ComputeKind kind;
  int stage;
  int microbatch;
  bool operator==(const ComputeAction&) const = default;
};

// "{stage}{F|B|I|W}{microbatch}", as in torch.distributed.pipelining's action CSV.
std::string to_string(const ComputeAction& action);

struct PipelineSchedule {
  std::string name;
  int pp = 1;              // ranks
  int num_stages = 1;      // model chunks in pipeline order
  int microbatches = 1;    // per iteration
  int virtual_stages = 1;  // chunks per rank (v)
  int iterations = 1;      // back-to-back iterations; microbatch ids run over all of them
  // Asynchronous (PipeDream-2BW): no flush between iterations, one-step weight delay.
  bool async = false;
  bool split_backward = false;  // backward as I (input grad) + W (weight grad)
  // With a split backward, the fraction of a microbatch's activations that its W still needs
  // after I (the inputs of the linear layers and their output gradients): freed when W ends.
  double weight_grad_memory = kDefaultWeightGradMemory;
  // Fraction of its rank's full share of layers that each stage holds (1/v when uniform).
  std::vector<double> stage_share;
  // RoundPipe: the backward has its own partition. When > 0, B actions name backward stages
  // 0..num_backward_stages-1 in backward order (stage 0 holds the last layers and runs their
  // forward as well); backward_share is their activation share like stage_share.
  int num_backward_stages = 0;
  std::vector<double> backward_share;
  // Stateless workers: a rank keeps only the running task's working set (boundary activations
  // are offloaded between tasks), so ops may run on any rank.
  bool stateless_workers = false;
  // Costs the generator derived itself (RoundPipe's partitions); empty otherwise.
  StageCosts derived_costs;
  // Chunked long-context training: the microbatches are chunks in groups (ChunkGroups).
  ChunkGroups chunk_groups;
  std::vector<std::vector<ComputeAction>> ranks;  // per rank, in execution order

  size_t num_actions() const;
  // The rank that runs each stage's forwards (the last one seen when workers are stateless).
  std::vector<int> stage_ranks() const;
};

// The actions whose outputs `action` consumes: the previous forward stage's F; for a backward,
// its own F and the next stage's B (or I), or with a separate backward partition the previous
// backward stage (stage 0: the last forward); for W, its I. With chunk groups, also the same
// stage's F of the group's previous chunk (for F) and B of its next chunk (for B).
std::vector<ComputeAction> action_inputs(const PipelineSchedule& schedule, const ComputeAction& action);

struct StageLayers {
  int index = 0;
  int first_layer = 0;
  int num_layers = 0;
  bool has_embedding = false;
  bool has_lm_head = false;
};

// Splits `num_layers` transformer blocks into pp*vpp contiguous stages of equal size (the
// config validator guarantees divisibility); stage 0 holds the embedding, the last the LM head.
std::vector<StageLayers> partition_layers_evenly(int num_layers, int pp, int vpp);

// The model as RoundPipe cuts it: one "atom" per indivisible piece, indexed 0 (the embedding),
// 1..num_layers (the blocks), num_layers + 1 (the final norm and LM head). Its partitions are
// ranges of atoms, and a stateless worker holds the model as these stages.
std::vector<StageLayers> model_atoms(int num_layers);
// The atoms [first, end) a stage holds, in a model of `num_layers` blocks.
std::pair<int, int> atoms_of(const StageLayers& stage, int num_layers);
// The stage `index` made of atoms [first, end).
StageLayers stage_of_atoms(int index, int first, int end, int num_layers);

struct ScheduleRequest {
  std::string name;  // one of schedule_names()
  int pp = 1;
  int microbatches = 1;
  int virtual_stages = 1;  // interleaved_1f1b and looped_bfs (zbv always uses 2)
  // Costs guide the generators that place ops greedily (zb_h1, zbv); uniform F=1 B=2 W=1 if empty.
  StageCosts costs = {};
  double weight_grad_memory = kDefaultWeightGradMemory;
  // Back-to-back iterations to generate (microbatch ids k*microbatches + j for iteration k).
  // Synchronous schedules repeat, each iteration flushing its stages before the next;
  // asynchronous ones (async: 1f1b only, as PipeDream-2BW) never flush.
  int iterations = 1;
  bool async = false;
  // roundpipe partitions per-layer forward costs itself (embedding and LM head included); empty:
  // 4*pp equal layers whose forwards add up to F per rank's share (costs.f of uniform costs).
  std::vector<double> layer_costs = {};
  // Stages given as layer counts (empty: the generator's own). With a backward partition
  // (roundpipe), `costs` holds its forward stages (f) and backward stages (b, b_lead).
  StagePartition partition = {};
  // roundpipe: how tasks reach workers. "rounds" is RoundPipe's own dispatch: microbatches in
  // rounds of up to pp; in a round, forward stage s runs on worker (w0 + s) mod pp and backward
  // stage k on (w0 + forward stages + k) mod pp, each task one stage for the round's microbatches;
  // the next round starts on the worker that frees first. "earliest_free" gives each task, in
  // stage-major order, to the worker that frees first.
  std::string roundpipe_dispatch = "rounds";
  // Chunked training (ChunkGroups; sizes summing to `microbatches`): gpipe and 1f1b only. 1f1b
  // runs a group's backwards once all its forwards and 1F1B's warm-up after them have run on the
  // stage.
  ChunkGroups chunk_groups = {};
};

// Generates a schedule, or throws ConfigError naming pipeline.schedule (unknown name) or the
// parameter that does not fit it (e.g. interleaving needs microbatches divisible by pp).
PipelineSchedule generate_schedule(const ScheduleRequest& request);

// Stages per rank of a schedule: 2 for zbv, `virtual_stages` for interleaved_1f1b and
// looped_bfs, else 1.
int chunks_per_rank(const std::string& schedule, int virtual_stages);

// Whether a schedule places the configured number of virtual stages (v) on each rank
// (interleaved_1f1b, looped_bfs); zbv always places 2, the others 1.
bool takes_virtual_stages(const std::string& schedule);

// Every name generate_schedule() accepts.
const std::vector<std::string>& schedule_names();

}  // namespace rondo
