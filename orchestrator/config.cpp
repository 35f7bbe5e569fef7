#include "orchestrator/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "data/token_corpus.h"
#include "parallelism/model_parameters.h"
#include "pipeline/pipeline_schedule.h"

namespace rondo {

int64_t ParallelConfig::data_parallel_size() const {
  int64_t model_parallel = tensor_model_parallel_size * pipeline_model_parallel_size * context_parallel_size;
  return model_parallel > 0 ? world_size / model_parallel : 0;
}

#define RONDO_KEY(sec, key, doc)                                          \
  ConfigKey {                                                             \
#sec, #key, doc, [](Config & c) -> ConfigField { return &c.sec.key; } \
  }

const std::vector<ConfigKey>& config_schema() {
  static const std::vector<ConfigKey> schema = {
      RONDO_KEY(model, family,
                "model family: gpt (learned positions, LayerNorm, GELU MLP, biases) | llama (rotary "
                "positions, RMSNorm, SwiGLU MLP, grouped-query attention, no biases) | qwen2 (llama with "
                "biases on queries, keys and values) | qwen3 (llama with RMSNorm on each head's queries "
                "and keys); the LM head untied unless model.tie_embeddings (docs/models.md)"),
      RONDO_KEY(model, num_layers, "transformer blocks"),
      RONDO_KEY(model, hidden_size, "model width"),
      RONDO_KEY(model, num_attention_heads, "attention heads; must divide hidden_size"),
      RONDO_KEY(model, ffn_hidden_size, "MLP inner width"),
      RONDO_KEY(model, vocab_size, "vocabulary; >= 256 for the byte tokenizer"),
      RONDO_KEY(model, seq_length, "tokens per sample"),
      RONDO_KEY(model, recompute_granularity,
                "activation recomputation: none | full (keep each stage's input, rerun its forward before "
                "its backward) | selective (recompute attention scores from q, k, v)"),
      RONDO_KEY(model, num_experts, "mixture of experts: experts per MoE layer (0: dense MLPs; docs/moe.md)"),
      RONDO_KEY(model, moe_router_topk, "experts each token is routed to (top-k of the router's softmax)"),
      RONDO_KEY(model, moe_capacity_factor,
                "an expert's slots per microbatch: factor * tokens * topk / experts; tokens past them "
                "are dropped (they pass through the residual)"),
      RONDO_KEY(model, moe_aux_loss_coeff, "weight of the Switch/GShard load-balancing loss"),
      RONDO_KEY(model, moe_layer_freq, "every f-th block (0, f, 2f, ...) has an MoE MLP"),
      RONDO_KEY(
          model, num_query_groups,
          "llama, qwen2, qwen3: key/value heads of grouped-query attention, dividing num_attention_heads "
          "(0: one per head)"),
      RONDO_KEY(
          model, kv_channels,
          "llama, qwen2, qwen3: each attention head's size (0: hidden_size / num_attention_heads; Qwen3's "
          "differs)"),
      RONDO_KEY(model, rotary_base, "llama, qwen2, qwen3: base of the rotary position frequencies"),
      RONDO_KEY(
          model, rope_scaling_factor,
          "llama, qwen2, qwen3: Llama 3's rotary frequency scaling factor (1: no scaling; Llama 3.1: 8)"),
      RONDO_KEY(model, rope_low_freq_factor, "Llama 3 rotary scaling: low-frequency factor"),
      RONDO_KEY(model, rope_high_freq_factor, "Llama 3 rotary scaling: high-frequency factor"),
      RONDO_KEY(model, rope_original_max_positions,
                "Llama 3 rotary scaling: the context length the frequencies were trained for"),
      RONDO_KEY(model, norm_epsilon, "llama, qwen2, qwen3: RMSNorm's epsilon"),
      RONDO_KEY(model, tie_embeddings,
                "the LM head computes with the token embedding's matrix (Hugging Face's tie_word_embeddings; "
                "with pipeline parallelism the last stage keeps a copy whose gradient is summed with the "
                "first stage's every step)"),
      RONDO_KEY(moe, a2a_overlap_degree,
                "with expert parallelism: chunks an MoE layer's forward is pipelined in, each chunk's "
                "dispatch and combine all-to-alls overlapping the neighbouring chunks' expert compute "
                "(FSMoE); 1: no overlap; auto: the cost model's choice from a profiling pass at start-up "
                "(RUN_DIR/moe_costs.json)"),
      RONDO_KEY(moe, bwd_degree, "the same for the backward (its gradients' all-to-alls)"),
      RONDO_KEY(moe, gradient_partitioning,
                "with comms.overlap_grad_reduce: the gradient reduction's buckets in flight advance between "
                "the MoE backward's expert calls, in the gaps its all-to-alls leave (FSMoE); false: only "
                "as new gradients become ready"),
      RONDO_KEY(moe, cost_file,
                "`rondo plan`'s MoE costs: a run's moe_costs.json (profiled); empty: the config's figures "
                "(pipeline.device_tflops, pipeline.p2p_*)"),
      RONDO_KEY(parallel, world_size, "number of worker ranks"),
      RONDO_KEY(parallel, tensor_model_parallel_size, "tp"),
      RONDO_KEY(parallel, pipeline_model_parallel_size, "pp"),
      RONDO_KEY(parallel, virtual_pipeline_model_parallel_size, "model chunks per pipeline rank"),
      RONDO_KEY(parallel, context_parallel_size,
                "cp: ranks sharing every row, each a zigzag share of its tokens, attention running round "
                "them (ring attention; docs/hdp.md)"),
      RONDO_KEY(parallel, expert_model_parallel_size,
                "ep: ranks sharing a layer's experts (each holds num_experts / ep of them, tokens travel "
                "by all-to-all); divides the data-parallel size"),
      RONDO_KEY(parallel, hdp,
                "hybrid data/context parallelism (ByteScale-style): every step's sequences each get a "
                "context-parallel group sized for them, laid out so all ranks finish together (`rondo plan "
                "--steps N` compares the policies; `rondo run` trains, cpu; with pp > 1 the groups are of "
                "pipelines, gpipe or 1f1b; docs/hdp.md)"),
      RONDO_KEY(
          parallel, hdp_policy,
          "parallel.hdp: rondo (degrees chosen for time, groups packed to the lower bound) | megatron "
          "(Megatron-LM's hybrid CP: power-of-two degrees, longest first onto the least-loaded block) | "
          "static (one DP x CP mesh)"),
      RONDO_KEY(parallel, max_tokens_per_rank,
                "parallel.hdp: tokens of one sequence a rank holds at once (a sequence of L tokens needs a "
                "group of at least L / this); 0: model.seq_length"),
      RONDO_KEY(training, micro_batch_size, "samples per microbatch"),
      RONDO_KEY(training, global_batch_size, "samples per optimizer step"),
      RONDO_KEY(training, train_iters, "optimizer steps"),
      RONDO_KEY(training, lr, "peak learning rate"),
      RONDO_KEY(training, min_lr, "final learning rate of a decaying schedule"),
      RONDO_KEY(training, lr_warmup_iters, "linear warm-up steps"),
      RONDO_KEY(training, lr_decay_style, "constant | linear | cosine"),
      RONDO_KEY(
          training, optimizer,
          "adamw | sgd | muon (Newton-Schulz-orthogonalised momentum for the hidden matrices, AdamW for "
          "the rest; docs/optimizers.md)"),
      RONDO_KEY(training, weight_decay, "decoupled weight decay"),
      RONDO_KEY(training, adam_beta1, "AdamW beta1"),
      RONDO_KEY(training, adam_beta2, "AdamW beta2"),
      RONDO_KEY(training, adam_eps, "AdamW epsilon"),
      RONDO_KEY(training, clip_grad, "global gradient-norm clip; 0 disables"),
      RONDO_KEY(training, seed, "seed of weights and data order"),
      RONDO_KEY(training, exit_interval, "stop after a step divisible by this; 0 never"),
      RONDO_KEY(training, log_interval,
                "a full progress line every N steps (and the last); on a terminal `rondo run` redraws one "
                "line in between"),
      RONDO_KEY(training, num_threads, "compute threads per rank"),
      RONDO_KEY(training, tensorboard,
                "also write each step's metrics as TensorBoard scalars to RUN_DIR/tensorboard/ (tensorboard "
                "--logdir RUN_DIR/tensorboard)"),
      RONDO_KEY(training, eval_interval,
                "evaluate every N steps and after the last: the mean loss (and perplexity) over "
                "training.eval_iters global batches of data.split's validation documents, in metrics.jsonl "
                "(val_loss), TensorBoard and the dashboard; 0: never"),
      RONDO_KEY(training, eval_iters,
                "global batches each evaluation reads (the same ones every time, so evaluations compare)"),
      RONDO_KEY(training, lora_rank,
                "LoRA: the rank of a trainable update (alpha / rank) B A beside each target linear layer, "
                "every other weight frozen (docs/models.md); 0: train every weight"),
      RONDO_KEY(training, lora_alpha, "LoRA: the update's scale is lora_alpha / lora_rank"),
      RONDO_KEY(training, lora_target_modules,
                "LoRA's linear layers, comma separated: all-linear (every block's) or by name: qkv, proj "
                "(attention), fc, fc_out (gpt's MLP), gate, up, down (llama's), lm_head"),
      RONDO_KEY(training, device, "cpu | cuda"),
      RONDO_KEY(training, malloc_policy,
                "caching (freed memory stays in the worker for reuse) | system (glibc's defaults)"),
      RONDO_KEY(training, cpu_kernels,
                "fused (float32 on CPU: GELU and the attention softmax in rondo's one-pass AVX-512/AVX2 "
                "kernels, linear layers on oneDNN's brgemm GEMMs with the bias inside; ATen's where the CPU "
                "has neither) | aten (LibTorch's kernels throughout)"),
      RONDO_KEY(
          training, emulate_compute,
          "every F/B/I/W sleeps for its predicted duration (the plan's prediction) instead of "
          "computing; transfers and reductions stay real: runtime overhead and many ranks on few cores"),
      RONDO_KEY(data, path,
                "builtin (Debian's license texts), a text file or directory, a JSONL file, or an indexed "
                "dataset PREFIX (PREFIX.bin + PREFIX.idx; `rondo data prepare`)"),
      RONDO_KEY(data, format,
                "auto | text | jsonl | indexed | lognormal (auto: indexed when PREFIX.idx exists, jsonl for "
                "*.jsonl, lognormal for the path `lognormal`)"),
      RONDO_KEY(data, split,
                "documents held out, Megatron's way: weights of the training, validation and test parts "
                "(98,2 or 969,30,1), each a consecutive range of the corpus's documents; training reads the "
                "first, evaluation the second; empty: all documents train"),
      RONDO_KEY(data, lognormal_documents, "data.path lognormal: documents in the synthetic mix"),
      RONDO_KEY(data, lognormal_mu, "data.path lognormal: mean of ln(document length); median length e^mu"),
      RONDO_KEY(data, lognormal_sigma, "data.path lognormal: standard deviation of ln(document length)"),
      RONDO_KEY(data, lognormal_max_length, "data.path lognormal: lengths clamped to [1, this]"),
      RONDO_KEY(data, lognormal_seed, "data.path lognormal: seed of the lengths and of each document's text"),
      RONDO_KEY(data, pack,
                "documents packed into each sample with attention confined to each document, positions "
                "restarting and no target across a document boundary"),
      RONDO_KEY(data, pad,
                "one document per sample, from its start, cut at model.seq_length and padded: the targets "
                "past its end are not counted (the padded baseline of packing and chunking)"),
      RONDO_KEY(data, chunk_size,
                "chunked long-context training: each microbatch's sequences (documents with data.pack, "
                "else rows) packed or split into chunks of at most this many tokens (with pipeline "
                "parallelism: each row's chunks, the schedule's microbatches; gpipe or 1f1b); 0: off"),
      RONDO_KEY(data, chunk_balance,
                "tokens (equal-token chunks, ChunkFlow) | cost (boundaries that balance attention cost)"),
      RONDO_KEY(data, chunks_in_memory,
                "chunked training: the last K chunks keep their activations, earlier ones are recomputed"),
      RONDO_KEY(
          data, tokens_per_step,
          "parallel.hdp: tokens of whole documents (each cut at model.seq_length) in a step's batch; 0: "
          "training.global_batch_size x model.seq_length"),
      RONDO_KEY(checkpoint, interval, "save every N steps and after the last; 0: only at exit_interval"),
      RONDO_KEY(checkpoint, resume, "resume from the run directory's checkpoint if present"),
      RONDO_KEY(checkpoint, resume_step, "resume from this step instead of latest; 0 latest"),
      RONDO_KEY(checkpoint, load,
                "start from the weights in this directory (its model.safetensors, written by `rondo convert "
                "--from-hf`) with a fresh optimizer, unless the run directory has a checkpoint to resume"),
      RONDO_KEY(pipeline, schedule, "gpipe | 1f1b | interleaved_1f1b | looped_bfs | zb_h1 | zbv | roundpipe"),
      RONDO_KEY(pipeline, stage_partition,
                "transformer layers per stage in pipeline order, e.g. 3,3,2,0 (pp x chunks per rank "
                "entries; the first stage holds the embedding, the last the LM head); empty: equal stages"),
      RONDO_KEY(pipeline, roundpipe_dispatch,
                "rounds (RoundPipe's: stage s of a round of pp microbatches on worker w0+s) | earliest_free"),
      RONDO_KEY(pipeline, h2d_bandwidth_gbps,
                "roundpipe: GB/s of a worker's host link, over which each task's stage weights arrive "
                "(prefetched during the previous task) and its gradients leave"),
      RONDO_KEY(pipeline, async,
                "1f1b (PipeDream-2BW) or roundpipe: no flush between steps; step t computes on the weights "
                "before step t-1's update (one-step delay), its optimizer step overlaps step t+1"),
      RONDO_KEY(pipeline, delay_correction,
                "pipeline.async: none | error_feedback (Zmushko et al. 2026) | weight_prediction (compute on "
                "the weights extrapolated by the last update: error_feedback's compute points) | "
                "velocity_prediction (PipeMare/SpecTrain: extrapolated along the updates' moving average)"),
      RONDO_KEY(pipeline, device_tflops, "sustained TFLOP/s of one device (step-time prediction)"),
      RONDO_KEY(pipeline, p2p_latency_s, "latency of a transfer between pipeline ranks"),
      RONDO_KEY(pipeline, p2p_bandwidth_gbps, "bandwidth between pipeline ranks, GB/s"),
      RONDO_KEY(pipeline, memory_cap_gb, "device memory per rank the plan must fit, GB; 0: no cap"),
      RONDO_KEY(comms, backend, "mpi | nccl"),
      RONDO_KEY(comms, allreduce, "ring (rondo's, timed per connection) | native (the library's)"),
      RONDO_KEY(comms, timing_recorder, "record every collective in the flight recorder"),
      RONDO_KEY(comms, timing_recorder_blocks,
                "measuring aid: N > 0 records N steps, then pauses the recorder for N, and so on, so one run "
                "measures its cost (metrics rows say `recorded`); 0: every step"),
      RONDO_KEY(comms, timeout_s, "deadline of every communication wait"),
      RONDO_KEY(comms, recorder_capacity, "collectives kept in the flight recorder ring"),
      RONDO_KEY(comms, overlap_grad_reduce,
                "allreduce gradients in buckets during the backward; false: one allreduce after it"),
      RONDO_KEY(comms, bucket_size_mb, "gradient bucket size, MiB (the first bucket is at most 1 MiB)"),
      RONDO_KEY(comms, emulated_link_gbps,
                "emulate a link of this many GB/s in rondo's collectives (tests, benchmarks); 0: off"),
      RONDO_KEY(comms, avoid_links,
                "directed links the ring allreduce must not use, SRC>DST world ranks, comma separated (a "
                "slow_link verdict's link); each data-parallel ring is ordered around them"),
      RONDO_KEY(topology, leaves,
                "leaf switches of the cluster's leaf-spine fabric, for traffic planning (each data-parallel "
                "ring ordered to leave each leaf once, `rondo plan --traffic`) and HDP's groups (on one host "
                "where they can: docs/hdp.md); 0: no fabric model"),
      RONDO_KEY(topology, hosts_per_leaf, "hosts under each leaf switch"),
      RONDO_KEY(topology, spines, "spine switches, each wired to every leaf"),
      RONDO_KEY(topology, host_gbps,
                "each host's link to its leaf, each direction (Gbit/s); HDP: a ring between hosts gets its "
                "ranks' share"),
      RONDO_KEY(topology, spine_gbps, "each leaf-spine link, each direction (Gbit/s)"),
      RONDO_KEY(topology, ranks_per_host, "ranks on each host when topology.rank_hosts is empty"),
      RONDO_KEY(topology, rank_hosts,
                "each rank's host (0 .. leaves * hosts_per_leaf - 1), comma separated (a fragmented "
                "placement); empty: rank r on host r / ranks_per_host"),
      RONDO_KEY(topology, degraded_links,
                "directed fabric links to keep traffic off, comma separated: leafL>spineS, spineS>leafL, "
                "hostH>leaf, leaf>hostH"),
      RONDO_KEY(topology, channels, "parallel flows per ring edge (NCCL's channels), each with its own path"),
      RONDO_KEY(launch, launcher, "auto (srun inside a Slurm allocation, else mpirun) | mpirun | srun"),
      RONDO_KEY(launch, timeout_s, "deadline of the whole job"),
      RONDO_KEY(launch, mpirun_args, "extra mpirun arguments, space separated"),
      RONDO_KEY(launch, srun_args, "extra srun arguments, space separated"),
      RONDO_KEY(
          launch, bind,
          "auto (mpirun binds each rank to its share of this machine's cores when the ranks fit and "
          "neither launch.mpirun_args nor the environment names hosts, a binding or a mapping) | none | "
          "core; srun binds by Slurm's own --cpu-bind"),
      RONDO_KEY(launch, max_restarts,
                "relaunches from the latest checkpoint after a rank dies, hangs or times out; 0: none"),
      RONDO_KEY(launch, control_address, "host:port the coordinator's control plane listens on; port 0: any"),
      RONDO_KEY(launch, heartbeat_interval_s, "how often each worker tells the coordinator it is alive"),
      RONDO_KEY(launch, heartbeat_timeout_s, "a rank silent this long ends the attempt as hung"),
      RONDO_KEY(
          launch, register_timeout_s,
          "a rank that has not registered with the coordinator this long after the launch ends the attempt"),
      RONDO_KEY(launch, dashboard_port, "the live dashboard, /metrics and /api/state; 0: off"),
      RONDO_KEY(launch, dashboard_address, "the address the dashboard listens on"),
      RONDO_KEY(faults, slow_rank_share,
                "a rank is a slow-rank suspect in a step when the others waited this share of the step "
                "for it (late into collectives, late taking in transfers)"),
      RONDO_KEY(faults, slow_link_factor,
                "a link is a slow-link suspect when its typical transfer takes this many times as long per "
                "byte as the other links'"),
      RONDO_KEY(
          faults, slow_stage_factor,
          "pipelines: a rank is a slow-rank suspect when its compute over its stages' predicted seconds "
          "is this many times the other ranks' (a stage slow from the start)"),
      RONDO_KEY(faults, slow_link_share,
                "a slow-link suspect's transfers also take at least this share of the step"),
      RONDO_KEY(faults, window, "steps a suspect is judged over"),
      RONDO_KEY(faults, persist, "a suspect in this many steps of the window is a fault (a verdict)"),
      RONDO_KEY(
          faults, policy,
          "report (verdicts are events) | restart (a slow rank: checkpoint and stop; then, or after a "
          "hang or a crash, resume with fewer ranks, without the rank's host when there are several) | "
          "replan (a slow link between two ranks: the gradient rings re-planned around it while the job "
          "runs, as comms.avoid_links would; an asynchronous or stateless run checkpoints, stops and "
          "resumes at once; a slow rank: checkpoint, stop and resume at once with fewer layers on its "
          "pipeline stage, pipeline.stage_partition re-cut for the measured speeds, or without it where "
          "no partition helps)"),
  };
  return schema;
}

#undef RONDO_KEY

namespace {

const ConfigKey* find_key(const std::string& section, const std::string& name) {
  for (const auto& k : config_schema()) {
    if (k.section == section && k.name == name) return &k;
  }
  return nullptr;
}

std::string known_keys_of(const std::string& section) {
  std::string out;
  for (const auto& k : config_schema()) {
    if (k.section != section) continue;
    if (!out.empty()) out += ", ";
    out += k.name;
  }
  return out;
}

std::string known_sections() {
  std::vector<std::string> names;
  for (const auto& k : config_schema()) {
    if (std::find(names.begin(), names.end(), k.section) == names.end()) names.push_back(k.section);
  }
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// Assigns one scalar to its field, converting by the field's type.
void assign(Config& config, const ConfigKey& key, const YAML::Node& node, const std::string& where) {
  const std::string full = key.full_name();
  if (!node.IsScalar()) throw ConfigError(full, "expected a single value" + where);
  const std::string text = node.Scalar();
  std::visit(
      [&](auto* field) {
        using T = std::remove_pointer_t<decltype(field)>;
        try {
          if constexpr (std::is_same_v<T, int64_t>) {
            *field = node.as<int64_t>();
          } else if constexpr (std::is_same_v<T, double>) {
            *field = node.as<double>();
            if (!std::isfinite(*field)) throw YAML::Exception(YAML::Mark(), "not finite");
          } else if constexpr (std::is_same_v<T, bool>) {
            *field = node.as<bool>();
          } else {
            *field = text;
          }
        } catch (const YAML::Exception&) {
          const char* type = std::is_same_v<T, int64_t>  ? "an integer"
                             : std::is_same_v<T, double> ? "a number"
                                                         : "true or false";
          throw ConfigError(full, std::string("expected ") + type + ", got '" + text + "'" + where);
        }
      },
      key.field(config));
}

const ConfigKey& key_or_throw(const std::string& section, const std::string& name, const std::string& where) {
  if (const auto* key = find_key(section, name)) return *key;
  bool section_known = !known_keys_of(section).empty();
  if (!section_known) {
    throw ConfigError(section, "unknown section" + where + " (known sections: " + known_sections() + ")");
  }
  throw ConfigError(section + "." + name, "unknown key" + where + " (known keys of " + section + ": " +
                                              known_keys_of(section) + ")");
}

void apply_override(Config& config, const std::string& item) {
  auto eq = item.find('=');
  auto dot = item.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq) {
    throw ConfigError(item.substr(0, eq), "--set expects section.key=value, got '" + item + "'");
  }
  const std::string section = item.substr(0, dot);
  const std::string name = item.substr(dot + 1, eq - dot - 1);
  const std::string where = " in --set";
  const ConfigKey& key = key_or_throw(section, name, where);
  YAML::Node value;
  std::string raw = item.substr(eq + 1);
  try {
    value = YAML::Load(raw);
  } catch (const YAML::Exception&) {
    value = YAML::Node(raw);
  }
  if (value.IsNull()) value = YAML::Node(raw);
  assign(config, key, value, " in --set");
}

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  Config config;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(source, "invalid YAML at line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (root && !root.IsNull()) {
    if (!root.IsMap()) throw ConfigError(source, "expected a mapping of sections at the top");
    for (const auto& section : root) {
      const auto section_name = section.first.as<std::string>();
      const std::string where = " in " + source;
      if (!section.second.IsMap()) {
        key_or_throw(section_name, "", where);  // unknown section reports first
        throw ConfigError(section_name, "expected a mapping of keys" + where);
      }
      for (const auto& item : section.second) {
        const auto name = item.first.as<std::string>();
        const ConfigKey& key = key_or_throw(section_name, name, where);
        assign(config, key, item.second, where);
      }
    }
  }
  for (const auto& o : overrides) apply_override(config, o);
  validate(config);
  return config;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  if (!std::filesystem::is_regular_file(path)) {
    throw ConfigError(path, "config file not found or not a regular file");
  }
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error& e) {
    throw ConfigError(path, e.what());
  }
  return parse_config(text, path, overrides);
}

