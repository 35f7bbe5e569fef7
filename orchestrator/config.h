// The training configuration: one registry of knobs (Megatron-Core key names), loaded from YAML,
// overridden with `--set section.key=value`, validated, and written back as the effective config.
// Every problem is a rondo::ConfigError naming the key.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "data/lognormal_mix.h"

namespace rondo {

struct ModelConfig {
  std::string family = "gpt";  // a registered model family (worker/model_family.h)
  int64_t num_layers = 4;
  int64_t hidden_size = 128;
  int64_t num_attention_heads = 4;
  int64_t ffn_hidden_size = 512;
  int64_t vocab_size = 256;
  int64_t seq_length = 128;
  std::string recompute_granularity = "none";  // none | full | selective
  // Mixture of experts (parallelism/exec/moe_layer.h): 0 experts is a dense model.
  int64_t num_experts = 0;
  int64_t moe_router_topk = 2;
  double moe_capacity_factor = 1.25;  // slots per expert: factor * tokens * topk / experts
  double moe_aux_loss_coeff = 0.01;
  int64_t moe_layer_freq = 1;  // layers 0, f, 2f, ... have an MoE MLP
  // Llama-style families (llama, qwen2, qwen3): grouped-query attention and rotary positions.
  int64_t num_query_groups = 0;  // key/value heads; 0: one per attention head
  int64_t kv_channels = 0;       // each head's size; 0: hidden_size / num_attention_heads
  double rotary_base = 10000.0;
  double rope_scaling_factor = 1.0;  // Llama 3's frequency scaling; 1: none
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_max_positions = 8192;
  double norm_epsilon = 1e-5;  // RMSNorm's epsilon
  // The LM head computes with the token embedding's matrix (Hugging Face's tie_word_embeddings).
  bool tie_embeddings = false;
};

struct ParallelConfig {
  int64_t world_size = 2;
  int64_t tensor_model_parallel_size = 1;
  int64_t pipeline_model_parallel_size = 1;
  int64_t virtual_pipeline_model_parallel_size = 1;
  int64_t context_parallel_size = 1;
  int64_t expert_model_parallel_size = 1;
  bool hdp = false;                  // a context-parallel group for every sequence, every step
  std::string hdp_policy = "rondo";  // static | megatron | rondo (parallelism/hdp_planner.h)
  int64_t max_tokens_per_rank = 0;   // of one sequence on a rank at once; 0: model.seq_length
  // world / (tp * pp * cp); valid only after validation.
  int64_t data_parallel_size() const;
};

struct TrainingConfig {
  int64_t micro_batch_size = 4;
  int64_t global_batch_size = 8;
  int64_t train_iters = 50;
  double lr = 3.0e-4;
  double min_lr = 0.0;
  int64_t lr_warmup_iters = 0;
  std::string lr_decay_style = "constant";
  std::string optimizer = "adamw";
  double weight_decay = 0.01;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.95;
  double adam_eps = 1.0e-8;
  double clip_grad = 1.0;
  int64_t seed = 1234;
  int64_t exit_interval = 0;
  int64_t log_interval = 100;
  bool tensorboard = true;
  // Validation (data.split's second part): every eval_interval steps and after the last, the
  // loss over eval_iters global batches of held-out documents; 0: never.
  int64_t eval_interval = 0;
  int64_t eval_iters = 10;
  // LoRA: a trainable low-rank update beside each target linear layer, everything else frozen;
  // rank 0: off (full training).
  int64_t lora_rank = 0;
  double lora_alpha = 16.0;
  std::string lora_target_modules = "all-linear";
  int64_t num_threads = 1;
  std::string device = "cpu";
  std::string malloc_policy = "caching";
  std::string cpu_kernels = "fused";
  // Compute actions sleep for their predicted duration instead of running the model; transfers,
  // reductions and the rest of the step are real (runtime overhead, schedules at many ranks).
  bool emulate_compute = false;
};

struct DataConfig {
  std::string path = "builtin";
  std::string format = "auto";
  std::string split;  // training,validation,test document weights (data/document_split.h); "": all train
  bool pack = false;
  bool pad = false;
  int64_t chunk_size = 0;  // 0: no chunking
  std::string chunk_balance = "tokens";
  int64_t chunks_in_memory = 2;
  int64_t tokens_per_step = 0;  // parallel.hdp: tokens of whole documents per step; 0: global batch x seq
  // data.path: lognormal (data/lognormal_mix.h)
  int64_t lognormal_documents = 1000;
  double lognormal_mu = 8.5;
  double lognormal_sigma = 1.5;
  int64_t lognormal_max_length = 2000000;
  int64_t lognormal_seed = 1;
  LognormalMix lognormal_mix() const {
    return {lognormal_documents, lognormal_mu, lognormal_sigma, lognormal_max_length,
            static_cast<uint64_t>(lognormal_seed)};
  }
};

struct CheckpointConfig {
  int64_t interval = 0;
  bool resume = true;
  int64_t resume_step = 0;
  std::string load;  // a rondo weights directory (rondo convert --from-hf) the run starts from
};

struct PipelineConfig {
  std::string schedule = "1f1b";
  // Cost model of the step-time prediction: the sustained compute rate of one device and the
  // point-to-point link between pipeline ranks.
  double device_tflops = 1.0;
  double p2p_latency_s = 1.0e-5;
  double p2p_bandwidth_gbps = 25.0;
  double memory_cap_gb = 0.0;  // per device; 0: no cap
  // Transformer layers per stage ("4,4,0": the LM head alone on the last stage); empty: equal.
  std::string stage_partition;
  std::string roundpipe_dispatch = "rounds";  // rounds (RoundPipe's) | earliest_free
  double h2d_bandwidth_gbps = 25.0;           // a stateless worker's host link (weights in, gradients out)
  // Asynchronous pipeline (PipeDream-2BW): no flush between steps, one-step weight delay.
  bool async = false;
  std::string delay_correction = "none";  // none | error_feedback | weight_prediction | velocity_prediction
};

struct CommsConfig {
  std::string backend = "mpi";
  std::string allreduce = "ring";
  bool timing_recorder = true;
  // Records N steps, pauses N, ... so that one run measures the recorder's cost (0: every step).
  int64_t timing_recorder_blocks = 0;
  double timeout_s = 300.0;
  int64_t recorder_capacity = 1024;
  bool overlap_grad_reduce = true;
  double bucket_size_mb = 25.0;
  double emulated_link_gbps = 0.0;
  // Directed links the ring allreduce must not use, "SRC>DST" world ranks, comma separated: a
  // slow_link verdict's link. The plan orders each data-parallel ring around them.
  std::string avoid_links;
};

// A comma-separated value's items, spaces removed, empty ones skipped.
std::vector<std::string> comma_items(const std::string& text);

// comms.avoid_links parsed: (sender, receiver) world-rank pairs. Throws ConfigError naming the key.
std::vector<std::pair<int, int>> parse_avoid_links(const std::string& text, int64_t world_size);

struct LaunchConfig {
  std::string launcher = "auto";  // auto: srun inside a Slurm allocation, else mpirun | mpirun | srun
  double timeout_s = 3600.0;
  std::string mpirun_args;
  std::string srun_args;
  // auto: mpirun binds each rank to its own cores when the ranks fit on this machine's cores
  // (launch/mpirun_command.h) | none | core
  std::string bind = "auto";
  // Relaunches from the latest checkpoint after a rank dies, hangs or loses its peers.
  int64_t max_restarts = 3;
  std::string control_address = "127.0.0.1:0";  // the control plane (gRPC); port 0: any free
  double heartbeat_interval_s = 1.0;
  double heartbeat_timeout_s = 30.0;  // a rank silent this long ends the attempt
  double register_timeout_s = 300.0;  // a rank not registered this long after the launch ends it
  int64_t dashboard_port = 0;         // 0: no dashboard
  std::string dashboard_address = "127.0.0.1";
};

// Fault localisation in the coordinator (faults/fault_detector.h's DetectorOptions).
struct FaultsConfig {
  double slow_rank_share = 0.16;
  double slow_link_factor = 8.0;
  double slow_link_share = 0.02;
  double slow_stage_factor = 1.3;
  int64_t window = 8;
  int64_t persist = 5;
  // report: verdicts are events only; restart: a slow rank stops the job with a checkpoint, and
  // after it, or a hang or a crash, the job resumes with fewer ranks (without the rank's host when
  // the job spans several); replan: a slow link between two ranks is planned around (rings
  // changed live, or a checkpoint and a relaunch with it in comms.avoid_links), a slow rank stops
  // the job with a checkpoint and relaunches it with a lighter pipeline stage
  // (orchestrator/stage_rebalance.h).
  std::string policy = "report";
};

// The cluster's fabric, for traffic planning (comms/traffic_planner.h, orchestrator/fabric.h): a
// leaf-spine network and where the ranks run on it. topology.leaves 0: no fabric model.
struct TopologyConfig {
  int64_t leaves = 0;
  int64_t hosts_per_leaf = 1;
  int64_t spines = 1;
  double host_gbps = 100.0;   // each host's link to its leaf, each direction (Gbit/s)
  double spine_gbps = 100.0;  // each leaf-spine link, each direction (Gbit/s)
  int64_t ranks_per_host = 1;
  // Each rank's host (0 .. leaves * hosts_per_leaf - 1), comma separated: a fragmented placement.
  // Empty: rank r on host r / ranks_per_host.
  std::string rank_hosts;
  // Directed links to keep traffic off, comma separated: leafL>spineS, spineS>leafL, hostH>leaf,
  // leaf>hostH.
  std::string degraded_links;
  int64_t channels = 1;  // parallel flows per ring edge (NCCL's channels), each with its own path
};

// FSMoE-style overlap of an MoE layer's all-to-alls with its experts' compute (docs/moe.md).
struct MoeConfig {
  // Chunks of the forward's dispatch/compute/combine pipeline, and of the backward's: a number, or
  // auto (the cost model's choice from a profiling pass at start-up).
  std::string a2a_overlap_degree = "auto";
  std::string bwd_degree = "auto";
  std::string cost_file;  // `rondo plan`'s costs: a run's moe_costs.json; empty: the config's figures
  // FSMoE's gradient partitioning: the overlapped gradient reduction's buckets in flight advance
  // between the MoE backward's expert calls (false: only as new gradients become ready, as in a dense model).
  bool gradient_partitioning = true;
};

struct Config {
  ModelConfig model;
  MoeConfig moe;
  ParallelConfig parallel;
  TrainingConfig training;
  DataConfig data;
  CheckpointConfig checkpoint;
  PipelineConfig pipeline;
  CommsConfig comms;
  LaunchConfig launch;
  FaultsConfig faults;
  TopologyConfig topology;
};

// One key of the schema: where it lives in Config, its type (from the field) and what it means.
using ConfigField = std::variant<int64_t*, double*, bool*, std::string*>;
struct ConfigKey {
  std::string section;
  std::string name;
  std::string doc;
  std::function<ConfigField(Config&)> field;
  std::string full_name() const { return section + "." + name; }
};

// A pipeline degree of the moe section (moe.a2a_overlap_degree, moe.bwd_degree), 0 for auto;
// throws ConfigError naming `key`.
int64_t moe_degree(const std::string& value, const std::string& key);

// All keys, in the order they are printed.
const std::vector<ConfigKey>& config_schema();

// Parses YAML text (`source` names it in errors), applies `overrides` ("section.key=value"), then
// validates. Throws ConfigError.
Config parse_config(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides = {});

// Reads and parses a YAML file; a missing or unreadable file is a ConfigError naming it.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// The built-in default job (configs/default.yaml, embedded at build time).
const std::string& default_config_yaml();

// Checks every value and every combination; throws ConfigError naming the first bad key.
void validate(const Config& config);

// The config at another world size (faults.policy restart): the keys that number ranks of the old
// world, comms.avoid_links and topology.rank_hosts, are dropped.
Config with_world(const Config& config, int64_t world);

// The largest world size of at most `at_most` ranks (and at most the config's) that with_world()
// is valid at, every other key kept (the data-parallel degree shrinks; the global batch, hence the
// data and the losses, stay the same); 0 when there is none.
int64_t largest_valid_world(const Config& config, int64_t at_most);

// `value` in the shortest form that reads back exactly, always with a decimal point or exponent.
std::string shortest_float(double value);

// The effective configuration, every key included, as YAML that parse_config() accepts.
std::string to_yaml(const Config& config);

// Every key as a Markdown table row: key, type, default, meaning (docs/config.md).
std::string schema_markdown();

}  // namespace rondo
