#include "orchestrator/diagnose_command.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include <google/protobuf/util/json_util.h>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "orchestrator/config.h"
#include "orchestrator/fault_monitor.h"
#include "orchestrator/plan_builder.h"
#include "orchestrator/stage_rebalance.h"

namespace rondo {

namespace fs = std::filesystem;

namespace {

std::vector<report::StepReport> read_reports(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("no step reports to replay: cannot read " + path.string());
  std::vector<report::StepReport> reports;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    report::StepReport r;
    if (!google::protobuf::util::JsonStringToMessage(line, &r).ok()) {
      // A coordinator killed mid-write leaves at most its last line cut short.
      std::fprintf(stderr, "rondo: %s:%zu: not a step report, skipped\n", path.c_str(), n);
      continue;
    }
    reports.push_back(std::move(r));
  }
  return reports;
}

// The live run's hang and crash verdicts (the replay cannot reach them: they come from heartbeats).
std::vector<nlohmann::json> recorded_faults(const fs::path& events) {
  std::vector<nlohmann::json> out;
  std::ifstream in(events);
  std::string line;
  while (std::getline(in, line)) {
    const auto e = nlohmann::json::parse(line, nullptr, false);
    if (!e.is_object() || e.value("event", "") != "fault") continue;
    const auto kind = e.value("kind", "");
    if (kind == "hang" || kind == "crash") out.push_back(e);
  }
  return out;
}

std::string describe(const nlohmann::json& v) {
  std::string who;
  if (v.contains("link")) {
    const int src = v["link"][0], dst = v["link"][1];
    who = "link " + (src < 0 ? std::string("*") : std::to_string(src)) + " -> " +
          (dst < 0 ? std::string("*") : std::to_string(dst));
  } else {
    for (const auto& r : v["ranks"]) who += (who.empty() ? "rank " : ", ") + std::to_string(r.get<int>());
  }
  return who;
}

// `one_launch`: the reports are of one launch's first attempt, whose plan the config still gives (a
// restart or a re-plan changes ranks and stages; another `rondo run` of the same directory may have
// changed the config).
DetectorOptions detector_of(const DiagnoseOptions& o, int world, bool one_launch) {
  FaultsConfig faults;
  std::vector<double> predicted;
  const fs::path config = fs::path(o.run_dir) / "config.yaml";
  if (fs::exists(config)) {
    const Config c = parse_config(read_file(config.string()), config.string());
    faults = c.faults;
    try {  // the plan's stages' predicted compute
      if (one_launch && c.parallel.world_size == world && has_rank_compute_predictions(c))
        predicted = predicted_rank_compute(c, build_plan(c));
    } catch (const std::exception&) {  // a config this build cannot plan: no slow-stage rule
    }
  }
  auto d = detector_options(faults);
  d.predicted_compute_s = std::move(predicted);
  if (o.slow_rank_share) d.slow_rank_share = *o.slow_rank_share;
  if (o.slow_link_factor) d.slow_link_factor = *o.slow_link_factor;
  if (o.slow_stage_factor) d.slow_stage_factor = *o.slow_stage_factor;
  if (o.window) d.window = *o.window;
  if (o.persist) d.persist = *o.persist;
  return d;
}

}  // namespace

int run_diagnose(const DiagnoseOptions& options) {
  const fs::path dir(options.run_dir);
  const auto reports = read_reports(dir / "timings.jsonl");
  int world = 0;
  bool one_launch = true;  // attempt 0 throughout, and no rank's steps going back (a second launch)
  std::map<int, int64_t> last_step;
  for (const auto& r : reports) {
    world = std::max(world, r.rank() + 1);
    auto [it, fresh] = last_step.try_emplace(r.rank(), r.step());
    one_launch &= r.attempt() == 0 && (fresh || r.step() >= it->second);
    it->second = std::max(it->second, r.step());
  }
  const auto detector_options = detector_of(options, world, one_launch);
  if (reports.empty() || world == 0) {
    std::fprintf(stderr, "rondo: %s has no step reports\n", (dir / "timings.jsonl").c_str());
    return kExitFailure;
  }
  FaultDetector detector(world, detector_options);
  std::vector<nlohmann::json> verdicts;
  for (const auto& r : reports) {
    for (const auto& v : detector.add(r)) verdicts.push_back(v.to_json());
  }
  for (const auto& v : detector.finish()) verdicts.push_back(v.to_json());
  for (auto& v : recorded_faults(dir / "events.jsonl")) verdicts.push_back(std::move(v));
  if (options.json) {
    for (const auto& v : verdicts) std::cout << v.dump() << "\n";
  } else {
    std::cout << "rondo diagnose: " << reports.size() << " step reports of " << world << " ranks, "
              << detector.steps_judged() << " steps judged (a suspect in " << detector_options.persist
              << " of " << detector_options.window << " steps is a fault; slow rank: the others waited "
              << detector_options.slow_rank_share
              << " of a step for it; a slow stage: " << detector_options.slow_stage_factor
              << "x the others' compute over prediction)\n";
    if (verdicts.empty()) std::cout << "no fault found\n";
    for (const auto& v : verdicts) {
      std::cout << v.value("kind", "?") << " at step " << v.value("step", 0) << ": " << describe(v)
                << "\n    " << v["evidence"].dump() << "\n";
    }
  }
  return verdicts.empty() ? kExitOk : kExitFaultsFound;
}

}  // namespace rondo
