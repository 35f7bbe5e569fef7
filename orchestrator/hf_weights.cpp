#include "orchestrator/hf_weights.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "common/logging.h"
#include "common/safetensors.h"
#include "orchestrator/model_source.h"

namespace rondo {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int64_t head_size(const ModelConfig& m) {
  return m.kv_channels > 0 ? m.kv_channels : m.hidden_size / m.num_attention_heads;
}

int64_t groups(const ModelConfig& m) {
  return m.num_query_groups > 0 ? m.num_query_groups : m.num_attention_heads;
}

// The families whose weights have a Hugging Face layout here (hf_weight_mappings).
bool has_hf_layout(const std::string& family) {
  return family == "llama" || family == "qwen2" || family == "qwen3";
}

json read_json(const std::string& path) {
  const auto text = read_file(path);
  auto j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw ConfigError(path, "is not valid JSON");
  return j;
}

// Every tensor of a set of safetensors files: name -> the file holding it (each opened once).
class TensorFiles {
 public:
  // A Hugging Face directory: model.safetensors, or the shards model.safetensors.index.json lists.
  static TensorFiles hugging_face(const fs::path& dir) {
    TensorFiles t;
    const auto index = dir / "model.safetensors.index.json";
    if (fs::exists(index)) {
      const auto j = read_json(index.string());
      if (!j.contains("weight_map") || !j["weight_map"].is_object())
        throw CheckpointError(index.string(), "has no weight_map");
      for (const auto& [name, file] : j["weight_map"].items()) {
        const auto* f = t.open((dir / file.get<std::string>()).string());
        if (!f->contains(name))
          throw CheckpointError(f->path(), "the index lists '" + name + "' but this shard lacks it");
        t.where_[name] = f;
      }
      return t;
    }
    if (!fs::exists(dir / "model.safetensors"))
      throw CheckpointError(dir.string(), "holds neither model.safetensors nor model.safetensors.index.json");
    t.add((dir / "model.safetensors").string());
    return t;
  }
  // Whole files, each tensor in one of them only (a checkpoint's model shards).
  void add(const std::string& path) {
    const auto* f = open(path);
    for (const auto& e : f->entries()) {
      if (!where_.emplace(e.name, f).second)
        throw CheckpointError(path, "tensor '" + e.name + "' is in two shards");
    }
  }
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  const SafetensorsFile& file(const std::string& name) const {
    const auto it = where_.find(name);
    if (it == where_.end()) {
      throw CheckpointError(files_.empty() ? "" : files_.begin()->first,
                            "no tensor '" + name + "' in the model's files");
    }
    return *it->second;
  }
  const SafetensorsEntry& at(const std::string& name) const { return file(name).at(name); }
  std::vector<float> read_f32(const std::string& name) const { return file(name).read_f32(name); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [n, f] : where_) out.push_back(n);
    return out;
  }
  // The dtype most of the weights are stored in (what an export writes back by default).
  std::string common_dtype() const {
    std::map<std::string, int> counts;
    for (const auto& [n, f] : where_) ++counts[f->at(n).dtype];
    return std::max_element(counts.begin(), counts.end(),
                            [](auto& a, auto& b) { return a.second < b.second; })
        ->first;
  }

 private:
  const SafetensorsFile* open(const std::string& path) {
    auto& f = files_[path];
    if (!f) f = std::make_unique<SafetensorsFile>(path);
    return f.get();
  }
  std::map<std::string, std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
};

std::string dtype_name(const std::string& torch_dtype) {
  if (torch_dtype == "bfloat16" || torch_dtype == "bf16" || torch_dtype == "BF16") return "BF16";
  if (torch_dtype == "float16" || torch_dtype == "fp16" || torch_dtype == "F16") return "F16";
  if (torch_dtype == "float32" || torch_dtype == "fp32" || torch_dtype == "F32") return "F32";
  throw ConfigError("--dtype", "'" + torch_dtype + "' is not one of bf16, fp16, fp32");
}

std::string torch_dtype_name(const std::string& dtype) {
  return dtype == "BF16" ? "bfloat16" : dtype == "F16" ? "float16" : "float32";
}

