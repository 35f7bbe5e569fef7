// `rondo generate SOURCE --prompt TEXT`: what a trained or converted model says. SOURCE is a rondo
// weights directory (`rondo convert --from-hf`), a run directory (its latest checkpoint) or a
// checkpoint step; its config decides the model. The prompt is tokenised by --tokenizer (a Hugging
// Face tokenizer.json), else the tokenizer.json that came with the weights (`rondo convert` keeps
// it), else as bytes; generation stops at the tokenizer's end-of-text token. The model runs in one
// `rondo-worker generate` process (worker/generator.h), and the continuation is printed (`--json`: prompt and
// generated ids, the text and, with `--logits`, the logits after the prompt).
#pragma once

#include <cstdint>
#include <string>

namespace rondo {

struct GenerateCommandOptions {
  std::string source, prompt, worker_path;
  std::string tokenizer;  // a tokenizer.json; "": the source's, else bytes
  int64_t max_tokens = 64;
  double temperature = 0.0;  // 0: greedy
  double top_p = 1.0;
  uint64_t seed = 1234;
  bool json = false;
  bool no_kv_cache = false;
  bool logits = false;  // --json: also the logits after the prompt
};

int run_generate(const GenerateCommandOptions& options);

}  // namespace rondo
