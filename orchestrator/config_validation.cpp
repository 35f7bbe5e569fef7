// Config validation: every check beyond a key's type, each naming its key (docs/config.md lists
// them). parse_config() calls validate() once the file and the overrides are applied.
#include <algorithm>
#include <charconv>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "common/errors.h"
#include "data/document_split.h"
#include "data/token_corpus.h"
#include "orchestrator/config.h"
#include "orchestrator/fabric.h"
#include "orchestrator/hdp_report.h"
#include "orchestrator/hf_weights.h"
#include "parallelism/model_parameters.h"
#include "pipeline/pipeline_schedule.h"

namespace rondo {

namespace {

void require(bool ok, const std::string& key, const std::string& reason) {
  if (!ok) throw ConfigError(key, reason);
}

void require_one_of(const std::string& value, const std::vector<std::string>& allowed,
                    const std::string& key) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw ConfigError(key, "'" + value + "' is not one of: " + list);
}

std::string str(int64_t v) { return std::to_string(v); }

}  // namespace

int64_t moe_degree(const std::string& value, const std::string& key) {
  if (value == "auto") return 0;
  int64_t degree = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), degree);
  if (error != std::errc() || end != value.data() + value.size() || degree < 1 || degree > 64)
    throw ConfigError(key, "'" + value + "' is neither auto nor a number of chunks in [1, 64]");
  return degree;
}