std::string config_yaml(const ModelConfig& m, const fs::path& weights, const std::string& source) {
  std::string y = "# Converted from " + source + " by `rondo convert`: train from these weights with\n" +
                  "# `rondo run " + (weights / "config.yaml").string() +
                  "` (add data, parallel and training keys).\n";
  y += "model:\n";
  y += "  family: " + m.family + "\n";
  y += "  num_layers: " + std::to_string(m.num_layers) + "\n";
  y += "  hidden_size: " + std::to_string(m.hidden_size) + "\n";
  y += "  num_attention_heads: " + std::to_string(m.num_attention_heads) + "\n";
  y += "  num_query_groups: " + std::to_string(m.num_query_groups) + "\n";
  y += "  kv_channels: " + std::to_string(m.kv_channels) + "\n";
  y += "  ffn_hidden_size: " + std::to_string(m.ffn_hidden_size) + "\n";
  y += "  vocab_size: " + std::to_string(m.vocab_size) + "\n";
  y += "  seq_length: " + std::to_string(m.seq_length) + "\n";
  y += "  rotary_base: " + json(m.rotary_base).dump() + "\n";
  y += "  rope_scaling_factor: " + json(m.rope_scaling_factor).dump() + "\n";
  y += "  rope_low_freq_factor: " + json(m.rope_low_freq_factor).dump() + "\n";
  y += "  rope_high_freq_factor: " + json(m.rope_high_freq_factor).dump() + "\n";
  y += "  rope_original_max_positions: " + std::to_string(m.rope_original_max_positions) + "\n";
  y += "  norm_epsilon: " + json(m.norm_epsilon).dump() + "\n";
  y += std::string("  tie_embeddings: ") + (m.tie_embeddings ? "true" : "false") + "\n";
  y += "checkpoint:\n  load: " + fs::absolute(weights).string() + "\n";
  return y;
}

// Hugging Face -> rondo.
int convert_from_hf(const ConvertOptions& o) {
  const fs::path src(o.from_hf), out(o.to);
  const auto config_path = (src / "config.json").string();
  const auto m = model_from_hf_config(config_path);
  const auto hf_config = read_json(config_path);
  const auto hf = TensorFiles::hugging_face(src);
  const bool tied = !hf.contains("lm_head.weight") && hf_config.value("tie_word_embeddings", false);
  std::set<std::string> used;
  std::vector<SafetensorsTensor> tensors;
  for (auto map : hf_weight_mappings(m)) {
    // Tied (model.tie_embeddings): lm_head.weight is the embedding's copy a last pipeline stage starts from.
    if (tied && map.rondo == "lm_head.weight") map.hf = {"model.embed_tokens.weight"};
    for (size_t i = 0; i < map.hf.size(); ++i) {
      const auto& e = hf.file(map.hf[i]).at(map.hf[i]);
      const std::vector<int64_t> want{map.hf_rows[i], map.shape.size() > 1 ? map.shape[1] : map.shape[0]};
      const auto expected = map.shape.size() > 1 ? want : std::vector<int64_t>{map.hf_rows[i]};
      if (e.shape != expected) {
        throw CheckpointError(hf.file(map.hf[i]).path(), "tensor '" + map.hf[i] + "' has shape " +
                                                             json(e.shape).dump() + ", config.json says " +
                                                             json(expected).dump());
      }
      used.insert(map.hf[i]);
    }
    tensors.push_back(
        {.name = map.rondo, .shape = map.shape, .values = {}, .dtype = "F32", .produce = [&hf, map] {
           std::vector<float> values;
           for (const auto& name : map.hf) {
             const auto part = hf.file(name).read_f32(name);
             values.insert(values.end(), part.begin(), part.end());
           }
           return values;
         }});
  }
  std::vector<std::string> unused;
  for (const auto& n : hf.names()) {
    if (!used.count(n) && n.find("rotary_emb.inv_freq") == std::string::npos) unused.push_back(n);
  }
  if (!unused.empty()) {
    throw CheckpointError(src.string(), std::to_string(unused.size()) + " tensors rondo's " + m.family +
                                            " has no place for, first '" + unused.front() + "'");
  }
  fs::create_directories(out);
  const std::string source_dtype = hf.common_dtype();
  write_safetensors((out / "model.safetensors").string(), tensors,
                    {{"format", "pt"}, {"rondo_family", m.family}, {"source_dtype", source_dtype}});
  write_file_atomic((out / "config.yaml").string(), config_yaml(m, out, src.string()));
  auto kept = hf_config;
  kept["torch_dtype"] = torch_dtype_name(source_dtype);
  write_file_atomic((out / "hf_config.json").string(), kept.dump(2) + "\n");
  copy_tokenizer_files(src.string(), out.string());
  logging::get("orchestrator")
      ->info("{} ({} layers, hidden {}, {} tensors{}) -> {}", src.string(), m.num_layers, m.hidden_size,
             tensors.size(), m.tie_embeddings ? "; embeddings tied" : "", out.string());
  return kExitOk;
}

