#include "common/logging.h"

#include <cstdlib>
#include <mutex>
#include <sstream>
#include <vector>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace rondo::logging {
namespace {

struct State {
  std::mutex mu;
  int rank = -1;
  std::vector<spdlog::sink_ptr> sinks;
};

State& state() {
  static State s;
  return s;
}

std::string pattern(int rank) {
  std::string who = rank >= 0 ? "rank " + std::to_string(rank) : "rondo";
  return "[%H:%M:%S.%e] [" + who + "] [%n] [%l] %v";
}

}  // namespace

spdlog::level::level_enum level_for(const std::string& spec, const std::string& subsystem) {
  auto level = spdlog::level::info;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto eq = item.find('=');
    if (eq == std::string::npos) {
      if (!item.empty()) level = spdlog::level::from_str(item);
    } else if (item.substr(0, eq) == subsystem) {
      return spdlog::level::from_str(item.substr(eq + 1));
    }
  }
  // spdlog maps unknown names to "off"; a typo must not silence everything.
  if (level == spdlog::level::off && spec.find("off") == std::string::npos) return spdlog::level::info;
  return level;
}

void init(int rank, const std::string& log_file, bool console) {
  auto& s = state();
  std::lock_guard lock(s.mu);
  s.rank = rank;
  s.sinks.clear();
  if (console) s.sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  if (!log_file.empty()) {
    s.sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file, false));
  }
  for (auto& sink : s.sinks) sink->set_pattern(pattern(rank));
  spdlog::drop_all();
}

std::shared_ptr<spdlog::logger> get(const std::string& subsystem) {
  auto& s = state();
  std::lock_guard lock(s.mu);
  if (auto existing = spdlog::get(subsystem)) return existing;
  if (s.sinks.empty()) {
    s.sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    s.sinks.back()->set_pattern(pattern(s.rank));
  }
  auto logger = std::make_shared<spdlog::logger>(subsystem, s.sinks.begin(), s.sinks.end());
  const char* spec = std::getenv("RONDO_LOG");
  logger->set_level(level_for(spec ? spec : "info", subsystem));
  logger->flush_on(spdlog::level::warn);
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace rondo::logging
