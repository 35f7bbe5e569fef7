// Logging: one named spdlog logger per subsystem ("orchestrator", "comms", "worker", ...), every
// line prefixed with the rank. Levels come from RONDO_LOG, e.g. `info,comms=debug`.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace rondo::logging {

// Configures all loggers created afterwards: rank prefix, level from RONDO_LOG, and optionally a
// log file that receives every line as well as stderr. Call once per process, early.
void init(int rank, const std::string& log_file = "", bool console = true);

// The logger of a subsystem, created on first use with the configuration of init().
std::shared_ptr<spdlog::logger> get(const std::string& subsystem);

// Parses a RONDO_LOG value: a default level and per-logger overrides ("info,comms=debug").
// Returns the level for `subsystem`; unknown level names fall back to info.
spdlog::level::level_enum level_for(const std::string& spec, const std::string& subsystem);

}  // namespace rondo::logging