// A Hugging Face config.json for rondo's model section (a run that did not start from one).
json hf_config_of(const ModelConfig& m) {
  json c = {{"model_type", m.family},
            {"architectures",
             {m.family == "qwen3"   ? "Qwen3ForCausalLM"
              : m.family == "qwen2" ? "Qwen2ForCausalLM"
                                    : "LlamaForCausalLM"}},
            {"hidden_size", m.hidden_size},
            {"intermediate_size", m.ffn_hidden_size},
            {"num_hidden_layers", m.num_layers},
            {"num_attention_heads", m.num_attention_heads},
            {"num_key_value_heads", groups(m)},
            {"head_dim", head_size(m)},
            {"vocab_size", m.vocab_size},
            {"max_position_embeddings", m.seq_length},
            {"rms_norm_eps", m.norm_epsilon},
            {"rope_theta", m.rotary_base},
            {"hidden_act", "silu"},
            {"attention_bias", false},
            {"tie_word_embeddings", m.tie_embeddings}};
  if (m.rope_scaling_factor > 1) {
    c["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", m.rope_scaling_factor},
                         {"low_freq_factor", m.rope_low_freq_factor},
                         {"high_freq_factor", m.rope_high_freq_factor},
                         {"original_max_position_embeddings", m.rope_original_max_positions}};
  }
  return c;
}

// rondo -> Hugging Face.
// `name` (a linear layer's weight) with its LoRA adapter merged in when the weights have one:
// W + scale B A, B [out, rank] and A [rank, in], accumulated in double.
std::vector<float> merged_weight(const TensorFiles& weights, const std::string& name, double scale) {
  auto w = weights.read_f32(name);
  const auto layer = name.substr(0, name.size() - std::string(".weight").size());
  if (!name.ends_with(".weight") || !weights.contains(layer + ".lora_a")) return w;
  const auto& a_shape = weights.at(layer + ".lora_a").shape;
  const auto& b_shape = weights.at(layer + ".lora_b").shape;
  const auto& w_shape = weights.at(name).shape;
  if (a_shape.size() != 2 || b_shape.size() != 2 || w_shape.size() != 2 || a_shape[0] != b_shape[1] ||
      a_shape[1] != w_shape[1] || b_shape[0] != w_shape[0]) {
    throw CheckpointError(weights.file(layer + ".lora_a").path(),
                          "the LoRA adapter of '" + name + "' does not fit its weight");
  }
  const auto a = weights.read_f32(layer + ".lora_a"), b = weights.read_f32(layer + ".lora_b");
  const int64_t rows = w_shape[0], cols = w_shape[1], rank = a_shape[0];
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      double update = 0;
      for (int64_t r = 0; r < rank; ++r) update += static_cast<double>(b[i * rank + r]) * a[r * cols + j];
      w[i * cols + j] = static_cast<float>(w[i * cols + j] + scale * update);
    }
  }
  return w;
}

