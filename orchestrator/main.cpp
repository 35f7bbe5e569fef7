// rondo: the coordinator CLI. `rondo plan` validates and plans a config; `rondo run` plans,
// launches the workers, watches and restarts them; `rondo status` shows a run's live state.
// Plain C++: never links LibTorch.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "common/logging.h"
#include "launch/sbatch_script.h"
#include "orchestrator/config.h"
#include "orchestrator/data_command.h"
#include "orchestrator/plan_builder.h"
#include "orchestrator/run_command.h"
#include "orchestrator/schedule_comparison.h"
#include "orchestrator/simulate_command.h"
#include "orchestrator/status_command.h"

namespace {

rondo::Config load(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) return rondo::parse_config(rondo::default_config_yaml(), "default config", overrides);
  return rondo::load_config(path, overrides);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rondo: plans, launches and watches distributed LLM training"};
  app.require_subcommand(1);
  std::vector<std::string> overrides;

  auto* plan_cmd = app.add_subcommand("plan", "validate a config and print its plan");
  std::string plan_config, plan_out;
  bool plan_json = false;
  plan_cmd->add_option("config", plan_config, "config YAML (default: the built-in demo job)");
  plan_cmd->add_option("--set", overrides, "override a key: section.key=value (repeatable)");
  plan_cmd->add_flag("--json", plan_json, "print the plan as one JSON object");
  plan_cmd->add_option("--out", plan_out, "write the binary plan (protobuf) here");
  std::vector<std::string> compare;
  auto* compare_opt =
      plan_cmd
          ->add_option("--compare-schedules", compare,
                       "plan the config under these pipeline schedules (comma-separated; no value: all) and "
                       "compare their predicted step time, bubble and memory")
          ->delimiter(',')
          ->expected(0, -1);

  auto* run_cmd = app.add_subcommand("run", "plan a job, launch its workers with mpirun, wait");
  std::string run_config;
  rondo::RunOptions run_options;
  run_cmd->add_option("config", run_config, "config YAML (default: the built-in demo job)");
  run_cmd->add_option("--set", overrides, "override a key: section.key=value (repeatable)");
  run_cmd->add_option("--run-dir", run_options.run_dir, "run directory (default: runs/<timestamp>)");
  run_cmd->add_option("--worker", run_options.worker_path, "path of rondo-worker (default: beside rondo)");
  run_cmd->add_option("--dashboard-port", run_options.dashboard_port,
                      "serve the live dashboard, /metrics and /api/state on this port (0: off; "
                      "default: launch.dashboard_port)");
  run_cmd->add_option("--linger", run_options.linger_s,
                      "keep the dashboard up this many seconds after the job");

  auto* sbatch_cmd = app.add_subcommand(
      "sbatch",
      "print a Slurm batch script that runs a config (checkpoints and requeues before its time limit)");
  rondo::SbatchOptions sbatch;
  std::string sbatch_config;
  std::vector<std::string> sbatch_overrides;
  sbatch_cmd->add_option("config", sbatch_config, "config YAML (default: the built-in demo job)");
  sbatch_cmd->add_option("--set", sbatch_overrides, "override a key: section.key=value (repeatable)");
  sbatch_cmd->add_option("--run-dir", sbatch.run_dir, "run directory (default: runs/<timestamp>)");
  sbatch_cmd->add_option("--nodes", sbatch.nodes, "nodes")->required()->check(CLI::PositiveNumber);
  sbatch_cmd->add_option("--ntasks-per-node", sbatch.ntasks_per_node, "ranks per node")
      ->required()
      ->check(CLI::PositiveNumber);
  sbatch_cmd->add_option("--time", sbatch.time, "time limit, Slurm's form (e.g. 4:00:00)");
  sbatch_cmd->add_option("--partition", sbatch.partition, "partition");
  sbatch_cmd
      ->add_option("--signal-lead", sbatch.signal_lead_s,
                   "seconds before the time limit to checkpoint and requeue")
      ->capture_default_str();
  sbatch_cmd->add_option("--worker", sbatch.worker, "path of rondo-worker (default: beside rondo)");

  auto* control_cmd =
      app.add_subcommand("control", "ask a running job to checkpoint now, or to checkpoint and stop");
  std::string control_dir, control_action, control_reason;
  control_cmd->add_option("RUN_DIR", control_dir, "the run directory")->required();
  control_cmd->add_option("ACTION", control_action, "checkpoint | stop")
      ->required()
      ->check(CLI::IsMember({"checkpoint", "stop"}));
  control_cmd->add_option("--reason", control_reason, "recorded in the log and events.jsonl");

  auto* status_cmd = app.add_subcommand("status", "print a run's live state (progress, ranks, events)");
  std::string status_dir;
  bool status_json = false;
  status_cmd->add_option("RUN_DIR", status_dir, "the run directory")->required();
  status_cmd->add_flag("--json", status_json, "print the state as JSON (what /api/state serves)");

