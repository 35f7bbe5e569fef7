#include "orchestrator/simulate_command.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "pipeline/gantt_svg.h"
#include "pipeline/pipeline_schedule.h"
#include "pipeline/schedule_csv.h"
#include "pipeline/schedule_simulator.h"
#include "pipeline/schedule_validator.h"

namespace rondo {
namespace {

std::vector<double> parse_costs(const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      size_t used = 0;
      out.push_back(std::stod(item, &used));
      if (used != item.size() || out.back() < 0) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw ConfigError("--layer-costs", "'" + item + "' is not a non-negative number");
    }
  }
  return out;
}

int checked_chunks_per_rank(const SimulateOptions& o) {
  if (o.schedule == "zbv" && o.virtual_stages > 0 && o.virtual_stages != 2) {
    throw ConfigError("--virtual", "zbv always has 2 chunks per rank");
  }
  if (o.schedule != "zbv" && !takes_virtual_stages(o.schedule) && o.virtual_stages > 1) {
    throw ConfigError("--virtual", "only interleaved_1f1b, looped_bfs and zbv place several chunks per rank");
  }
  return chunks_per_rank(o.schedule, o.virtual_stages > 0 ? o.virtual_stages : 2);
}

std::string durations_path(const std::string& csv) {
  const std::string suffix = ".csv";
  if (csv.size() > suffix.size() && csv.compare(csv.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return csv.substr(0, csv.size() - suffix.size()) + ".durations.csv";
  }
  return csv + ".durations.csv";
}

// RoundPipe's inputs: the schedule over the given stage partition, timed per layer.
ScheduleRequest layer_time_request(const SimulateOptions& o) {
  if (o.num_layers < 1) throw ConfigError("--num-layers", "must be >= 1 with --stage-partition");
  const std::string& name = o.schedule;
  ScheduleRequest req{name, o.pp, o.microbatches, 1, {}};
  req.partition = parse_stage_partition(o.stage_partition, o.num_layers, "--stage-partition");
  const int stages = static_cast<int>(req.partition.forward.size());
  if (name == "roundpipe") {
    if (!req.partition.separate_backward()) {
      throw ConfigError("--stage-partition",
                        "roundpipe takes FORWARD|BACKWARD partitions (e.g. 5,5,6|0,4,4,4,4)");
    }
  } else if (req.partition.separate_backward()) {
    throw ConfigError("--stage-partition", "only roundpipe has a separate backward partition ('|')");
  } else if (takes_virtual_stages(name)) {
    if (stages % o.pp != 0) {
      throw ConfigError("--stage-partition", name + " needs a multiple of --pp stages (" +
                                                 std::to_string(o.pp) + "), the partition names " +
                                                 std::to_string(stages));
    }
    req.virtual_stages = stages / o.pp;
    if (o.virtual_stages > 0 && o.virtual_stages != req.virtual_stages) {
      throw ConfigError("--virtual", "the partition gives " + std::to_string(req.virtual_stages) +
                                         " stages per rank, --virtual says " +
                                         std::to_string(o.virtual_stages));
    }
  } else {
    req.virtual_stages = checked_chunks_per_rank(o);
  }
  req.costs = stage_costs_from_layer_times(o.layer_times, req.partition);
  return req;
}

}  // namespace

double analytic_bubble(const std::string& schedule, int p, int m, int v, double f, double b, double w) {
  const double pm1 = p - 1;
  if (schedule == "gpipe" || schedule == "1f1b") return pm1 / (m + pm1);
  if (schedule == "interleaved_1f1b") return pm1 / (v * m + pm1);
  if (schedule == "zb_h1") {
    // Zero-bubble H1: each rank idles (p-1)(F + I - W) (Qi et al., 2023).
    const double i = b - w, idle = pm1 * (f + i - w);
    return idle / (m * (f + b) + idle);
  }
  return -1;
}

