// Text generation from a trained or converted model (`rondo generate`): the whole model on one
// process, its weights from safetensors files (a weights directory's model.safetensors, or a
// checkpoint's model shards, each parameter in one of them), the prompt run once and then one token
// at a time against a cache of every layer's keys and values (the chunk path's past keys: each new
// token attends to the cached ones, rotated at their own positions). Greedy at temperature 0,
// otherwise sampled from softmax(logits / temperature) cut to the smallest set of tokens whose
// probability reaches top_p (nucleus), from a seeded generator.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proto/plan.pb.h"

namespace rondo {

struct GenerateOptions {
  std::vector<std::string> weight_files;
  std::vector<int64_t> prompt;
  int64_t max_tokens = 32;
  double temperature = 0.0;
  double top_p = 1.0;
  uint64_t seed = 0;
  std::vector<int64_t> stop_ids;  // generation ends after one of these (an end-of-text token)
  bool kv_cache = true;           // false: the whole sequence again for every token (the cache's reference)
};

struct Generated {
  std::vector<int64_t> ids;          // not the prompt; stops early at the model's seq_length
  std::vector<float> prompt_logits;  // the logits after the prompt (what the first token is drawn from)
};
Generated generate(const plan::Plan& plan, const GenerateOptions& options);

}  // namespace rondo