  auto* config_cmd = app.add_subcommand("config", "print the effective config (defaults filled in)");
  std::string config_path;
  config_cmd->add_option("config", config_path, "config YAML (default: the built-in demo job)");
  config_cmd->add_option("--set", overrides, "override a key: section.key=value (repeatable)");
  bool list_keys = false;
  config_cmd->add_flag("--keys", list_keys, "list every key with its default and meaning (Markdown)");

  auto* sim_cmd = app.add_subcommand("simulate", "generate, validate and time a pipeline schedule");
  rondo::SimulateOptions sim;
  sim_cmd
      ->add_option("--schedule,--scheduler", sim.schedule,
                   "gpipe | 1f1b | interleaved_1f1b | looped_bfs | zb_h1 | zbv | roundpipe")
      ->capture_default_str();
  sim_cmd->add_option("--pp,--num-gpus", sim.pp, "pipeline ranks")->capture_default_str();
  sim_cmd->add_option("--microbatches,--num-microbatches", sim.microbatches, "microbatches per iteration")
      ->capture_default_str();
  sim_cmd->add_option("--virtual", sim.virtual_stages,
                      "chunks per rank (interleaved_1f1b, looped_bfs; default 2)");
  auto* f_opt =
      sim_cmd->add_option("--f", sim.f, "forward time of a rank's share of layers")->capture_default_str();
  auto* b_opt = sim_cmd->add_option("--b", sim.b, "full backward time (I = B - W)")->capture_default_str();
  auto* w_opt = sim_cmd->add_option("--w", sim.w, "weight-gradient time")->capture_default_str();
  auto* layer_costs_opt =
      sim_cmd
          ->add_option("--layer-costs", sim.layer_costs,
                       "per-layer forward costs F1,F2,... (embedding and LM head included)")
          ->excludes(f_opt)
          ->excludes(b_opt)
          ->excludes(w_opt);
  // RoundPipe's simulator inputs (its pp-simulate flags).
  auto* partition_opt = sim_cmd->add_option(
      "--stage-partition", sim.stage_partition,
      "layers per stage, e.g. 4,4,4,4 (per virtual stage); roundpipe: FORWARD|BACKWARD, the backward's "
      "first stage fused with the LM head");
  partition_opt->excludes(f_opt)->excludes(b_opt)->excludes(w_opt)->excludes(layer_costs_opt);
  sim_cmd->add_option("--num-layers", sim.num_layers, "transformer layers (with --stage-partition)");
  sim_cmd->add_option("--fwd-time-per-layer", sim.layer_times.forward,
                      "forward of one layer, one microbatch");
  sim_cmd->add_option("--bwd-time-per-layer", sim.layer_times.backward,
                      "backward of one layer, one microbatch");
  sim_cmd->add_option("--lmhead-fwd-time", sim.layer_times.head_forward, "LM-head forward, one microbatch");
  sim_cmd->add_option("--lmhead-bwd-time", sim.layer_times.head_backward, "LM-head backward, one microbatch");
  sim_cmd->add_option("--comm-time", sim.layer_times.hop, "one transfer between stages on different ranks");
  sim_cmd->add_option("--layer-weight-bytes", sim.layer_times.layer_bytes,
                      "roundpipe: weight bytes of one layer, uploaded to a worker before its task");
  sim_cmd->add_option("--lmhead-weight-bytes", sim.layer_times.head_bytes,
                      "roundpipe: weight bytes of the LM head");
  sim_cmd->add_option("--h2d-bandwidth", sim.layer_times.host_bandwidth,
                      "roundpipe: bytes per time unit of a worker's host link (0: weights move for free)");
  std::string recompute = "full";
  sim_cmd
      ->add_option("--recompute", recompute,
                   "full: each stage recomputes its layers before its backward (as RoundPipe's simulator "
                   "assumes); none")
      ->check(CLI::IsMember({"full", "none"}))
      ->capture_default_str();
  sim_cmd
      ->add_option("--roundpipe-dispatch", sim.roundpipe_dispatch,
                   "rounds (RoundPipe's) | earliest_free: how roundpipe's tasks reach workers")
      ->check(CLI::IsMember({"rounds", "earliest_free"}))
      ->capture_default_str();
  sim_cmd->add_option("--p2p-latency", sim.p2p_latency, "alpha of a transfer between ranks");
  sim_cmd->add_option("--p2p-bandwidth", sim.p2p_bandwidth, "beta, bytes per time unit (0: infinite)");
  sim_cmd->add_option("--p2p-bytes", sim.p2p_bytes, "bytes of one microbatch's boundary activation");
  sim_cmd->add_flag("--async", sim.async, "asynchronous mode: 1f1b becomes PipeDream-2BW (no flush)");
  sim_cmd->add_option("--iterations", sim.iterations, "back-to-back iterations (default 1; 4 with --async)");
  sim_cmd->add_flag("--json", sim.json, "print one JSON object");
  sim_cmd->add_option("--gantt", sim.gantt, "write a Gantt chart (SVG)");
  sim_cmd->add_option("--csv", sim.csv, "write the per-rank action CSV (+ FILE.durations.csv)");
  sim_cmd->add_option("--import-csv", sim.import_csv, "simulate a schedule from an action CSV")
      ->check(CLI::ExistingFile);
  sim_cmd->add_option("--import-durations", sim.import_durations, "durations CSV for --import-csv")
      ->check(CLI::ExistingFile);

