#include "pipeline/exec/step_schedule.h"

#include <string>
#include <utility>

#include "common/errors.h"
#include "pipeline/plan_actions.h"
#include "pipeline/transfer_lowering.h"
#include "proto/plan_names.h"

namespace rondo {

namespace {

// World ranks of `me`'s pipeline, by pipeline rank.
std::vector<int> pipeline_world_ranks(const plan::Plan& plan, const plan::RankPlan& me) {
  std::vector<int> out(plan.mesh().pp(), -1);
  const auto& c = me.coords();
  for (const auto& r : plan.ranks()) {
    const auto& o = r.coords();
    if (o.tp() == c.tp() && o.cp() == c.cp() && o.ep() == c.ep() && o.dp() == c.dp() && o.pp() < out.size())
      out[o.pp()] = static_cast<int>(r.rank());
  }
  return out;
}

}  // namespace

google::protobuf::RepeatedPtrField<plan::Action> pipeline_step_actions(const plan::Plan& plan, int rank,
                                                                       const ScheduleRequest& request,
                                                                       const std::function<bool(int)>& keep) {
  const auto& me = plan.ranks(rank);
  google::protobuf::RepeatedPtrField<plan::Action> out;
  if (request.microbatches > 0) {  // a step without any has only its closing actions
    PipelineSchedule schedule;
    try {
      schedule = generate_schedule(request);
    } catch (const ConfigError& e) {
      throw PlanError(std::string("plan: a step's schedule: ") + e.what());
    }
    const auto world = pipeline_world_ranks(plan, me);
    google::protobuf::RepeatedPtrField<plan::Action> all;
    append_plan_actions(
        lower_transfers(schedule).at(me.coords().pp()),
        [&](int pp) {
          const int r = world.at(static_cast<size_t>(pp));
          if (r < 0)
            throw PlanError("plan: rank " + std::to_string(rank) + " has no pipeline rank " +
                            std::to_string(pp));
          return r;
        },
        all);
    for (auto& a : all)
      if (!keep || keep(static_cast<int>(a.microbatch()))) *out.Add() = std::move(a);
  }
  for (const auto& a : me.actions()) {
    if (a.kind() == plan::ACTION_ALLREDUCE || a.kind() == plan::ACTION_OPTIM) *out.Add() = a;
  }
  return out;
}

StepSchedule chunked_step_schedule(const plan::Plan& plan, int rank, const ChunkGroups& groups,
                                   std::vector<int64_t> tokens) {
  if (static_cast<int>(tokens.size()) != groups.microbatches()) {
    throw PlanError("rank " + std::to_string(rank) + ": " + std::to_string(tokens.size()) + " chunks in " +
                    std::to_string(groups.microbatches()) + " chunk groups' places");
  }
  ScheduleRequest req{
      name_of(plan.schedule()), static_cast<int>(plan.mesh().pp()), groups.microbatches(), 1, {}};
  req.chunk_groups = groups;
  StepSchedule out;
  out.actions = pipeline_step_actions(plan, rank, req);
  const int keep = static_cast<int>(plan.data().chunks_in_memory());
  for (int mb = 0; mb < groups.microbatches(); ++mb)
    out.recompute.push_back(mb - groups.first(mb) < groups.end(mb) - groups.first(mb) - keep);
  out.tokens = std::move(tokens);
  return out;
}

}  // namespace rondo