int convert_to_hf(const ConvertOptions& o) {
  const fs::path out(o.to_hf);
  const auto src = model_source(o.from);
  const auto& model = src.config.model;
  if (!has_hf_layout(model.family))
    throw ConfigError("model.family",
                      model.family + " has no Hugging Face layout in rondo (llama, qwen2, qwen3)");
  if (model.num_experts > 0) throw ConfigError("model.num_experts", "MoE checkpoints are not exported yet");
  // The source's own config.json keeps its other fields (and its dtype); else one from model.*.
  json hf_config = src.hf_config.empty() ? hf_config_of(model) : read_json(src.hf_config);
  if (src.hf_config.empty()) hf_config["torch_dtype"] = "float32";
  TensorFiles weights;
  for (const auto& f : src.files) weights.add(f);
  const std::string dtype =
      o.dtype.empty() ? dtype_name(hf_config.value("torch_dtype", "float32")) : dtype_name(o.dtype);
  const auto& t = src.config.training;
  const double lora_scale = t.lora_rank > 0 ? t.lora_alpha / static_cast<double>(t.lora_rank) : 0.0;
  std::vector<SafetensorsTensor> tensors;
  for (const auto& map : hf_weight_mappings(model)) {
    // Tied: the embedding is the head (a one-stage checkpoint has no lm_head.weight at all).
    if (model.tie_embeddings && map.rondo == "lm_head.weight") continue;
    const auto& e = weights.at(map.rondo);
    if (e.shape != map.shape) {
      throw CheckpointError(weights.file(map.rondo).path(), "tensor '" + map.rondo + "' has shape " +
                                                                json(e.shape).dump() + ", the model " +
                                                                json(map.shape).dump());
    }
    const int64_t cols = map.shape.size() > 1 ? map.shape[1] : 1;
    // Read (and merged) once for all its Hugging Face slices (q, k and v of the fused QKV), then let go.
    auto whole = std::make_shared<std::vector<float>>();
    int64_t row = 0;
    for (size_t i = 0; i < map.hf.size(); ++i) {
      const int64_t rows = map.hf_rows[i];
      const bool last = i + 1 == map.hf.size();
      tensors.push_back(
          {.name = map.hf[i],
           .shape = map.shape.size() > 1 ? std::vector<int64_t>{rows, cols} : std::vector<int64_t>{rows},
           .values = {},
           .dtype = dtype,
           .produce = [&weights, name = map.rondo, whole, row, rows, cols, last, lora_scale] {
             if (whole->empty()) *whole = merged_weight(weights, name, lora_scale);
             std::vector<float> part(whole->begin() + row * cols, whole->begin() + (row + rows) * cols);
             if (last) std::vector<float>().swap(*whole);
             return part;
           }});
      row += rows;
    }
  }
  fs::create_directories(out);
  write_safetensors((out / "model.safetensors").string(), tensors, {{"format", "pt"}});
  hf_config["torch_dtype"] = torch_dtype_name(dtype);
  hf_config["tie_word_embeddings"] = model.tie_embeddings;
  write_file_atomic((out / "config.json").string(), hf_config.dump(2) + "\n");
  if (!src.tokenizer.empty())
    copy_tokenizer_files(fs::path(src.tokenizer).parent_path().string(), out.string());
  logging::get("orchestrator")
      ->info("{} -> {} ({} tensors, {})", o.from, out.string(), tensors.size(), dtype);
  return kExitOk;
}

}  // namespace

ModelConfig model_from_hf_config(const std::string& path) {
  const auto c = read_json(path);
  const auto key = [&](const std::string& k) -> const json& {
    if (!c.contains(k) || c[k].is_null()) throw ConfigError(path, "needs '" + k + "'");
    return c[k];
  };
  ModelConfig m;
  const std::string type = c.value("model_type", "");
  if (!has_hf_layout(type)) {
    throw ConfigError(path, "model_type '" + type + "' is not one rondo builds (llama, qwen2, qwen3)");
  }
  m.family = type;
  if (c.value("attention_bias", false))
    throw ConfigError(path, "attention_bias: rondo's " + type + " has none");
  if (c.value("mlp_bias", false)) throw ConfigError(path, "mlp_bias: rondo's " + type + " has none");
  m.tie_embeddings = c.value("tie_word_embeddings", false);
  if (c.value("hidden_act", "silu") != "silu")
    throw ConfigError(path, "hidden_act '" + c["hidden_act"].dump() + "' (silu only)");
  if (c.value("use_sliding_window", false)) throw ConfigError(path, "use_sliding_window: not built yet");
  m.num_layers = key("num_hidden_layers").get<int64_t>();
  m.hidden_size = key("hidden_size").get<int64_t>();
  m.num_attention_heads = key("num_attention_heads").get<int64_t>();
  m.num_query_groups = c.value("num_key_value_heads", m.num_attention_heads);
  m.ffn_hidden_size = key("intermediate_size").get<int64_t>();
  m.vocab_size = key("vocab_size").get<int64_t>();
  m.seq_length = std::min<int64_t>(c.value("max_position_embeddings", 4096), 4096);
  const int64_t head = c.value("head_dim", m.hidden_size / std::max<int64_t>(1, m.num_attention_heads));
  if (head * m.num_attention_heads != m.hidden_size) m.kv_channels = head;
  m.rotary_base = c.value("rope_theta", 10000.0);
  m.norm_epsilon = c.value("rms_norm_eps", 1e-6);
  if (c.contains("rope_scaling") && !c["rope_scaling"].is_null()) {
    const auto& r = c["rope_scaling"];
    const std::string kind = r.value("rope_type", r.value("type", ""));
    if (kind != "llama3" && kind != "default")
      throw ConfigError(path, "rope_scaling type '" + kind + "' (llama3 only)");
    if (kind == "llama3") {
      m.rope_scaling_factor = r.value("factor", 8.0);
      m.rope_low_freq_factor = r.value("low_freq_factor", 1.0);
      m.rope_high_freq_factor = r.value("high_freq_factor", 4.0);
      m.rope_original_max_positions = r.value("original_max_position_embeddings", 8192);
    }
  }
  return m;
}