  auto* data_cmd = app.add_subcommand("data", "prepare and inspect datasets (Megatron's indexed format)");
  data_cmd->require_subcommand(1);
  auto* prepare_cmd = data_cmd->add_subcommand(
      "prepare",
      "text files, directories of them and JSONL (a \"text\" field per line) -> PREFIX.bin + PREFIX.idx");
  rondo::DataPrepareOptions prepare;
  prepare_cmd->add_option("INPUT", prepare.inputs, "files, directories (recursively, by name), *.jsonl")
      ->required();
  prepare_cmd->add_option("--out", prepare.out, "output PREFIX")->required();
  prepare_cmd->add_option("--dtype", prepare.dtype, "token type: uint16 | int32")->capture_default_str();
  auto* stats_cmd = data_cmd->add_subcommand("stats", "counts and a length histogram of an indexed dataset");
  std::string stats_prefix;
  bool stats_json = false;
  stats_cmd->add_option("PREFIX", stats_prefix, "the dataset (PREFIX.bin + PREFIX.idx)")->required();
  stats_cmd->add_flag("--json", stats_json, "print one JSON object");

  auto* chunks_cmd = data_cmd->add_subcommand(
      "chunks", "chunk plans of an indexed dataset's batches: equal-token vs cost-aware boundaries");
  rondo::DataChunksOptions chunks;
  chunks_cmd->add_option("PREFIX", chunks.prefix, "the dataset (PREFIX.bin + PREFIX.idx)")->required();
  chunks_cmd->add_option("--chunk-size", chunks.chunk_size, "tokens per chunk")->capture_default_str();
  chunks_cmd->add_option("--batch", chunks.batch, "sequences per global batch (in order)")
      ->capture_default_str();
  chunks_cmd->add_option("--layers", chunks.layers, "model the costs are counted on: blocks")
      ->capture_default_str();
  chunks_cmd->add_option("--hidden", chunks.hidden, "hidden size")->capture_default_str();
  chunks_cmd->add_option("--ffn", chunks.ffn, "MLP hidden size")->capture_default_str();
  chunks_cmd->add_option("--vocab", chunks.vocab, "vocabulary")->capture_default_str();
  chunks_cmd->add_flag("--json", chunks.json, "print one JSON object");

  CLI11_PARSE(app, argc, argv);
  rondo::logging::init(-1);

  try {
    if (*plan_cmd) {
      const auto config = load(plan_config, overrides);
      if (compare_opt->count() > 0) {
        std::cout << rondo::comparison_table(rondo::compare_schedules(config, compare));
        return rondo::kExitOk;
      }
      const auto plan = rondo::build_plan(config);
      if (!plan_out.empty()) {
        std::ofstream out(plan_out, std::ios::binary);
        if (!out || !plan.SerializeToOstream(&out)) throw rondo::Error("cannot write " + plan_out);
      }
      if (plan_json) {
        std::cout << rondo::plan_to_json(plan, false).dump() << "\n";
      } else {
        std::cout << rondo::plan_summary(plan);
      }
      return rondo::kExitOk;
    }
    if (*config_cmd && list_keys) {
      std::cout << rondo::schema_markdown();
      return rondo::kExitOk;
    }
    if (*config_cmd) {
      std::cout << rondo::to_yaml(load(config_path, overrides));
      return rondo::kExitOk;
    }
    if (*run_cmd) return rondo::run_job(load(run_config, overrides), run_options);
    if (*status_cmd) return rondo::run_status(status_dir, status_json);
    if (*control_cmd) return rondo::run_control(control_dir, control_action, control_reason);
    if (*sbatch_cmd) {
      // Validate now, with the rank count the script will ask for, rather than in the queue.
      auto checked = sbatch_overrides;
      checked.push_back("parallel.world_size=" + std::to_string(sbatch.nodes * sbatch.ntasks_per_node));
      rondo::check_executable(load(sbatch_config, checked));
      std::cout << rondo::sbatch_script(
          rondo::complete_sbatch_options(sbatch, sbatch_config, sbatch_overrides));
      return rondo::kExitOk;
    }
    if (*prepare_cmd) return rondo::run_data_prepare(prepare);
    if (*stats_cmd) return rondo::run_data_stats(stats_prefix, stats_json);
    if (*chunks_cmd) return rondo::run_data_chunks(chunks);
    if (*sim_cmd) {
      sim.layer_times.recompute = recompute == "full";
      return rondo::run_simulate(sim);
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
