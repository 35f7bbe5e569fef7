#include "orchestrator/generate_command.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "data/text_codec.h"
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

  // The tokenizer: --tokenizer, else the one that came with the weights, else bytes. Its special
  // tokens go into the prompt; generation stops at its end-of-text token.
  TextCodec codec(o.tokenizer.empty() ? src.tokenizer : o.tokenizer);
  if (!codec.is_bytes() && codec.vocab_size() > one.model.vocab_size) {
    throw ConfigError("--tokenizer", codec.name() + " has " + std::to_string(codec.vocab_size()) +
                                         " ids, more than the model's vocab_size " +
                                         std::to_string(one.model.vocab_size));
  }
  std::vector<int32_t> prompt;
  codec.encode(o.prompt, prompt, /*add_special_tokens=*/true);

  char tmpl[] = "/tmp/rondo-generate-XXXXXX";
  const char* made = ::mkdtemp(tmpl);
  if (!made) throw Error("cannot create a temporary directory under /tmp");
  const fs::path tmp(made);
  write_file_atomic((tmp / "plan.pb").string(), plan.SerializeAsString());
  std::string ids;
  for (int64_t id : prompt) {
    if (!ids.empty()) ids.push_back(',');
    ids.append(std::to_string(id));
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
  if (const auto stop = codec.end_of_text()) argv.insert(argv.end(), {"--stop-id", std::to_string(*stop)});
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
  const std::string text =
      codec.decode(generated["ids"].get<std::vector<int32_t>>(), /*skip_special_tokens=*/true);
  if (o.json) {
    nlohmann::json out = {
        {"prompt_ids", prompt}, {"ids", generated["ids"]}, {"text", text}, {"tokenizer", codec.name()}};
    if (o.logits) out["prompt_logits"] = generated["prompt_logits"];
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s%s\n", o.prompt.c_str(), text.c_str());
  }
  return kExitOk;
}

}  // namespace rondo