std::vector<WeightMapping> hf_weight_mappings(const ModelConfig& m) {
  const int64_t h = m.hidden_size, f = m.ffn_hidden_size, hd = head_size(m), q = m.num_attention_heads * hd,
                kv = groups(m) * hd;
  std::vector<WeightMapping> out{
      {"token_embedding.weight", {m.vocab_size, h}, {"model.embed_tokens.weight"}, {m.vocab_size}}};
  for (int64_t l = 0; l < m.num_layers; ++l) {
    const std::string b = "block" + std::to_string(l) + ".", hf = "model.layers." + std::to_string(l) + ".";
    out.push_back({b + "norm1.weight", {h}, {hf + "input_layernorm.weight"}, {h}});
    out.push_back(
        {b + "attn.qkv.weight",
         {q + 2 * kv, h},
         {hf + "self_attn.q_proj.weight", hf + "self_attn.k_proj.weight", hf + "self_attn.v_proj.weight"},
         {q, kv, kv}});
    if (m.family == "qwen2") {
      out.push_back(
          {b + "attn.qkv.bias",
           {q + 2 * kv},
           {hf + "self_attn.q_proj.bias", hf + "self_attn.k_proj.bias", hf + "self_attn.v_proj.bias"},
           {q, kv, kv}});
    }
    if (m.family == "qwen3") {
      out.push_back({b + "attn.q_norm.weight", {hd}, {hf + "self_attn.q_norm.weight"}, {hd}});
      out.push_back({b + "attn.k_norm.weight", {hd}, {hf + "self_attn.k_norm.weight"}, {hd}});
    }
    out.push_back({b + "attn.proj.weight", {h, q}, {hf + "self_attn.o_proj.weight"}, {h}});
    out.push_back({b + "norm2.weight", {h}, {hf + "post_attention_layernorm.weight"}, {h}});
    out.push_back({b + "gate.weight", {f, h}, {hf + "mlp.gate_proj.weight"}, {f}});
    out.push_back({b + "up.weight", {f, h}, {hf + "mlp.up_proj.weight"}, {f}});
    out.push_back({b + "down.weight", {h, f}, {hf + "mlp.down_proj.weight"}, {h}});
  }
  out.push_back({"final_norm.weight", {h}, {"model.norm.weight"}, {h}});
  out.push_back({"lm_head.weight", {m.vocab_size, h}, {"lm_head.weight"}, {m.vocab_size}});
  return out;
}

void validate_initial_weights(const Config& c) {
  const auto& dir = c.checkpoint.load;
  if (dir.empty()) return;
  const auto file = (fs::path(dir) / "model.safetensors").string();
  if (!fs::exists(file))
    throw ConfigError("checkpoint.load", file + " does not exist (rondo convert --from-hf writes it)");
  if (!has_hf_layout(c.model.family))
    throw ConfigError("checkpoint.load",
                      "starts llama, qwen2 and qwen3 models so far, not model.family " + c.model.family);
  if (c.model.num_experts > 0)
    throw ConfigError("checkpoint.load", "has no expert weights: set model.num_experts 0");
  if (c.pipeline.async) throw ConfigError("checkpoint.load", "does not start an asynchronous pipeline yet");
  try {
    const SafetensorsFile weights(file);
    for (const auto& map : hf_weight_mappings(c.model)) {
      if (!weights.contains(map.rondo))
        throw ConfigError("checkpoint.load",
                          file + " has no tensor '" + map.rondo + "': another model? (model.*)");
      if (weights.at(map.rondo).shape != map.shape) {
        throw ConfigError("checkpoint.load", file + ": tensor '" + map.rondo + "' has shape " +
                                                 json(weights.at(map.rondo).shape).dump() +
                                                 ", the model.* keys say " + json(map.shape).dump());
      }
    }
  } catch (const CheckpointError& e) {
    throw ConfigError("checkpoint.load", e.what());
  }
}

int run_convert(const ConvertOptions& o) {
  const bool in = !o.from_hf.empty(), back = !o.to_hf.empty();
  if (in == back) throw ConfigError("convert", "give --from-hf DIR --to DIR, or --from DIR --to-hf DIR");
  if (in && o.to.empty()) throw ConfigError("--to", "the rondo weights directory to write");
  if (back && o.from.empty()) throw ConfigError("--from", "the rondo weights directory to export");
  return in ? convert_from_hf(o) : convert_to_hf(o);
}

}  // namespace rondo
