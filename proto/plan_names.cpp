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

std::optional<plan::Schedule> schedule_from_name(const std::string& name) {
  return parse<plan::Schedule>("SCHEDULE_", name, plan::Schedule_Parse);
}
std::optional<plan::LrDecayStyle> lr_decay_style_from_name(const std::string& name) {
  return parse<plan::LrDecayStyle>("LR_DECAY_STYLE_", name, plan::LrDecayStyle_Parse);
}
std::optional<plan::Optimizer> optimizer_from_name(const std::string& name) {
  return parse<plan::Optimizer>("OPTIMIZER_", name, plan::Optimizer_Parse);
}

std::optional<plan::DelayCorrection> delay_correction_from_name(const std::string& name) {
  return parse<plan::DelayCorrection>("DELAY_CORRECTION_", name, plan::DelayCorrection_Parse);
}

std::optional<plan::RecomputeGranularity> recompute_granularity_from_name(const std::string& name) {
  return parse<plan::RecomputeGranularity>("RECOMPUTE_", name, plan::RecomputeGranularity_Parse);
}

std::string name_of(plan::Schedule value) {
  return plan::Schedule_IsValid(value) ? short_name("SCHEDULE_", plan::Schedule_Name(value)) : "";
}
std::string name_of(plan::LrDecayStyle value) {
  return plan::LrDecayStyle_IsValid(value) ? short_name("LR_DECAY_STYLE_", plan::LrDecayStyle_Name(value))
                                           : "";
}
std::string name_of(plan::Optimizer value) {
  return plan::Optimizer_IsValid(value) ? short_name("OPTIMIZER_", plan::Optimizer_Name(value)) : "";
}

std::string name_of(plan::DelayCorrection value) {
  return plan::DelayCorrection_IsValid(value)
             ? short_name("DELAY_CORRECTION_", plan::DelayCorrection_Name(value))
             : "";
}

std::optional<plan::ChunkBalanceKind> chunk_balance_from_plan_name(const std::string& name) {
  return parse<plan::ChunkBalanceKind>("CHUNK_BALANCE_", name, plan::ChunkBalanceKind_Parse);
}

std::string name_of(plan::ChunkBalanceKind value) {
  return plan::ChunkBalanceKind_IsValid(value)
             ? short_name("CHUNK_BALANCE_", plan::ChunkBalanceKind_Name(value))
             : "";
}

std::string name_of(plan::RecomputeGranularity value) {
  return plan::RecomputeGranularity_IsValid(value)
             ? short_name("RECOMPUTE_", plan::RecomputeGranularity_Name(value))
             : "";
}

}  // namespace rondo