namespace {

// The mixture of experts: the experts, the router, and how expert parallelism splits them.
void validate_moe(const Config& c) {
  const auto& m = c.model;
  const int64_t ep = c.parallel.expert_model_parallel_size;
  require(m.num_experts >= 0, "model.num_experts", "must be >= 0 (0: dense MLPs), got " + str(m.num_experts));
  if (m.num_experts == 0) {
    require(ep == 1, "parallel.expert_model_parallel_size",
            str(ep) + " needs experts to share: set model.num_experts (a dense model has none)");
    return;
  }
  require(m.moe_router_topk >= 1 && m.moe_router_topk <= m.num_experts, "model.moe_router_topk",
          "must lie in [1, model.num_experts=" + str(m.num_experts) + "], got " + str(m.moe_router_topk));
  require(m.moe_capacity_factor > 0, "model.moe_capacity_factor",
          "must be > 0 (an expert's slots: factor * tokens * topk / experts)");
  require(m.moe_aux_loss_coeff >= 0, "model.moe_aux_loss_coeff", "must be >= 0");
  require(m.moe_layer_freq >= 1, "model.moe_layer_freq",
          "must be >= 1 (every f-th block has an MoE MLP), got " + str(m.moe_layer_freq));
  require(ep >= 1 && m.num_experts % ep == 0, "parallel.expert_model_parallel_size",
          str(ep) + " does not divide model.num_experts=" + str(m.num_experts));
  moe_degree(c.moe.a2a_overlap_degree, "moe.a2a_overlap_degree");
  moe_degree(c.moe.bwd_degree, "moe.bwd_degree");
}

// Grouped-query attention and rotary positions: the llama-style families' keys, refused on gpt
// (whose heads all keep their own keys and whose positions are learned) unless left at defaults.
void validate_rotary_family(const ModelConfig& m) {
  const ModelConfig defaults;
  const bool rotary = m.family != "gpt";
  if (!rotary) {
    require(m.num_query_groups == 0 || m.num_query_groups == m.num_attention_heads, "model.num_query_groups",
            "grouped-query attention needs model.family llama, qwen2 or qwen3 (gpt: one key/value head per "
            "head)");
    require(m.kv_channels == 0 || m.kv_channels * m.num_attention_heads == m.hidden_size, "model.kv_channels",
            "gpt's heads split hidden_size evenly (leave it 0)");
    require(m.rotary_base == defaults.rotary_base && m.rope_scaling_factor == defaults.rope_scaling_factor,
            m.rotary_base != defaults.rotary_base ? "model.rotary_base" : "model.rope_scaling_factor",
            "rotary positions need model.family llama, qwen2 or qwen3 (gpt learns its positions)");
    return;
  }
  const int64_t groups = m.num_query_groups == 0 ? m.num_attention_heads : m.num_query_groups;
  require(groups >= 1 && m.num_attention_heads % groups == 0, "model.num_query_groups",
          str(m.num_query_groups) +
              " key/value heads do not divide model.num_attention_heads=" + str(m.num_attention_heads));
  require(m.kv_channels >= 0, "model.kv_channels", "must be >= 0 (0: hidden_size / num_attention_heads)");
  const int64_t head = m.kv_channels > 0 ? m.kv_channels : m.hidden_size / m.num_attention_heads;
  require(head % 2 == 0, m.kv_channels > 0 ? "model.kv_channels" : "model.num_attention_heads",
          "rotary positions need an even head size, got " + str(head));
  require(m.rotary_base > 1, "model.rotary_base", "must be > 1");
  require(m.rope_scaling_factor >= 1, "model.rope_scaling_factor", "must be >= 1 (1: no scaling)");
  require(m.rope_high_freq_factor > m.rope_low_freq_factor && m.rope_low_freq_factor > 0,
          "model.rope_high_freq_factor", "must exceed model.rope_low_freq_factor, both > 0");
  require(m.rope_original_max_positions >= 1, "model.rope_original_max_positions", "must be >= 1");
  require(m.norm_epsilon > 0, "model.norm_epsilon", "must be > 0");
}

void validate_model(const Config& c) {
  const auto& m = c.model;
  require(m.num_layers >= 1, "model.num_layers", "must be >= 1, got " + str(m.num_layers));
  require(m.hidden_size >= 1, "model.hidden_size", "must be >= 1, got " + str(m.hidden_size));
  require(m.num_attention_heads >= 1, "model.num_attention_heads",
          "must be >= 1, got " + str(m.num_attention_heads));
  require(m.hidden_size % m.num_attention_heads == 0, "model.num_attention_heads",
          str(m.num_attention_heads) + " heads do not divide model.hidden_size=" + str(m.hidden_size));
  require(m.ffn_hidden_size >= 1, "model.ffn_hidden_size", "must be >= 1, got " + str(m.ffn_hidden_size));
  require(m.vocab_size >= 256, "model.vocab_size",
          "must be >= 256 for the byte-level tokenizer, got " + str(m.vocab_size));
  require(m.seq_length >= 2, "model.seq_length", "must be >= 2, got " + str(m.seq_length));
  require_one_of(m.family, planned_model_families(), "model.family");
  validate_rotary_family(m);
  require_one_of(m.recompute_granularity, {"none", "full", "selective"}, "model.recompute_granularity");
  validate_moe(c);
}

// The mesh, and how the pipeline's stages cut the model.
void validate_hdp(const Config& c) {
  const auto& p = c.parallel;
  hdp_policy_from_name(p.hdp_policy);  // throws ConfigError naming the key
  require(p.max_tokens_per_rank >= 0, "parallel.max_tokens_per_rank", "must be >= 0 (0: model.seq_length)");
  require(c.data.tokens_per_step >= 0, "data.tokens_per_step", "must be >= 0 (0: global batch x seq_length)");
  if (!p.hdp) return;
  require(p.context_parallel_size == 1, "parallel.context_parallel_size",
          "must be 1 with parallel.hdp: the HDP planner sizes every sequence's context-parallel group");
  require(p.tensor_model_parallel_size == 1, "parallel.hdp",
          "plans the data/context-parallel ranks of whole stages so far; set "
          "parallel.tensor_model_parallel_size to 1");
  if (p.pipeline_model_parallel_size > 1) {  // groups of pipelines in waves (hdp_pipelines.h)
    require(
        c.pipeline.schedule == "1f1b" || c.pipeline.schedule == "gpipe", "pipeline.schedule",
        "must be 1f1b or gpipe with parallel.hdp and pipeline parallelism (got " + c.pipeline.schedule + ")");
    require(p.virtual_pipeline_model_parallel_size <= 1, "parallel.virtual_pipeline_model_parallel_size",
            "must be 1 with parallel.hdp");
  }
  const HdpOptions o = hdp_options(c);
  hdp_min_degree(c.model.seq_length, o);  // the longest sequence must fit a group: names the cap's key
  require(hdp_tokens_per_step(c) >= c.model.seq_length, "data.tokens_per_step",
          str(hdp_tokens_per_step(c)) + " is below model.seq_length=" + str(c.model.seq_length) +
              ": a step must hold the longest sequence");
}

void validate_parallel(const Config& c) {
  const auto& m = c.model;
  const auto& p = c.parallel;
  require(p.world_size >= 1, "parallel.world_size", "must be >= 1, got " + str(p.world_size));
  for (auto [key, value] :
       {std::pair{"parallel.tensor_model_parallel_size", p.tensor_model_parallel_size},
        {"parallel.pipeline_model_parallel_size", p.pipeline_model_parallel_size},
        {"parallel.virtual_pipeline_model_parallel_size", p.virtual_pipeline_model_parallel_size},
        {"parallel.context_parallel_size", p.context_parallel_size},
        {"parallel.expert_model_parallel_size", p.expert_model_parallel_size}}) {
    require(value >= 1, key, "must be >= 1, got " + str(value));
  }
  const int64_t tp = p.tensor_model_parallel_size, pp = p.pipeline_model_parallel_size,
                cp = p.context_parallel_size, vpp = p.virtual_pipeline_model_parallel_size;
  require(p.world_size % (tp * pp * cp) == 0, "parallel.world_size",
          str(p.world_size) + " is not divisible by tp*pp*cp = " + str(tp) + "*" + str(pp) + "*" + str(cp) +
              " = " + str(tp * pp * cp));
  const int64_t dp = p.data_parallel_size();
  require(dp % p.expert_model_parallel_size == 0, "parallel.expert_model_parallel_size",
          str(p.expert_model_parallel_size) + " does not divide the data-parallel size " + str(dp));
  require(m.num_attention_heads % tp == 0, "parallel.tensor_model_parallel_size",
          str(tp) + " does not divide model.num_attention_heads=" + str(m.num_attention_heads));
  require(m.ffn_hidden_size % tp == 0, "parallel.tensor_model_parallel_size",
          str(tp) + " does not divide model.ffn_hidden_size=" + str(m.ffn_hidden_size));
  if (c.pipeline.schedule == "roundpipe") {
    require(c.pipeline.stage_partition.empty(), "pipeline.stage_partition",
            "roundpipe partitions the model itself; leave it empty");
  } else if (c.pipeline.stage_partition.empty()) {
    require(m.num_layers % (pp * vpp) == 0, "parallel.pipeline_model_parallel_size",
            "model.num_layers=" + str(m.num_layers) + " is not divisible by pp*vpp = " + str(pp) + "*" +
                str(vpp) + " (or give pipeline.stage_partition)");
  } else {
    const std::string key = "pipeline.stage_partition";
    const auto part = parse_stage_partition(c.pipeline.stage_partition, static_cast<int>(m.num_layers), key);
    require(!part.separate_backward(), key,
            "only `rondo simulate --schedule roundpipe` takes FORWARD|BACKWARD");
    const int64_t stages = pp == 1 ? 1 : pp * chunks_per_rank(c.pipeline.schedule, static_cast<int>(vpp));
    require(static_cast<int64_t>(part.forward.size()) == stages, key,
            c.pipeline.schedule + " at pp " + str(pp) + " has " + str(stages) +
                " stage(s), the partition names " + str(static_cast<int64_t>(part.forward.size())));
  }
  require(m.seq_length % (2 * cp) == 0 || cp == 1, "parallel.context_parallel_size",
          "model.seq_length=" + str(m.seq_length) + " is not divisible by 2*cp = " + str(2 * cp));
  validate_hdp(c);
}

void validate_training(const Config& c) {
  const auto& m = c.model;
  const int64_t dp = c.parallel.data_parallel_size();
  const auto& t = c.training;
  require(t.micro_batch_size >= 1, "training.micro_batch_size",
          "must be >= 1, got " + str(t.micro_batch_size));
  require(t.global_batch_size >= 1, "training.global_batch_size",
          "must be >= 1, got " + str(t.global_batch_size));
  // HDP's batches are data.tokens_per_step of whole documents, planned afresh each step.
  require(
      c.parallel.hdp || t.global_batch_size % (t.micro_batch_size * dp) == 0, "training.global_batch_size",
      str(t.global_batch_size) + " is not a multiple of micro_batch_size*dp = " + str(t.micro_batch_size) +
          "*" + str(dp) + " = " + str(t.micro_batch_size * dp));
  require(t.train_iters >= 1, "training.train_iters", "must be >= 1, got " + str(t.train_iters));
  require(t.lr > 0, "training.lr", "must be > 0");
  require(t.min_lr >= 0 && t.min_lr <= t.lr, "training.min_lr", "must lie in [0, training.lr]");
  require(t.lr_warmup_iters >= 0 && t.lr_warmup_iters <= t.train_iters, "training.lr_warmup_iters",
          "must lie in [0, training.train_iters]");
  require_one_of(t.lr_decay_style, {"constant", "linear", "cosine"}, "training.lr_decay_style");
  require_one_of(t.optimizer, {"adamw", "sgd", "muon"}, "training.optimizer");
  require(t.weight_decay >= 0, "training.weight_decay", "must be >= 0");
  require(t.adam_beta1 >= 0 && t.adam_beta1 < 1, "training.adam_beta1", "must lie in [0, 1)");
  require(t.adam_beta2 >= 0 && t.adam_beta2 < 1, "training.adam_beta2", "must lie in [0, 1)");
  require(t.adam_eps > 0, "training.adam_eps", "must be > 0");
  require(t.clip_grad >= 0, "training.clip_grad", "must be >= 0 (0 disables clipping)");
  require(t.seed >= 0, "training.seed", "must be >= 0");
  require(t.exit_interval >= 0, "training.exit_interval", "must be >= 0");
  require(t.log_interval >= 1, "training.log_interval", "must be >= 1");
  require(t.num_threads >= 1, "training.num_threads", "must be >= 1");
  require_one_of(t.device, {"cpu", "cuda"}, "training.device");
  require_one_of(t.malloc_policy, {"caching", "system"}, "training.malloc_policy");
  require_one_of(t.cpu_kernels, {"fused", "aten"}, "training.cpu_kernels");
  const bool stateless = c.pipeline.schedule == "roundpipe" && c.parallel.pipeline_model_parallel_size > 1;
  require(!stateless || m.recompute_granularity != "full", "model.recompute_granularity",
          "roundpipe's backward always recomputes its stage from the forward's boundary activations; "
          "use none or selective");
}

void validate_data(const Config& c) {
  const auto& m = c.model;
  const int64_t pp = c.parallel.pipeline_model_parallel_size;
  require_one_of(c.data.format, {"auto", "text", "jsonl", "indexed", "lognormal"}, "data.format");
  const std::string format = TokenCorpus::resolve_format(c.data.path, c.data.format);
  require(c.data.lognormal_seed >= 0, "data.lognormal_seed", "must be >= 0");
  if (format == "lognormal") {
    lognormal_lengths(c.data.lognormal_mix());  // throws ConfigError naming the key
  } else if (format == "indexed") {
    // Opening checks the index against both files: a corrupt corpus fails here, not in the workers.
    try {
      IndexedDataset::open(c.data.path);
    } catch (const DataError& e) {
      throw ConfigError("data.path", e.what());
    }
  } else if (c.data.path != "builtin") {
    const bool ok = format == "text" ? std::filesystem::is_regular_file(c.data.path) ||
                                           std::filesystem::is_directory(c.data.path)
                                     : std::filesystem::is_regular_file(c.data.path);
    require(ok, "data.path",
            "'" + c.data.path + "' is not a readable " + (format == "text" ? "file or directory" : "file") +
                " (use 'builtin' for the built-in text, or an indexed dataset PREFIX)");
  }
  require(c.data.chunk_size >= 0 && c.data.chunk_size <= m.seq_length, "data.chunk_size",
          "must lie in [0, model.seq_length=" + str(m.seq_length) + "], got " + str(c.data.chunk_size));
  require_one_of(c.data.chunk_balance, {"tokens", "cost"}, "data.chunk_balance");
  require(c.data.chunks_in_memory >= 1, "data.chunks_in_memory",
          "must be >= 1, got " + str(c.data.chunks_in_memory));
  require(!c.data.pad || (!c.data.pack && c.data.chunk_size == 0), "data.pad",
          "one padded document per sample excludes data.pack and data.chunk_size (it is their baseline)");
  if (c.data.chunk_size > 0 && pp > 1) {
    // The chunks become the schedule's microbatches (a sequence's chunks in order).
    require(
        c.pipeline.schedule == "gpipe" || c.pipeline.schedule == "1f1b", "data.chunk_size",
        "with parallel.pipeline_model_parallel_size " + str(pp) +
            ", chunked training runs pipeline.schedule gpipe or 1f1b (a sequence's chunks forward in order, "
            "then backward in reverse), not " +
            c.pipeline.schedule);
    require(!c.training.emulate_compute, "data.chunk_size",
            "chunked pipeline training computes for real; set training.emulate_compute=false");
  }
}

// Validation on held-out documents (data.split; worker/validation.h).
void validate_evaluation(const Config& c) {
  const auto& t = c.training;
  const auto split = parse_document_split(c.data.split);  // throws naming data.split
  require(t.eval_interval >= 0, "training.eval_interval",
          "must be >= 0 (0: never), got " + str(t.eval_interval));
  require(t.eval_iters >= 1, "training.eval_iters", "must be >= 1, got " + str(t.eval_iters));
  if (t.eval_interval == 0) return;
  require(split[1] > 0, "data.split",
          "'" + c.data.split + "' holds no validation documents for training.eval_interval " +
              str(t.eval_interval) + " (e.g. data.split=98,2)");
  const auto refuse = [&](bool when, const std::string& what) {
    require(!when, "training.eval_interval", "evaluation does not run with " + what + " yet; set 0");
  };
  refuse(
      c.pipeline.schedule == "roundpipe" && c.parallel.pipeline_model_parallel_size > 1 && c.pipeline.async,
      "pipeline.schedule roundpipe asynchronously");
  refuse(c.parallel.hdp, "parallel.hdp");
  refuse(c.data.chunk_size > 0, "data.chunk_size (chunked training)");
  refuse(t.emulate_compute, "training.emulate_compute (no losses are computed)");
}

// LoRA (worker/staged_model.h): the adapters' rank, scale and target layers.
void validate_lora(const Config& c) {
  const auto& t = c.training;
  require(t.lora_rank >= 0, "training.lora_rank", "must be >= 0 (0: off), got " + str(t.lora_rank));
  if (t.lora_rank == 0) return;
  require(t.lora_alpha > 0, "training.lora_alpha", "must be > 0");
  const bool gpt = c.model.family == "gpt";
  const std::vector<std::string> names =
      gpt ? std::vector<std::string>{"all-linear", "qkv", "proj", "fc", "fc_out", "lm_head"}
          : std::vector<std::string>{"all-linear", "qkv", "proj", "gate", "up", "down", "lm_head"};
  const auto targets = comma_items(t.lora_target_modules);
  require(!targets.empty(), "training.lora_target_modules", "names no layer");
  for (const auto& target : targets) {
    if (target == "q_proj" || target == "k_proj" || target == "v_proj")
      throw ConfigError("training.lora_target_modules",
                        "'" + target + "': rondo fuses queries, keys and values into one layer: use qkv");
    require_one_of(target, names, "training.lora_target_modules");
  }
  const auto refuse = [&](bool when, const std::string& what) {
    require(!when, "training.lora_rank", "LoRA does not run with " + what + " yet");
  };
  refuse(c.model.num_experts > 0, "model.num_experts (MoE)");
}

// Tied embeddings (worker/staged_model.h): the run modes that keep the copies in step.
void validate_tied_embeddings(const Config& c) {
  if (!c.model.tie_embeddings) return;
  const auto refuse = [&](bool when, const std::string& what) {
    require(!when, "model.tie_embeddings",
            "tied embeddings do not run with " + what +
                " yet; model.tie_embeddings=false trains the head apart (converted weights carry its copy)");
  };
  refuse(c.pipeline.async, "pipeline.async");
  refuse(c.pipeline.schedule == "roundpipe" && c.parallel.pipeline_model_parallel_size > 1,
         "pipeline.schedule roundpipe (stateless workers)");
  const auto targets = comma_items(c.training.lora_target_modules);
  refuse(c.training.lora_rank > 0 && std::find(targets.begin(), targets.end(), "lm_head") != targets.end(),
         "a LoRA adapter on lm_head (the embedding's matrix: its export would drop the adapter)");
}

void validate_checkpoint_and_pipeline(const Config& c) {
  const int64_t pp = c.parallel.pipeline_model_parallel_size;
  require(c.checkpoint.interval >= 0, "checkpoint.interval", "must be >= 0");
  require(c.checkpoint.resume_step >= 0, "checkpoint.resume_step", "must be >= 0");
  require_one_of(c.pipeline.schedule, schedule_names(), "pipeline.schedule");
  require(c.pipeline.device_tflops > 0, "pipeline.device_tflops", "must be > 0");
  require(c.pipeline.p2p_latency_s >= 0, "pipeline.p2p_latency_s", "must be >= 0");
  require(c.pipeline.p2p_bandwidth_gbps > 0, "pipeline.p2p_bandwidth_gbps", "must be > 0");
  require(c.pipeline.memory_cap_gb >= 0, "pipeline.memory_cap_gb", "must be >= 0 (0: no cap)");
  require_one_of(c.pipeline.roundpipe_dispatch, {"rounds", "earliest_free"}, "pipeline.roundpipe_dispatch");
  require(c.pipeline.h2d_bandwidth_gbps > 0, "pipeline.h2d_bandwidth_gbps", "must be > 0");
  require_one_of(c.pipeline.delay_correction,
                 {"none", "error_feedback", "weight_prediction", "velocity_prediction"},
                 "pipeline.delay_correction");
  require(c.pipeline.delay_correction == "none" || c.pipeline.async, "pipeline.delay_correction",
          "corrects the one-step weight delay of pipeline.async=true; set it or leave the correction none");
  if (c.pipeline.async) {
    require(c.pipeline.schedule == "1f1b" || c.pipeline.schedule == "roundpipe" || pp == 1, "pipeline.async",
            "the asynchronous mode runs pipeline.schedule 1f1b (PipeDream-2BW) or roundpipe, not " +
                c.pipeline.schedule);
    require(c.pipeline.schedule != "roundpipe" || pp == 1 || c.pipeline.roundpipe_dispatch == "rounds",
            "pipeline.roundpipe_dispatch",
            "roundpipe's asynchronous mode runs RoundPipe's own dispatch, rounds (earliest_free interleaves "
            "the next "
            "step's forwards with this step's backwards task by task, which the executor does not run yet)");
    require(c.data.chunk_size == 0, "pipeline.async",
            "chunked training (data.chunk_size) has no asynchronous mode; set one of them off");
  }
}

void validate_comms_and_launch(const Config& c) {
  const auto& t = c.training;
  (void)parse_avoid_links(c.comms.avoid_links, c.parallel.world_size);
  require_one_of(c.comms.backend, {"mpi", "nccl"}, "comms.backend");
  require(c.comms.backend != "nccl" || t.device == "cuda", "comms.backend",
          "nccl needs training.device=cuda");
  require_one_of(c.comms.allreduce, {"ring", "native"}, "comms.allreduce");
  require(c.comms.timeout_s > 0, "comms.timeout_s", "must be > 0");
  require(c.comms.recorder_capacity >= 1, "comms.recorder_capacity", "must be >= 1");
  require(c.comms.timing_recorder_blocks >= 0 && c.comms.timing_recorder_blocks <= 1000000,
          "comms.timing_recorder_blocks", "must be between 0 (record every step) and 1000000");
  require(c.comms.timing_recorder_blocks == 0 || c.comms.timing_recorder, "comms.timing_recorder_blocks",
          "needs comms.timing_recorder: true (there is nothing to pause)");
  require(c.comms.timing_recorder_blocks == 0 || !c.pipeline.async, "comms.timing_recorder_blocks",
          "cannot be used with pipeline.async: the update thread's collectives cross steps, so ranks "
          "could pause at different collectives");
  require(c.comms.timing_recorder_blocks == 0 || c.faults.policy == "report", "comms.timing_recorder_blocks",
          "needs faults.policy: report (paused steps count as clean in the detector's windows, so no verdict "
          "of such a run should restart or re-plan the job)");
  require(c.comms.bucket_size_mb > 0, "comms.bucket_size_mb", "must be > 0");
  require(c.comms.emulated_link_gbps >= 0, "comms.emulated_link_gbps", "must be >= 0 (0 turns it off)");
  require_one_of(c.launch.launcher, {"auto", "mpirun", "srun"}, "launch.launcher");
  require_one_of(c.launch.bind, {"auto", "none", "core"}, "launch.bind");
  require(c.launch.timeout_s > 0, "launch.timeout_s", "must be > 0");
  require(c.launch.max_restarts >= 0, "launch.max_restarts", "must be >= 0");
  require(c.launch.control_address.find(':') != std::string::npos, "launch.control_address",
          "must be host:port, e.g. 127.0.0.1:0");
  require(c.launch.heartbeat_interval_s > 0, "launch.heartbeat_interval_s", "must be > 0");
  require(c.launch.register_timeout_s > 0, "launch.register_timeout_s", "must be > 0");
  require(c.launch.heartbeat_timeout_s > 2 * c.launch.heartbeat_interval_s, "launch.heartbeat_timeout_s",
          "must exceed two heartbeat intervals (launch.heartbeat_interval_s)");
  require(c.launch.dashboard_port >= 0 && c.launch.dashboard_port < 65536, "launch.dashboard_port",
          "must be a TCP port, or 0 for no dashboard");
}

void validate_faults(const Config& c) {
  const auto& f = c.faults;
  require(f.slow_rank_share > 0 && f.slow_rank_share < 1, "faults.slow_rank_share", "must be in (0, 1)");
  require(f.slow_link_factor > 1, "faults.slow_link_factor", "must be > 1");
  require(f.slow_stage_factor > 1, "faults.slow_stage_factor", "must be > 1");
  require(f.slow_link_share >= 0 && f.slow_link_share < 1, "faults.slow_link_share", "must be in [0, 1)");
  require(f.window >= 1 && f.window <= 1000, "faults.window", "must be 1..1000 steps");
  require(f.persist >= 1 && f.persist <= f.window, "faults.persist", "must be 1..faults.window");
  require_one_of(f.policy, {"report", "restart", "replan"}, "faults.policy");
}

}  // namespace

