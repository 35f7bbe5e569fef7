// rondo: the coordinator CLI. `rondo plan` validates and plans a config; `rondo run` plans,
// launches the workers, watches and restarts them; `rondo status` shows a run's live state.
// Each subcommand registers its options and what it runs in a function of its own below.
// Plain C++: never links LibTorch.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/logging.h"
#include "launch/sbatch_script.h"
#include "orchestrator/config.h"
#include "orchestrator/data_command.h"
#include "orchestrator/diagnose_command.h"
#include "orchestrator/generate_command.h"
#include "orchestrator/hdp_report.h"
#include "orchestrator/hf_weights.h"
#include "orchestrator/moe_report.h"
#include "orchestrator/plan_builder.h"
#include "orchestrator/plan_views.h"
#include "orchestrator/run_command.h"
#include "orchestrator/schedule_comparison.h"
#include "orchestrator/simulate_command.h"
#include "orchestrator/status_command.h"
#include "orchestrator/traffic_report.h"

namespace {

// A leaf subcommand and what it runs once the command line parsed into it.
struct Subcommand {
  CLI::App* app = nullptr;
  std::function<int()> run;
};
using Subcommands = std::vector<Subcommand>;

// A config path (empty: the built-in demo job) and its --set overrides.
struct ConfigArgs {
  std::string path;
  std::vector<std::string> overrides;

