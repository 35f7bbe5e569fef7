// HDP with pipeline parallelism (ByteScale's PP case): the HDP planner (hdp_planner.h) plans a
// batch over the pipelines -- each a replica of the model cut into `stages` stages, one rank per
// stage -- as if each were one rank: a sequence on a group of d pipelines is split over them on
// every stage (its ring attention at stage s runs among the group's stage-s ranks), short
// sequences are packed alone on a pipeline, and every pipeline's work is balanced in time. A
// pipeline then runs its sub-batches as the microbatches of a 1F1B (or GPipe) schedule.
//
// Waves: a sub-batch on a group must be the same microbatch of every member's schedule, or two
// pipelines could each wait in one group for the other to reach another (1F1B interleaves the
// forwards and backwards of microbatches by their index). So every pipeline runs one template
// schedule of `waves` microbatches, leaving out the waves in which it has nothing, and a group's
// sub-batch is the same wave on all its members. Waves follow each pipeline's order (the
// planner's timeline): a sub-batch alone takes its pipeline's next wave, a group's the first wave
// all its members have free. Why no rank waits forever: order every action of every rank by its
// place in one topological order of the template. A rank's actions keep the template's order; a
// transfer joins the same wave on adjacent stages of one pipeline, present on both or on neither;
// a group's forward or backward joins the same action of the template on its members. Every wait
// is therefore for an action earlier in that order, or for the same action on a group's member,
// and none is circular. Lighter pipelines get more, smaller microbatches and heavier ones fewer,
// as ByteScale's balance scheduler has them.
//
// The step is simulated: each stage's forward takes a third of the sub-batch's seconds over the
// stages and its backward two thirds, the activations between stages cross a link of the cost
// model's bandwidth, and a group's forward or backward on a stage starts when all its members
// are ready for it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "parallelism/context_parallel_cost.h"
#include "parallelism/hdp_planner.h"

namespace rondo {

struct HdpPipelinePlan {
  HdpPlan hdp;  // over the pipelines: placements' and sub-batches' ranks are pipeline indices
  int64_t stages = 1;
  std::string schedule = "1f1b";              // the template's (hdp_wave_schedule)
  int64_t waves = 0;                          // the template's microbatches
  std::vector<std::vector<int64_t>> wave;     // [pipeline][sub-batch]: its wave
  std::vector<std::vector<int64_t>> in_wave;  // [pipeline][wave]: its sub-batch, or -1
  // Simulated: each rank's busy seconds ([pipeline][stage]) and the step (the last one's finish).
  std::vector<std::vector<double>> busy_s;
  double step_s = 0;

  // The sub-batch pipeline `pipeline` runs in `wave`, or -1 when it has none there.
  int64_t sub_batch_in(int64_t pipeline, int64_t wave) const;
  double busy_max_over_mean() const;  // over every rank of every pipeline
};

// The template schedule waves run: `schedule` (pipeline.schedule: 1f1b or gpipe, else ConfigError
// naming it) with several stages; with one, 1f1b (each sub-batch's forward then its backward).
std::string hdp_wave_schedule(int64_t stages, const std::string& schedule);

// A sub-batch's seconds (forward and backward, the whole model) as the plan's placements price them.
double hdp_sub_batch_seconds(const HdpPlan& plan, const HdpSubBatch& sub_batch);

// `hdp` (planned over the pipelines) in waves on pipelines of `stages` stages running
// hdp_wave_schedule(stages, schedule), and its step simulated.
HdpPipelinePlan plan_hdp_waves(HdpPlan hdp, int64_t stages, const std::string& schedule,
                               const ContextParallelCost& cost);

// plan_hdp over `options.ranks` pipelines, then plan_hdp_waves.
HdpPipelinePlan plan_hdp_pipelines(const std::vector<int64_t>& lengths, HdpPolicy policy,
                                   const HdpOptions& options, int64_t stages, const std::string& schedule,
                                   const ContextParallelCost& cost);

}  // namespace rondo
