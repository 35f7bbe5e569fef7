// `rondo simulate`: generate (or import) a pipeline schedule, validate it, time it with the event
// simulator, and report makespan, bubble (split into fill, switch, drain and intra), peak
// activations and exposed communication, with optional Gantt SVG and action-CSV export. Costs
// come from per-rank F/B/W, per-layer forward costs, RoundPipe's per-layer times with a stage
// partition, or a durations CSV.
#pragma once

#include <string>

#include "pipeline/layer_times.h"

namespace rondo {

struct SimulateOptions {
  std::string schedule = "1f1b";
  int pp = 4;
  int microbatches = 8;
  int virtual_stages = 0;  // 0: the schedule's own (1, or 2 for zbv)
  double f = 1.0, b = 2.0, w = 1.0;
  std::string layer_costs;  // comma-separated per-layer forward costs
  // RoundPipe's simulator inputs: per-layer times and the stages as layer counts.
  int num_layers = 0;
  std::string stage_partition;  // "4,4,4,4"; roundpipe: "FORWARD|BACKWARD"
  LayerTimes layer_times;
  std::string roundpipe_dispatch = "rounds";
  double p2p_latency = 0.0, p2p_bandwidth = 0.0, p2p_bytes = 0.0;
  bool async = false;
  int iterations = 0;  // 0: 1, or 4 when async (a steady state needs several)
  bool json = false;
  std::string gantt, csv, import_csv, import_durations;
};

// Prints the report; returns the exit status. Bad options throw ConfigError naming the flag.
int run_simulate(const SimulateOptions& options);

// The known closed-form bubble of a schedule under uniform costs without communication, or a
// negative value where none is known.
double analytic_bubble(const std::string& schedule, int pp, int microbatches, int virtual_stages, double f,
                       double b, double w);

}  // namespace rondo
