// Where a model's weights are, for the commands that read a model without training it (`rondo
// convert --to-hf`, `rondo generate`): a rondo weights directory (`rondo convert --from-hf`:
// model.safetensors, config.yaml, hf_config.json), a checkpoint step of a run (its model-*.safetensors
// shards; the run's config.yaml two levels up) or a run directory (its latest checkpoint). A
// run's tokenizer is the one of the weights directory it started from (checkpoint.load).
#pragma once

#include <string>
#include <vector>

#include "orchestrator/config.h"

namespace rondo {

struct ModelSource {
  Config config;                   // the model section decides the model
  std::vector<std::string> files;  // safetensors files, each parameter in one of them
  std::string hf_config;           // the Hugging Face config.json it came from, when known ("": none)
  std::string tokenizer;           // a tokenizer.json that came with it ("": none)
};

// The Hugging Face tokenizer files a model directory carries along (tokenizer.json and
// tokenizer_config.json): copied from `from` into `to` where present.
void copy_tokenizer_files(const std::string& from, const std::string& to);

// Throws CheckpointError naming the directory when it is none of the three, or a step without
// safetensors model shards (written before checkpoints kept them).
ModelSource model_source(const std::string& dir);

}  // namespace rondo
