#include "worker/plan_contract.h"

#include <algorithm>
#include <string>

#include "common/errors.h"
#include "proto/plan.pb.h"
#include "proto/plan_names.h"

namespace rondo {

namespace {

template <typename Enum>
void require_known(Enum value, const char* field) {
  if (name_of(value).empty()) {
    throw PlanError("plan field " + std::string(field) + " = " + std::to_string(static_cast<int>(value)) +
                    " is not one this worker runs (a plan from another rondo?)");
  }
}

}  // namespace

void check_plan_contract(const plan::Plan& plan, const std::vector<std::string>& model_families) {
  const auto& t = plan.training();
  require_known(t.lr_decay_style(), "training.lr_decay_style");
  require_known(t.optimizer(), "training.optimizer");
  require_known(t.device(), "training.device");
  require_known(t.malloc_policy(), "training.malloc_policy");
  require_known(t.cpu_kernels(), "training.cpu_kernels");
  require_known(plan.model().recompute_granularity(), "model.recompute_granularity");
  require_known(plan.data().format(), "data.format");
  if (plan.data().chunk_size() > 0) require_known(plan.data().chunk_balance(), "data.chunk_balance");
  require_known(plan.comms().backend(), "comms.backend");
  require_known(plan.comms().allreduce(), "comms.allreduce");
  if (plan.asynchronous()) require_known(plan.delay_correction(), "delay_correction");
  const auto& family = plan.model().family();
  if (std::find(model_families.begin(), model_families.end(), family) == model_families.end()) {
    std::string known;
    for (const auto& f : model_families) known += (known.empty() ? "" : ", ") + f;
    throw PlanError("plan field model.family = '" + family + "' is not a family this worker builds (" +
                    known + ")");
  }
  if (plan.comms().backend() != plan::COMMS_BACKEND_MPI) {
    throw PlanError("plan field comms.backend = " + name_of(plan.comms().backend()) +
                    ": this rondo-worker runs its collectives over MPI only (set comms.backend=mpi)");
  }
}

}  // namespace rondo
