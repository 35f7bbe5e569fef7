#include "pipeline/plan_actions.h"

namespace rondo {

namespace {

plan::ActionKind plan_action_kind(StepKind k) {
  switch (k) {
    case StepKind::kF:
      return plan::ACTION_F;
    case StepKind::kB:
      return plan::ACTION_B;
    case StepKind::kI:
      return plan::ACTION_I;
    case StepKind::kW:
      return plan::ACTION_W;
    case StepKind::kSendF:
      return plan::ACTION_SEND_F;
    case StepKind::kRecvF:
      return plan::ACTION_RECV_F;
    case StepKind::kSendB:
      return plan::ACTION_SEND_B;
    case StepKind::kRecvB:
      return plan::ACTION_RECV_B;
  }
  return plan::ACTION_UNSPECIFIED;
}

}  // namespace

plan::Action make_action(plan::ActionKind kind, int stage, int microbatch, int peer) {
  plan::Action a;
  a.set_kind(kind);
  a.set_stage(static_cast<uint32_t>(stage));
  a.set_microbatch(static_cast<uint32_t>(microbatch));
  a.set_peer(peer);
  return a;
}

void append_plan_actions(const std::vector<PipelineStep>& steps, const std::function<int(int)>& world_rank_of,
                         google::protobuf::RepeatedPtrField<plan::Action>& out) {
  for (const auto& s : steps) {
    auto* a = out.Add();
    *a =
        make_action(plan_action_kind(s.kind), s.stage, s.microbatch, s.peer < 0 ? -1 : world_rank_of(s.peer));
    a->set_ahead(s.ahead);
  }
}

}  // namespace rondo
