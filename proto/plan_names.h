// Config names <-> the plan's enums. A name is its enum value's name lower-cased without the
// enum's prefix: pipeline.schedule "interleaved_1f1b" <-> plan::SCHEDULE_INTERLEAVED_1F1B,
// training.optimizer "adamw" <-> plan::OPTIMIZER_ADAMW, model.recompute_granularity "full" <->
// plan::RECOMPUTE_FULL. Which names are accepted is decided
// where they are configured (schedule_names(), the config validator); these only translate.
#pragma once

#include <optional>
#include <string>

#include "proto/plan.pb.h"

namespace rondo {

// The groups whose gradients are summed: the data-parallel groups, or with context parallelism
// the data- and context-parallel ranks together (each computed a share of the rows). Their rings
// are the ones the traffic planner orders.
inline plan::GroupKind gradient_group_kind(const plan::Mesh& mesh) {
  return mesh.cp() > 1 ? plan::GROUP_DP_CP : plan::GROUP_DP;
}

// nullopt for a name that has no value (or names UNSPECIFIED).
std::optional<plan::Schedule> schedule_from_name(const std::string& name);
std::optional<plan::LrDecayStyle> lr_decay_style_from_name(const std::string& name);
std::optional<plan::Optimizer> optimizer_from_name(const std::string& name);
std::optional<plan::RecomputeGranularity> recompute_granularity_from_name(const std::string& name);
std::optional<plan::ChunkBalanceKind> chunk_balance_from_plan_name(const std::string& name);
std::optional<plan::DelayCorrection> delay_correction_from_name(const std::string& name);
std::optional<plan::Device> device_from_name(const std::string& name);
std::optional<plan::DataFormat> data_format_from_name(const std::string& name);
std::optional<plan::CommsBackend> comms_backend_from_name(const std::string& name);
std::optional<plan::AllreduceKind> allreduce_kind_from_name(const std::string& name);
std::optional<plan::MallocPolicy> malloc_policy_from_name(const std::string& name);
std::optional<plan::CpuKernels> cpu_kernels_from_name(const std::string& name);
std::optional<plan::HdpPolicyKind> hdp_policy_kind_from_name(const std::string& name);

// "" for UNSPECIFIED or a value this build does not know.
std::string name_of(plan::Schedule value);
std::string name_of(plan::LrDecayStyle value);
std::string name_of(plan::Optimizer value);
std::string name_of(plan::RecomputeGranularity value);
std::string name_of(plan::ChunkBalanceKind value);
std::string name_of(plan::DelayCorrection value);
std::string name_of(plan::Device value);
std::string name_of(plan::DataFormat value);
std::string name_of(plan::CommsBackend value);
std::string name_of(plan::AllreduceKind value);
std::string name_of(plan::MallocPolicy value);
std::string name_of(plan::CpuKernels value);
std::string name_of(plan::HdpPolicyKind value);

}  // namespace rondo