namespace {

// The schedule a run of `rondo simulate` simulates and the op costs it uses; `uniform`: every
// stage's ops take --f/--b/--w (the closed forms apply).
struct SimulationInput {
  PipelineSchedule schedule;
  StageCosts costs;
  bool uniform = true;
};

// --import-csv: a schedule from the action CSV, with its durations when given.
SimulationInput imported_schedule(const SimulateOptions& o) {
  SimulationInput in;
  in.uniform = o.layer_costs.empty();
  in.schedule =
      schedule_from_csv(read_file(o.import_csv), std::filesystem::path(o.import_csv).stem().string());
  if (!o.import_durations.empty()) {
    in.costs = stage_costs_from_csv(in.schedule, read_file(o.import_durations));
    in.uniform = false;
  } else {
    in.costs = uniform_stage_costs(in.schedule.num_stages, in.schedule.virtual_stages, o.f, o.b, o.w);
  }
  return in;
}

// --stage-partition: stages from per-layer times.
SimulationInput partitioned_schedule(const SimulateOptions& o) {
  auto req = layer_time_request(o);
  req.async = o.async;
  req.iterations = o.iterations > 0 ? o.iterations : (o.async ? 4 : 1);
  req.roundpipe_dispatch = o.roundpipe_dispatch;
  SimulationInput in{generate_schedule(req), req.costs, false};
  if (!in.schedule.derived_costs.empty()) in.costs = in.schedule.derived_costs;
  return in;
}

// Uniform stages (--f/--b/--w), or stages cut from --layer-costs.
SimulationInput generated_schedule(const SimulateOptions& o) {
  if (o.num_layers > 0) throw ConfigError("--num-layers", "goes with --stage-partition");
  const int v = checked_chunks_per_rank(o);
  const int stages = o.pp * v;
  SimulationInput in;
  in.uniform = o.layer_costs.empty();
  std::vector<double> layers;
  if (!o.layer_costs.empty()) layers = parse_costs(o.layer_costs);
  if (o.schedule == "roundpipe") {
    in.costs = uniform_stage_costs(stages, v, o.f, o.b, o.w);  // roundpipe partitions the layers itself
  } else if (!layers.empty()) {
    if (static_cast<int>(layers.size()) < stages) {
      throw ConfigError("--layer-costs", std::to_string(layers.size()) + " layers cannot fill " +
                                             std::to_string(stages) + " stages");
    }
    in.costs = stage_costs_from_layers(layers, partition_min_max(layers, stages));
  } else {
    in.costs = uniform_stage_costs(stages, v, o.f, o.b, o.w);
  }
  in.costs.p2p_latency = o.p2p_latency;
  in.costs.p2p_bandwidth = o.p2p_bandwidth;
  in.costs.p2p_bytes = o.p2p_bytes;
  ScheduleRequest req{o.schedule, o.pp, o.microbatches, v, in.costs};
  req.async = o.async;
  req.iterations = o.iterations > 0 ? o.iterations : (o.async ? 4 : 1);
  req.layer_costs = layers;
  req.roundpipe_dispatch = o.roundpipe_dispatch;
  in.schedule = generate_schedule(req);
  if (!in.schedule.derived_costs.empty()) in.costs = in.schedule.derived_costs;
  return in;
}

// What `rondo simulate` reports of one simulation.
struct SimulationReport {
  const PipelineSchedule& schedule;
  const SimulationResult& result;
  BubbleBreakdown parts;
  double bubble = 0;     // steady state over several iterations
  double analytic = -1;  // the closed form, when it applies
  double share(double t) const {
    const double capacity = result.makespan * schedule.pp;
    return capacity > 0 ? t / capacity : 0.0;
  }
};

void print_json(const SimulationReport& r) {
  const auto& schedule = r.schedule;
  const auto& result = r.result;
  nlohmann::json j = {{"schedule", schedule.name},
                      {"pp", schedule.pp},
                      {"microbatches", schedule.microbatches},
                      {"virtual", schedule.virtual_stages},
                      {"iterations", schedule.iterations},
                      {"async", schedule.async},
                      {"num_stages", schedule.num_stages},
                      {"num_actions", schedule.num_actions()},
                      {"makespan", result.makespan},
                      {"bubble_fraction", r.bubble},
                      {"bubble_fraction_whole_run", result.bubble_fraction},
                      {"peak_activations", result.peak_activations},
                      {"busy", result.busy},
                      {"exposed_comm", result.exposed_comm},
                      {"exposed_comm_per_rank", result.exposed_comm_per_rank}};
  if (r.analytic >= 0) j["analytic_bubble"] = r.analytic;
  j["comm_total"] = result.comm_total;
  j["exposed_host_transfer"] = result.exposed_host_transfer;
  if (schedule.iterations == 1) {
    const auto& parts = r.parts;
    j["bubble_time"] = result.bubble_fraction * result.makespan * schedule.pp;
    j["bubble_parts_time"] = {
        {"fill", parts.fill}, {"switch", parts.phase_switch}, {"drain", parts.drain}, {"intra", parts.intra}};
    j["bubble_parts"] = {{"fill", r.share(parts.fill)},
                         {"switch", r.share(parts.phase_switch)},
                         {"drain", r.share(parts.drain)},
                         {"intra", r.share(parts.intra)}};
  }
  std::cout << j.dump() << "\n";
}

void print_text(const SimulationReport& r, const SimulateOptions& o) {
  const auto& schedule = r.schedule;
  const auto& result = r.result;
  std::printf("%s%s: pp %d, %d microbatches, v %d, %d stages, %d iteration(s), %zu actions (valid)\n",
              schedule.name.c_str(), schedule.async ? " (async)" : "", schedule.pp, schedule.microbatches,
              schedule.virtual_stages, schedule.num_stages, schedule.iterations, schedule.num_actions());
  std::printf("makespan %.4g, %sbubble %.2f%%", result.makespan,
              schedule.iterations > 1 ? "steady-state " : "", 100 * r.bubble);
  if (r.analytic >= 0) std::printf(" (closed form %.2f%%)", 100 * r.analytic);
  std::printf(", exposed communication %.4g\n", result.exposed_comm);
  if (schedule.iterations == 1) {
    std::printf("bubble: fill %.2f%%, switch %.2f%%, drain %.2f%%, intra %.2f%%\n",
                100 * r.share(r.parts.fill), 100 * r.share(r.parts.phase_switch),
                100 * r.share(r.parts.drain), 100 * r.share(r.parts.intra));
  }
  for (int k = 0; k < schedule.pp; ++k) {
    const auto u = static_cast<size_t>(k);
    std::printf("  rank %d: busy %.4g, idle %.4g, peak activations %.3g microbatches\n", k, result.busy[u],
                result.makespan - result.busy[u], result.peak_activations[u]);
  }
  if (!o.gantt.empty()) std::printf("Gantt chart: %s\n", o.gantt.c_str());
  if (!o.csv.empty())
    std::printf("action CSV: %s (durations: %s)\n", o.csv.c_str(), durations_path(o.csv).c_str());
}

// The most compute actions `rondo simulate` generates (about two minutes on one core, 2e6 in 4 s):
// past it a schedule is refused before anything is built.
constexpr double kMaxSimulatedActions = 5e7;

// A generated schedule's actions, about: an F and a B per stage (pp x v of them), microbatch and
// iteration.
void check_simulation_size(const SimulateOptions& o) {
  if (!o.import_csv.empty()) return;
  const double actions =
      2.0 * o.pp * o.microbatches * std::max(1, o.virtual_stages) * std::max(1, o.iterations);
  if (actions <= kMaxSimulatedActions) return;
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "--pp %d x --microbatches %d%s makes about %.2g actions; rondo simulate takes up to %.0g "
                "(about two minutes): lower --pp or --microbatches (the bubble depends on their ratio)",
                o.pp, o.microbatches,
                o.virtual_stages > 1 ? (" x --virtual " + std::to_string(o.virtual_stages)).c_str() : "",
                actions, kMaxSimulatedActions);
  throw ConfigError("--microbatches", buf);
}

}  // namespace