Config with_world(const Config& config, int64_t world) {
  Config c = config;
  c.parallel.world_size = world;
  c.comms.avoid_links.clear();
  c.topology.rank_hosts.clear();
  return c;
}

int64_t largest_valid_world(const Config& config, int64_t at_most) {
  for (int64_t world = std::min(at_most, config.parallel.world_size); world >= 1; --world) {
    try {
      validate(with_world(config, world));
      return world;
    } catch (const ConfigError&) {
    }
  }
  return 0;
}

std::vector<std::string> comma_items(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(std::remove(item.begin(), item.end(), ' '), item.end());
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

std::vector<std::pair<int, int>> parse_avoid_links(const std::string& text, int64_t world_size) {
  std::vector<std::pair<int, int>> links;
  for (const auto& item : comma_items(text)) {
    int src = -1, dst = -1;
    char sep = 0, rest = 0;
    std::istringstream one(item);
    if (!(one >> src >> sep >> dst) || sep != '>' || (one >> rest) || src < 0 || dst < 0 ||
        src >= world_size || dst >= world_size || src == dst) {
      throw ConfigError("comms.avoid_links", "'" + item + "' is not SRC>DST with two different ranks below " +
                                                 std::to_string(world_size) + " (e.g. 0>1,2>3)");
    }
    links.emplace_back(src, dst);
  }
  return links;
}

void validate(const Config& c) {
  validate_model(c);
  validate_parallel(c);
  validate_training(c);
  validate_data(c);
  validate_evaluation(c);
  validate_lora(c);
  validate_tied_embeddings(c);
  validate_checkpoint_and_pipeline(c);
  validate_comms_and_launch(c);
  validate_faults(c);
  validate_initial_weights(c);
  (void)fabric_of(c);  // topology.*: throws naming the key
}

}  // namespace rondo
