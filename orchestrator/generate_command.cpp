#include "orchestrator/generate_command.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "launch/process_runner.h"
#include "orchestrator/config.h"
#include "orchestrator/model_source.h"
#include "orchestrator/plan_builder.h"
#include "orchestrator/run_command.h"

namespace rondo {

namespace fs = std::filesystem;

int run_generate(const GenerateCommandOptions& o) {
  if (o.max_tokens < 1) throw ConfigError("--max-tokens", "must be >= 1");
  if (o.temperature < 0) throw ConfigError("--temperature", "must be >= 0 (0: greedy)");
  if (o.top_p <= 0 || o.top_p > 1) throw ConfigError("--top-p", "must lie in (0, 1]");
  if (o.prompt.empty()) throw ConfigError("--prompt", "is empty");
  const auto src = model_source(o.source);
  // The model alone, on one process: the run's other sections do not apply.
  Config one;
  one.model = src.config.model;
  one.training.seed = src.config.training.seed;
  one.parallel.world_size = 1;
  const auto plan = build_plan(one);

  char tmpl[] = "/tmp/rondo-generate-XXXXXX";
  const char* made = ::mkdtemp(tmpl);
  if (!made) throw Error("cannot create a temporary directory under /tmp");
  const fs::path tmp(made);
  write_file_atomic((tmp / "plan.pb").string(), plan.SerializeAsString());
  std::vector<int64_t> prompt;
  std::string ids;
  for (unsigned char c : o.prompt) {
    prompt.push_back(c);
    if (!ids.empty()) ids.push_back(',');
    ids.append(std::to_string(c));
  }
  std::vector<std::string> argv = {find_worker(o.worker_path),
                                   "generate",
                                   "--plan",
                                   (tmp / "plan.pb").string(),
                                   "--prompt-ids",
                                   ids,
                                   "--max-tokens",
                                   std::to_string(o.max_tokens),
                                   "--temperature",
                                   std::to_string(o.temperature),
                                   "--top-p",
                                   std::to_string(o.top_p),
                                   "--seed",
                                   std::to_string(o.seed)};
  for (const auto& f : src.files) argv.insert(argv.end(), {"--weights", f});
  if (o.no_kv_cache) argv.push_back("--no-kv-cache");
  const auto log = (tmp / "generate.log").string();
  const auto result = run_process(argv, std::chrono::hours(1), log, /*echo=*/false);
  const std::string output = read_file(log);
  fs::remove_all(tmp);
  nlohmann::json generated;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("{\"ids\"")) generated = nlohmann::json::parse(line);
  }
  if (result.exit_code != 0 || generated.is_null()) {
    throw Error("rondo-worker generate failed (status " + std::to_string(result.exit_code) + "): " + output);
  }
  std::string text;  // bytes; an id past them (a larger vocabulary) as U+FFFD
  for (const auto& id : generated["ids"]) {
    const auto v = id.get<int64_t>();
    text += v < 256 ? std::string(1, static_cast<char>(v)) : std::string("\xEF\xBF\xBD");
  }
  if (o.json) {
    nlohmann::json out = {{"prompt_ids", prompt}, {"ids", generated["ids"]}, {"text", text}};
    if (o.logits) out["prompt_logits"] = generated["prompt_logits"];
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s%s\n", o.prompt.c_str(), text.c_str());
  }
  return kExitOk;
}

}  // namespace rondo