std::string schema_markdown() {
  Config defaults;
  std::ostringstream out;
  out << "| key | type | default | meaning |\n| --- | --- | --- | --- |\n";
  for (const auto& key : config_schema()) {
    std::visit(
        [&](auto* field) {
          using T = std::remove_pointer_t<decltype(field)>;
          const char* type = std::is_same_v<T, int64_t>  ? "int"
                             : std::is_same_v<T, double> ? "float"
                             : std::is_same_v<T, bool>   ? "bool"
                                                         : "string";
          std::ostringstream value;
          if constexpr (std::is_same_v<T, bool>) {
            value << (*field ? "true" : "false");
          } else {
            value << *field;
          }
          std::string doc;  // a '|' inside a cell would end it
          for (const char ch : std::string(key.doc)) {
            if (ch == '|') doc += '\\';
            doc += ch;
          }
          out << "| `" << key.full_name() << "` | " << type << " | `" << value.str() << "` | " << doc
              << " |\n";
        },
        key.field(defaults));
  }
  return out.str();
}

std::string shortest_float(double value) {
  // The shortest text that parses back to the same double (0.9, not 0.90000000000000002).
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  std::string s = ec == std::errc() ? std::string(buf, end) : std::to_string(value);
  // YAML reads 3 as an integer: keep a float a float.
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string to_yaml(const Config& config) {
  Config copy = config;  // field accessors take a mutable Config
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::string section;
  for (const auto& key : config_schema()) {
    if (key.section != section) {
      if (!section.empty()) out << YAML::EndMap;
      section = key.section;
      out << YAML::Key << section << YAML::Value << YAML::BeginMap;
    }
    out << YAML::Key << key.name << YAML::Value;
    std::visit(
        [&](auto* field) {
          using T = std::remove_pointer_t<decltype(field)>;
          if constexpr (std::is_same_v<T, double>) {
            out << shortest_float(*field);
          } else if constexpr (std::is_same_v<T, std::string>) {
            out << YAML::DoubleQuoted << *field;
          } else {
            out << *field;
          }
        },
        key.field(copy));
  }
  if (!section.empty()) out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace rondo
