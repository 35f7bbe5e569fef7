// Hugging Face checkpoints in and out (`rondo convert`), without LibTorch: a Llama or Qwen3 model
// directory (config.json, model.safetensors or shards listed in model.safetensors.index.json)
// becomes a rondo weights directory — model.safetensors under rondo's parameter names in float32
// (the fused QKV stacked from q_proj, k_proj, v_proj), config.yaml (the model section and
// checkpoint.load pointing here: `rondo run DIR/config.yaml` trains from these weights) and the
// source's config.json kept as hf_config.json — and back, in the source's dtype.
#pragma once

#include <string>
#include <vector>

#include "orchestrator/config.h"

namespace rondo {

struct ConvertOptions {
  std::string from_hf, to;  // Hugging Face directory -> rondo weights directory
  // a rondo weights directory, a checkpoint step or a run directory (its latest checkpoint) ->
  // a Hugging Face directory
  std::string from, to_hf;
  std::string dtype;  // --to-hf: bf16 | fp16 | fp32; empty: the source's (torch_dtype)
};

int run_convert(const ConvertOptions& options);

// checkpoint.load: the directory's model.safetensors holds every parameter the model has, each of
// its shape (llama, qwen2, qwen3); refused naming the key, the file and the tensor otherwise, and with
// what the worker cannot start from yet (MoE, asynchronous pipelines).
void validate_initial_weights(const Config& c);

// The model section a Hugging Face config.json describes; throws ConfigError naming the file and
// the key for an architecture or an option rondo does not build.
ModelConfig model_from_hf_config(const std::string& config_json_path);

// A rondo parameter and the Hugging Face tensors it is made of (the QKV from three, stacked along
// the rows; the rest from one), with the shapes they must have.
struct WeightMapping {
  std::string rondo;
  std::vector<int64_t> shape;
  std::vector<std::string> hf;
  std::vector<int64_t> hf_rows;  // rows each HF tensor contributes
};
std::vector<WeightMapping> hf_weight_mappings(const ModelConfig& m);

}  // namespace rondo