int run_simulate(const SimulateOptions& options) {
  SimulateOptions o = options;
  // RoundPipe's names (interleaved-1f1b, looped-bfs) are ours with '_'.
  std::replace(o.schedule.begin(), o.schedule.end(), '-', '_');
  if (o.pp < 1) throw ConfigError("--pp", "must be >= 1");
  if (o.microbatches < 1) throw ConfigError("--microbatches", "must be >= 1");
  check_simulation_size(o);
  const auto in = !o.import_csv.empty()        ? imported_schedule(o)
                  : !o.stage_partition.empty() ? partitioned_schedule(o)
                                               : generated_schedule(o);
  const auto& schedule = in.schedule;
  validate_schedule(schedule);
  const auto result = simulate_schedule(schedule, in.costs);
  if (!o.gantt.empty()) write_file_atomic(o.gantt, gantt_svg(schedule, result));
  if (!o.csv.empty()) {
    write_file_atomic(o.csv, schedule_to_csv(schedule));
    write_file_atomic(durations_path(o.csv), durations_to_csv(schedule, result));
  }
  // Over several iterations the figure of merit is the steady state's bubble.
  SimulationReport report{schedule, result, bubble_breakdown(schedule, in.costs, result),
                          steady_state_bubble(schedule, result)};
  if (in.uniform && in.costs.transfer_time() == 0 && schedule.iterations == 1) {
    report.analytic = analytic_bubble(schedule.name, schedule.pp, schedule.microbatches,
                                      schedule.virtual_stages, o.f, o.b, o.w);
  }
  if (o.json) {
    print_json(report);
  } else {
    print_text(report, o);
  }
  return kExitOk;
}

}  // namespace rondo
