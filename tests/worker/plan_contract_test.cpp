// The worker refuses a plan whose enums it does not know, naming the field.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "common/errors.h"
#include "proto/plan.pb.h"
#include "worker/plan_contract.h"

namespace rondo {
namespace {

plan::Plan known_plan() {
  plan::Plan p;
  auto* t = p.mutable_training();
  t->set_lr_decay_style(plan::LR_DECAY_STYLE_COSINE);
  t->set_optimizer(plan::OPTIMIZER_ADAMW);
  t->set_device(plan::DEVICE_CPU);
  t->set_malloc_policy(plan::MALLOC_POLICY_CACHING);
  t->set_cpu_kernels(plan::CPU_KERNELS_FUSED);
  p.mutable_model()->set_recompute_granularity(plan::RECOMPUTE_NONE);
  p.mutable_model()->set_family("gpt");
  p.mutable_data()->set_format(plan::DATA_FORMAT_BUILTIN);
  p.mutable_comms()->set_backend(plan::COMMS_BACKEND_MPI);
  p.mutable_comms()->set_allreduce(plan::ALLREDUCE_KIND_RING);
  return p;
}

std::string refusal(const plan::Plan& p) {
  try {
    check_plan_contract(p, {"gpt"});
  } catch (const PlanError& e) {
    return e.what();
  }
  return "";
}

TEST(PlanContract, AKnownPlanPasses) { EXPECT_EQ(refusal(known_plan()), ""); }

TEST(PlanContract, AnUnknownOrUnsetEnumIsRefusedNamingItsField) {
  const std::vector<std::pair<std::string, std::function<void(plan::Plan&)>>> cases = {
      {"training.device",
       [](plan::Plan& p) { p.mutable_training()->set_device(static_cast<plan::Device>(7)); }},
      {"training.device", [](plan::Plan& p) { p.mutable_training()->set_device(plan::DEVICE_UNSPECIFIED); }},
      {"data.format", [](plan::Plan& p) { p.mutable_data()->set_format(static_cast<plan::DataFormat>(42)); }},
      {"comms.backend",
       [](plan::Plan& p) { p.mutable_comms()->set_backend(plan::COMMS_BACKEND_UNSPECIFIED); }},
      {"comms.allreduce",
       [](plan::Plan& p) { p.mutable_comms()->set_allreduce(static_cast<plan::AllreduceKind>(3)); }},
      {"training.cpu_kernels",
       [](plan::Plan& p) { p.mutable_training()->set_cpu_kernels(plan::CPU_KERNELS_UNSPECIFIED); }},
      {"training.optimizer",
       [](plan::Plan& p) { p.mutable_training()->set_optimizer(static_cast<plan::Optimizer>(9)); }},
  };
  for (const auto& [field, spoil] : cases) {
    auto p = known_plan();
    spoil(p);
    // What a plan from another rondo looks like once it crossed the wire.
    plan::Plan read;
    ASSERT_TRUE(read.ParseFromString(p.SerializeAsString()));
    const auto why = refusal(read);
    EXPECT_NE(why.find("plan field " + field), std::string::npos) << field << ": " << why;
  }
}

TEST(PlanContract, AFamilyTheWorkerDoesNotBuildIsRefusedNamingThoseItDoes) {
  auto p = known_plan();
  p.mutable_model()->set_family("llama");
  EXPECT_NE(refusal(p).find("plan field model.family = 'llama' is not a family this worker builds (gpt)"),
            std::string::npos)
      << refusal(p);
  p.mutable_model()->clear_family();
  EXPECT_NE(refusal(p).find("model.family = ''"), std::string::npos) << refusal(p);
}

TEST(PlanContract, NcclIsRefusedUntilTheWorkerRunsIt) {
  auto p = known_plan();
  p.mutable_comms()->set_backend(plan::COMMS_BACKEND_NCCL);
  EXPECT_NE(refusal(p).find("comms.backend=mpi"), std::string::npos) << refusal(p);
}

}  // namespace
}  // namespace rondo
