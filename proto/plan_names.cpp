#include "proto/plan_names.h"

#include <cctype>

namespace rondo {
namespace {

template <typename Enum, typename Parse>
std::optional<Enum> parse(const std::string& prefix, const std::string& name, Parse parse_fn) {
  std::string full = prefix;
  for (char c : name) full += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  Enum value{};
  if (name.empty() || !parse_fn(full, &value) || static_cast<int>(value) == 0) return std::nullopt;
  return value;
}

std::string short_name(const std::string& prefix, const std::string& full) {
  if (full.size() <= prefix.size() || full.compare(0, prefix.size(), prefix) != 0) return "";
  std::string out;
  for (char c : full.substr(prefix.size()))
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out == "unspecified" ? "" : out;
}

}  // namespace

// Both directions for one enum of the plan: FROM(name) and name_of(value).
#define RONDO_PLAN_ENUM_NAMES(Enum, FROM, PREFIX)                                           \
  std::optional<plan::Enum> FROM(const std::string& name) {                                 \
    return parse<plan::Enum>(PREFIX, name, plan::Enum##_Parse);                             \
  }                                                                                         \
  std::string name_of(plan::Enum value) {                                                   \
    return plan::Enum##_IsValid(value) ? short_name(PREFIX, plan::Enum##_Name(value)) : ""; \
  }

RONDO_PLAN_ENUM_NAMES(Schedule, schedule_from_name, "SCHEDULE_")
RONDO_PLAN_ENUM_NAMES(LrDecayStyle, lr_decay_style_from_name, "LR_DECAY_STYLE_")
RONDO_PLAN_ENUM_NAMES(Optimizer, optimizer_from_name, "OPTIMIZER_")
RONDO_PLAN_ENUM_NAMES(RecomputeGranularity, recompute_granularity_from_name, "RECOMPUTE_")
RONDO_PLAN_ENUM_NAMES(ChunkBalanceKind, chunk_balance_from_plan_name, "CHUNK_BALANCE_")
RONDO_PLAN_ENUM_NAMES(DelayCorrection, delay_correction_from_name, "DELAY_CORRECTION_")
RONDO_PLAN_ENUM_NAMES(Device, device_from_name, "DEVICE_")
RONDO_PLAN_ENUM_NAMES(DataFormat, data_format_from_name, "DATA_FORMAT_")
RONDO_PLAN_ENUM_NAMES(CommsBackend, comms_backend_from_name, "COMMS_BACKEND_")
RONDO_PLAN_ENUM_NAMES(AllreduceKind, allreduce_kind_from_name, "ALLREDUCE_KIND_")
RONDO_PLAN_ENUM_NAMES(MallocPolicy, malloc_policy_from_name, "MALLOC_POLICY_")
RONDO_PLAN_ENUM_NAMES(CpuKernels, cpu_kernels_from_name, "CPU_KERNELS_")
RONDO_PLAN_ENUM_NAMES(HdpPolicyKind, hdp_policy_kind_from_name, "HDP_POLICY_")

#undef RONDO_PLAN_ENUM_NAMES

}  // namespace rondo