  void add_to(CLI::App* cmd) {
    cmd->add_option("config", path, "config YAML (default: the built-in demo job)");
    cmd->add_option("--set", overrides, "override a key: section.key=value (repeatable)");
  }
  rondo::Config load() const { return load_with(overrides); }
  rondo::Config load_with(const std::vector<std::string>& sets) const {
    if (path.empty()) return rondo::parse_config(rondo::default_config_yaml(), "default config", sets);
    return rondo::load_config(path, sets);
  }
};

void add_plan(CLI::App& app, Subcommands& out) {
  struct Args {
    ConfigArgs config;
    std::string out;
    bool json = false, traffic = false;
    int64_t hdp_batches = 50;
    std::vector<std::string> compare;
    CLI::Option* compare_opt = nullptr;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("plan", "validate a config and print its plan");
  a->config.add_to(cmd);
  cmd->add_flag("--json", a->json, "print the plan as one JSON object");
  cmd->add_flag("--traffic", a->traffic,
                "print the link loads the data-parallel rings put on the fabric (topology.*), hashed (ECMP) "
                "against rondo's rings and paths");
  cmd->add_option("--out", a->out, "write the binary plan (protobuf) here");
  cmd->add_option(
         "--steps", a->hdp_batches,
         "parallel.hdp: plan this many sampled batches under each policy (static, megatron, rondo) and "
         "compare their mean step time, balance and planner time")
      ->capture_default_str();
  a->compare_opt =
      cmd->add_option("--compare-schedules", a->compare,
                      "plan the config under these pipeline schedules (comma-separated; no value: "
                      "all) and compare their predicted step time, bubble and memory")
          ->delimiter(',')
          ->expected(0, -1);
  out.push_back({cmd, [a] {
                   const auto config = a->config.load();
                   if (a->compare_opt->count() > 0) {
                     std::cout << rondo::comparison_table(rondo::compare_schedules(config, a->compare));
                     return rondo::kExitOk;
                   }
                   const auto plan = rondo::build_plan(config);
                   if (!a->out.empty()) {
                     std::ofstream file(a->out, std::ios::binary);
                     if (!file || !plan.SerializeToOstream(&file))
                       throw rondo::Error("cannot write " + a->out);
                   }
                   if (a->traffic) {
                     const auto report = rondo::traffic_report(config, plan);
                     std::cout << (a->json ? report.dump() + "\n" : rondo::traffic_report_text(report));
                     return rondo::kExitOk;
                   }
                   auto j = rondo::plan_to_json(plan, false);
                   std::string text = rondo::plan_summary(plan);
                   if (config.parallel.hdp) {
                     const auto hdp = rondo::hdp_report(config, a->hdp_batches);
                     j["hdp"] = hdp.policies;
                     j["hdp_batches"] = hdp.batches;
                     text += rondo::hdp_report_text(hdp, config);
                   }
                   if (config.model.num_experts > 0) {
                     const auto moe = rondo::moe_layers_report(config);
                     j["moe_layers"] = moe.at("layers");
                     j["moe_costs"] = moe.at("costs");
                     text += rondo::moe_layers_text(moe);
                   }
                   std::cout << (a->json ? j.dump() + "\n" : text);
                   return rondo::kExitOk;
                 }});
}

void add_run(CLI::App& app, Subcommands& out) {
  struct Args {
    ConfigArgs config;
    rondo::RunOptions options;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("run", "plan a job, launch its workers with mpirun, wait");
  a->config.add_to(cmd);
  cmd->add_option("--run-dir", a->options.run_dir, "run directory (default: runs/<timestamp>)");
  cmd->add_option("--worker", a->options.worker_path, "path of rondo-worker (default: beside rondo)");
  cmd->add_option("--dashboard-port", a->options.dashboard_port,
                  "serve the live dashboard, /metrics and /api/state on this port (0: off; "
                  "default: launch.dashboard_port)");
  cmd->add_option("--linger", a->options.linger_s, "keep the dashboard up this many seconds after the job");
  out.push_back({cmd, [a] { return rondo::run_job(a->config.load(), a->options); }});
}

void add_sbatch(CLI::App& app, Subcommands& out) {
  struct Args {
    ConfigArgs config;
    rondo::SbatchOptions sbatch;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "sbatch",
      "print a Slurm batch script that runs a config (checkpoints and requeues before its time limit)");
  auto& s = a->sbatch;
  a->config.add_to(cmd);
  cmd->add_option("--run-dir", s.run_dir, "run directory (default: runs/<timestamp>)");
  cmd->add_option("--nodes", s.nodes, "nodes")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--ntasks-per-node", s.ntasks_per_node, "ranks per node")
      ->required()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--time", s.time, "time limit, Slurm's form (e.g. 4:00:00)");
  cmd->add_option("--partition", s.partition, "partition");
  cmd->add_option("--signal-lead", s.signal_lead_s, "seconds before the time limit to checkpoint and requeue")
      ->capture_default_str();
  cmd->add_option("--worker", s.worker, "path of rondo-worker (default: beside rondo)");
  out.push_back({cmd, [a] {
                   // Validate now, with the rank count the script will ask for, rather than in the queue.
                   auto checked = a->config.overrides;
                   checked.push_back("parallel.world_size=" +
                                     std::to_string(a->sbatch.nodes * a->sbatch.ntasks_per_node));
                   rondo::check_executable(a->config.load_with(checked));
                   std::cout << rondo::sbatch_script(
                       rondo::complete_sbatch_options(a->sbatch, a->config.path, a->config.overrides));
                   return rondo::kExitOk;
                 }});
}

// `rondo control`, `rondo status` and `rondo config`: a run's control and state, the effective config.
void add_run_tools(CLI::App& app, Subcommands& out) {
  struct Args {
    std::string run_dir, action, reason;
    bool json = false;
    ConfigArgs config;
    bool keys = false;
  };
  auto a = std::make_shared<Args>();
  auto* control =
      app.add_subcommand("control", "ask a running job to checkpoint now, or to checkpoint and stop");
  control->add_option("RUN_DIR", a->run_dir, "the run directory")->required();
  control->add_option("ACTION", a->action, "checkpoint | stop")
      ->required()
      ->check(CLI::IsMember({"checkpoint", "stop"}));
  control->add_option("--reason", a->reason, "recorded in the log and events.jsonl");
  out.push_back({control, [a] { return rondo::run_control(a->run_dir, a->action, a->reason); }});

  auto* status = app.add_subcommand("status", "print a run's live state (progress, ranks, events)");
  status->add_option("RUN_DIR", a->run_dir, "the run directory")->required();
  status->add_flag("--json", a->json, "print the state as JSON (what /api/state serves)");
  out.push_back({status, [a] { return rondo::run_status(a->run_dir, a->json); }});

  auto diagnose_options = std::make_shared<rondo::DiagnoseOptions>();
  auto* diagnose = app.add_subcommand(
      "diagnose", "find slow ranks and slow links in a run's recorded step reports (exit 3: faults found)");
  diagnose->add_option("RUN_DIR", diagnose_options->run_dir, "the run directory")->required();
  diagnose->add_flag("--json", diagnose_options->json, "one verdict per line, as events.jsonl has them");
  auto& d = *diagnose_options;
  diagnose->add_option("--window", d.window, "faults.window (default: the run's config)");
  diagnose->add_option("--persist", d.persist, "faults.persist (default: the run's config)");
  diagnose
      ->add_option("--rank-share", d.slow_rank_share, "faults.slow_rank_share (default: the run's config)")
      ->check(CLI::Range(0.0, 1.0));
  diagnose
      ->add_option("--link-factor", d.slow_link_factor, "faults.slow_link_factor (default: the run's config)")
      ->check(CLI::Range(1.0, 1e9));
  diagnose
      ->add_option("--stage-factor", d.slow_stage_factor,
                   "faults.slow_stage_factor (default: the run's config)")
      ->check(CLI::Range(1.0, 1e9));
  out.push_back({diagnose, [diagnose_options] { return rondo::run_diagnose(*diagnose_options); }});

  auto* config = app.add_subcommand("config", "print the effective config (defaults filled in)");
  a->config.add_to(config);
  config->add_flag("--keys", a->keys, "list every key with its default and meaning (Markdown)");
  out.push_back({config, [a] {
                   std::cout << (a->keys ? rondo::schema_markdown() : rondo::to_yaml(a->config.load()));
                   return rondo::kExitOk;
                 }});
}

// RoundPipe's simulator inputs (its pp-simulate flags) on top of rondo's own.
void add_roundpipe_simulator_flags(CLI::App* cmd, rondo::SimulateOptions& sim) {
  cmd->add_option("--num-layers", sim.num_layers, "transformer layers (with --stage-partition)");
  auto& t = sim.layer_times;
  cmd->add_option("--fwd-time-per-layer", t.forward, "forward of one layer, one microbatch");
  cmd->add_option("--bwd-time-per-layer", t.backward, "backward of one layer, one microbatch");
  cmd->add_option("--lmhead-fwd-time", t.head_forward, "LM-head forward, one microbatch");
  cmd->add_option("--lmhead-bwd-time", t.head_backward, "LM-head backward, one microbatch");
  cmd->add_option("--comm-time", t.hop, "one transfer between stages on different ranks");
  cmd->add_option("--layer-weight-bytes", t.layer_bytes,
                  "roundpipe: weight bytes of one layer, uploaded to a worker before its task");
  cmd->add_option("--lmhead-weight-bytes", t.head_bytes, "roundpipe: weight bytes of the LM head");
  cmd->add_option("--h2d-bandwidth", t.host_bandwidth,
                  "roundpipe: bytes per time unit of a worker's host link (0: weights move for free)");
  cmd->add_option("--roundpipe-dispatch", sim.roundpipe_dispatch,
                  "rounds (RoundPipe's) | earliest_free: how roundpipe's tasks reach workers")
      ->check(CLI::IsMember({"rounds", "earliest_free"}))
      ->capture_default_str();
}

void add_simulate(CLI::App& app, Subcommands& out) {
  struct Args {
    rondo::SimulateOptions sim;
    std::string recompute = "full";
  };
  auto a = std::make_shared<Args>();
  auto& sim = a->sim;
  auto* cmd = app.add_subcommand("simulate", "generate, validate and time a pipeline schedule");
  cmd->add_option("--schedule,--scheduler", sim.schedule,
                  "gpipe | 1f1b | interleaved_1f1b | looped_bfs | zb_h1 | zbv | roundpipe")
      ->capture_default_str();
  cmd->add_option("--pp,--num-gpus", sim.pp, "pipeline ranks")->capture_default_str();
  cmd->add_option("--microbatches,--num-microbatches", sim.microbatches, "microbatches per iteration")
      ->capture_default_str();
  cmd->add_option("--virtual", sim.virtual_stages,
                  "chunks per rank (interleaved_1f1b, looped_bfs; default 2)");
  auto* f = cmd->add_option("--f", sim.f, "forward time of a rank's share of layers")->capture_default_str();
  auto* b = cmd->add_option("--b", sim.b, "full backward time (I = B - W)")->capture_default_str();
  auto* w = cmd->add_option("--w", sim.w, "weight-gradient time")->capture_default_str();
  auto* layer_costs = cmd->add_option("--layer-costs", sim.layer_costs,
                                      "per-layer forward costs F1,F2,... (embedding and LM head included)")
                          ->excludes(f)
                          ->excludes(b)
                          ->excludes(w);
  cmd->add_option("--stage-partition", sim.stage_partition,
                  "layers per stage, e.g. 4,4,4,4 (per virtual stage); roundpipe: FORWARD|BACKWARD, the "
                  "backward's first stage fused with the LM head")
      ->excludes(f)
      ->excludes(b)
      ->excludes(w)
      ->excludes(layer_costs);
  add_roundpipe_simulator_flags(cmd, sim);
  cmd->add_option("--recompute", a->recompute,
                  "full: each stage recomputes its layers before its backward (as RoundPipe's simulator "
                  "assumes); none")
      ->check(CLI::IsMember({"full", "none"}))
      ->capture_default_str();
  cmd->add_option("--p2p-latency", sim.p2p_latency, "alpha of a transfer between ranks");
  cmd->add_option("--p2p-bandwidth", sim.p2p_bandwidth, "beta, bytes per time unit (0: infinite)");
  cmd->add_option("--p2p-bytes", sim.p2p_bytes, "bytes of one microbatch's boundary activation");
  cmd->add_flag("--async", sim.async, "asynchronous mode: 1f1b becomes PipeDream-2BW (no flush)");
  cmd->add_option("--iterations", sim.iterations, "back-to-back iterations (default 1; 4 with --async)");
  cmd->add_flag("--json", sim.json, "print one JSON object");
  cmd->add_option("--gantt", sim.gantt, "write a Gantt chart (SVG)");
  cmd->add_option("--csv", sim.csv, "write the per-rank action CSV (+ FILE.durations.csv)");
  cmd->add_option("--import-csv", sim.import_csv, "simulate a schedule from an action CSV")
      ->check(CLI::ExistingFile);
  cmd->add_option("--import-durations", sim.import_durations, "durations CSV for --import-csv")
      ->check(CLI::ExistingFile);
  out.push_back({cmd, [a] {
                   a->sim.layer_times.recompute = a->recompute == "full";
                   return rondo::run_simulate(a->sim);
                 }});
}

void add_data(CLI::App& app, Subcommands& out) {
  struct Args {
    rondo::DataPrepareOptions prepare;
    rondo::DataTokenizeOptions tokenize;
    std::string prefix;
    bool json = false;
    rondo::DataChunksOptions chunks;
  };
  auto a = std::make_shared<Args>();
  auto* data = app.add_subcommand("data", "prepare and inspect datasets (Megatron's indexed format)");
  data->require_subcommand(1);
  auto* prepare = data->add_subcommand(
      "prepare",
      "text files, directories of them and JSONL (a \"text\" field per line) -> PREFIX.bin + PREFIX.idx");
  prepare->add_option("INPUT", a->prepare.inputs, "files, directories (recursively, by name), *.jsonl")
      ->required();
  prepare->add_option("--out", a->prepare.out, "output PREFIX")->required();
  prepare
      ->add_option("--dtype", a->prepare.dtype, "token type: uint16 | int32 | auto (uint16 when the ids fit)")
      ->capture_default_str();
  prepare->add_option(
      "--tokenizer", a->prepare.tokenizer,
      "a Hugging Face tokenizer.json (byte-level BPE: GPT-2, Llama 3, Qwen); default: one token per byte");
  prepare->add_flag(
      "--append-eod", a->prepare.append_eod,
      "the tokenizer's end-of-text token after each document (tokenizer_config.json's eos_token)");
  out.push_back({prepare, [a] { return rondo::run_data_prepare(a->prepare); }});

  auto& t = a->tokenize;
  auto* tokenize = data->add_subcommand(
      "tokenize",
      "the ids of --text with a tokenizer.json, --decode ids back, or the throughput on INPUT files");
  tokenize->add_option("--tokenizer", t.tokenizer, "a Hugging Face tokenizer.json")->required();
  tokenize->add_option("--text", t.text, "the text to encode");
  tokenize->add_option("INPUT", t.inputs, "files or directories: each file one document; prints MB/s");
  tokenize->add_option("--decode", t.decode, "ids (separated by spaces or commas) to decode");
  tokenize->add_flag("--special", t.add_special_tokens, "add the post-processor's special tokens (BOS, ...)");
  tokenize->add_flag("--json", t.json, "print one JSON object");
  out.push_back({tokenize, [a] { return rondo::run_data_tokenize(a->tokenize); }});

  auto* stats = data->add_subcommand("stats", "counts and a length histogram of an indexed dataset");
  stats->add_option("PREFIX", a->prefix, "the dataset (PREFIX.bin + PREFIX.idx)")->required();
  stats->add_flag("--json", a->json, "print one JSON object");
  out.push_back({stats, [a] { return rondo::run_data_stats(a->prefix, a->json); }});

  auto& c = a->chunks;
  auto* chunks = data->add_subcommand(
      "chunks", "chunk plans of an indexed dataset's batches: equal-token vs cost-aware boundaries");
  chunks->add_option("PREFIX", c.prefix, "the dataset (PREFIX.bin + PREFIX.idx)")->required();
  chunks->add_option("--chunk-size", c.chunk_size, "tokens per chunk")->capture_default_str();
  chunks->add_option("--batch", c.batch, "sequences per global batch (in order)")->capture_default_str();
  chunks->add_option("--layers", c.layers, "model the costs are counted on: blocks")->capture_default_str();
  chunks->add_option("--hidden", c.hidden, "hidden size")->capture_default_str();
  chunks->add_option("--ffn", c.ffn, "MLP hidden size")->capture_default_str();
  chunks->add_option("--vocab", c.vocab, "vocabulary")->capture_default_str();
  chunks->add_flag("--json", c.json, "print one JSON object");
  out.push_back({chunks, [a] { return rondo::run_data_chunks(a->chunks); }});
}

void add_convert(CLI::App& app, Subcommands& out) {
  auto o = std::make_shared<rondo::ConvertOptions>();
  auto* cmd = app.add_subcommand(
      "convert",
      "Hugging Face Llama/Qwen3 weights to a rondo weights directory (--from-hf DIR --to DIR) and back "
      "(--from DIR --to-hf DIR)");
  cmd->add_option("--from-hf", o->from_hf, "a Hugging Face model directory (config.json, *.safetensors)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--to", o->to, "the rondo weights directory to write");
  cmd->add_option("--from", o->from, "a rondo weights directory (written by --from-hf)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--to-hf", o->to_hf, "the Hugging Face directory to write");
  cmd->add_option("--dtype", o->dtype, "--to-hf: bf16 | fp16 | fp32 (default: the source's)");
  out.push_back({cmd, [o] { return rondo::run_convert(*o); }});
}

void add_generate(CLI::App& app, Subcommands& out) {
  auto o = std::make_shared<rondo::GenerateCommandOptions>();
  auto* cmd = app.add_subcommand("generate", "continue a prompt with a trained or converted model");
  cmd->add_option("SOURCE", o->source, "a weights directory, a run directory or a checkpoint step")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--prompt", o->prompt, "the text to continue (tokenised as bytes)")->required();
  cmd->add_option("--max-tokens", o->max_tokens, "tokens to generate")->capture_default_str();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "a Hugging Face tokenizer.json (default: the one that came with the weights, else bytes)");
  cmd->add_option("--temperature", o->temperature, "0: greedy; else sampled from softmax(logits / T)")
      ->capture_default_str();
  cmd->add_option("--top-p", o->top_p,
                  "nucleus sampling: the smallest set of tokens reaching this probability")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "the sampler's seed")->capture_default_str();
  cmd->add_option("--worker", o->worker_path, "path of rondo-worker (default: beside rondo)");
  cmd->add_flag("--json", o->json, "print the prompt's and the generated ids and the text as JSON");
  cmd->add_flag("--no-kv-cache", o->no_kv_cache, "recompute the whole sequence for every token");
  cmd->add_flag("--logits", o->logits, "with --json: also the logits after the prompt");
  out.push_back({cmd, [o] { return rondo::run_generate(*o); }});
}

// Runs the parsed subcommand; an error becomes a message and the exit status that says its kind.
int run_parsed(const Subcommands& commands) {
  try {
    for (const auto& c : commands) {
      if (c.app->parsed()) return c.run();
    }
  } catch (const rondo::ConfigError& e) {
    std::fprintf(stderr, "rondo: config error: %s\n", e.what());
    return rondo::kExitConfigError;
  } catch (const rondo::PlanError& e) {
    std::fprintf(stderr, "rondo: plan error: %s\n", e.what());
    return rondo::kExitFailure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rondo: error: %s\n", e.what());
    return rondo::kExitFailure;
  }
  return rondo::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rondo: plans, launches and watches distributed LLM training"};
  app.require_subcommand(1);
  Subcommands commands;
  for (auto add :
       {add_plan, add_run, add_sbatch, add_run_tools, add_simulate, add_data, add_convert, add_generate})
    add(app, commands);
  CLI11_PARSE(app, argc, argv);
  rondo::logging::init(-1);
  return run_parsed(commands);
}
