#include "orchestrator/hdp_report.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>

#include "common/errors.h"
#include "data/hdp_batches.h"
#include "data/indexed_dataset.h"
#include "data/lognormal_mix.h"
#include "data/token_corpus.h"
#include "orchestrator/fabric.h"
#include "orchestrator/model_dims.h"
#include "orchestrator/plan_builder.h"
#include "parallelism/hdp_pipelines.h"

namespace rondo {

HdpOptions hdp_options(const Config& c) {
  const auto& p = c.parallel;
  HdpOptions o(p.world_size / std::max<int64_t>(p.pipeline_model_parallel_size, 1),
               p.max_tokens_per_rank > 0 ? p.max_tokens_per_rank : c.model.seq_length);
  if (const auto fabric = fabric_of(c)) {
    // HDP's ranks are the pipelines (one rank each at pp = 1): a pipeline's host is where its
    // stages are.
    const DeviceMesh mesh = mesh_of(c);
    std::vector<std::vector<int64_t>> stage_hosts(static_cast<size_t>(o.ranks),
                                                  std::vector<int64_t>(static_cast<size_t>(mesh.pp())));
    for (int r = 0; r < mesh.world_size(); ++r) {
      const MeshCoords at = mesh.coords(r);
      stage_hosts.at(static_cast<size_t>(at.dp)).at(static_cast<size_t>(at.pp)) =
          fabric->host_of_rank.at(static_cast<size_t>(r));
    }
    hdp_set_hosts(o, hdp_pipeline_hosts(stage_hosts));
  }
  return o;
}

int64_t hdp_tokens_per_step(const Config& c) {
  return c.data.tokens_per_step > 0 ? c.data.tokens_per_step
                                    : c.training.global_batch_size * c.model.seq_length;
}

ContextParallelCost hdp_cost(const Config& c) {
  ContextParallelCostSpec spec{.dims = model_dims(c.model),
                               .device_flops = c.pipeline.device_tflops * 1e12,
                               .link_bytes_per_s = c.pipeline.p2p_bandwidth_gbps * 1e9,
                               .link_latency_s = c.pipeline.p2p_latency_s};
  if (const auto fabric = fabric_of(c)) {
    // Between hosts a rank has its share of its host's link: every rank of a host may be passing
    // a ring to another host at once.
    std::map<int, int64_t> per_host;
    int64_t most = 1;
    for (int h : fabric->host_of_rank) most = std::max(most, ++per_host[h]);
    // Never faster than within a host (a config whose hosts' links outrun it: as fast).
    spec.cross_host_bytes_per_s =
        std::min(spec.link_bytes_per_s, c.topology.host_gbps * 1e9 / 8 / static_cast<double>(most));
  }
  return ContextParallelCost(spec);
}

std::vector<int64_t> hdp_document_lengths(const Config& c) {
  const std::string format = TokenCorpus::resolve_format(c.data.path, c.data.format);
  if (format == "lognormal") return lognormal_lengths(c.data.lognormal_mix());
  if (format != "indexed")
    throw ConfigError("data.path",
                      "parallel.hdp draws whole documents from a lognormal mix (data.path: lognormal) "
                      "or an indexed dataset (`rondo data prepare`), not " +
                          format);
  const auto ds = IndexedDataset::open(c.data.path);
  std::vector<int64_t> lengths(ds.documents(), 0);
  for (size_t d = 0; d < ds.documents(); ++d)
    for (int64_t s = ds.document_start(d); s < ds.document_start(d + 1); ++s)
      lengths[d] += ds.length(static_cast<size_t>(s));
  return lengths;
}

namespace {

HdpBatches batches_of(const Config& c) {
  return HdpBatches(hdp_document_lengths(c), hdp_tokens_per_step(c), c.model.seq_length,
                    static_cast<uint64_t>(c.training.seed));
}

// The ranks' hosts in all (1 without a fabric).
size_t hosts_of(const Config& c) {
  const auto fabric = fabric_of(c);
  return fabric ? std::set<int>(fabric->host_of_rank.begin(), fabric->host_of_rank.end()).size() : 1;
}

// One policy's figures summed over the sampled batches.
struct PolicySums {
  double step = 0, balance = 0, bound = 0, seconds = 0, blind_step = 0;
  int64_t groups = 0, across = 0;  // groups of more than one rank, and those spanning hosts
  std::map<int64_t, int64_t> degrees;

  void add(const HdpPlan& plan, double step_s, double busy_max_over_mean, double planner_s,
           const HdpOptions& o) {
    seconds += planner_s;
    step += step_s;
    balance += busy_max_over_mean;
    for (auto [d, k] : plan.degree_histogram()) degrees[d] += k;
    for (const auto& p : plan.placements) {
      groups += p.ranks.size() > 1;
      across += hdp_spans_hosts(p.ranks, o);
    }
  }
  // Means over `n` batches; with hosts the share of groups across them (and rondo's blind step).
  nlohmann::json mean(double n, bool hosts, bool rondo) const {
    nlohmann::json out_degrees = nlohmann::json::array();
    for (auto [d, k] : degrees) out_degrees.push_back({d, k});
    nlohmann::json r = {{"step_time", step / n},
                        {"busy_max_over_mean", balance / n},
                        {"lower_bound", bound / n},
                        {"planner_seconds", seconds / n},
                        {"degrees", out_degrees}};
    if (!hosts) return r;
    r["groups_across_hosts"] = groups > 0 ? static_cast<double>(across) / static_cast<double>(groups) : 0.0;
    if (rondo) r["fabric_blind_step_time"] = blind_step / n;
    return r;
  }
};

// rondo placing its groups as if every rank were on one host, timed on the hosts it has.
double fabric_blind_step(const std::vector<int64_t>& lengths, const Config& c, const HdpOptions& options,
                         const ContextParallelCost& cost) {
  HdpOptions blind = options;
  hdp_set_hosts(blind, {});
  const int64_t stages = c.parallel.pipeline_model_parallel_size;
  if (stages == 1)
    return hdp_retimed(plan_hdp(lengths, HdpPolicy::kRondo, blind, cost), options, cost).step_s;
  const auto plan = plan_hdp_pipelines(lengths, HdpPolicy::kRondo, blind, stages, c.pipeline.schedule, cost);
  return plan_hdp_waves(hdp_retimed(plan.hdp, options, cost), stages, c.pipeline.schedule, cost).step_s;
}

}  // namespace

HdpReport hdp_report(const Config& c, int64_t batches) {
  if (batches < 1) throw ConfigError("--steps", "must be >= 1");
  const HdpOptions options = hdp_options(c);
  const ContextParallelCost cost = hdp_cost(c);
  const int64_t stages = c.parallel.pipeline_model_parallel_size;
  HdpBatches draw = batches_of(c);
  std::map<HdpPolicy, PolicySums> sums;
  double sequences = 0, tokens = 0;
  int64_t longest = 0;
  for (int64_t b = 0; b < batches; ++b) {
    const auto lengths = draw.next();
    sequences += static_cast<double>(lengths.size());
    for (int64_t l : lengths) tokens += static_cast<double>(l), longest = std::max(longest, l);
    const double bound = hdp_lower_bound(lengths, options, cost, stages);
    for (HdpPolicy policy : kHdpPolicies) {
      auto& s = sums[policy];
      const auto t0 = std::chrono::steady_clock::now();
      const auto since = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      };
      if (stages == 1) {
        const HdpPlan plan = plan_hdp(lengths, policy, options, cost);
        s.add(plan, plan.step_s, plan.busy_max_over_mean(), since(), options);
      } else {  // the step simulated on the pipelines
        const auto plan = plan_hdp_pipelines(lengths, policy, options, stages, c.pipeline.schedule, cost);
        s.add(plan.hdp, plan.step_s, plan.busy_max_over_mean(), since(), options);
      }
      s.bound += bound;
      if (policy == HdpPolicy::kRondo && !options.hosts.empty())
        s.blind_step += fabric_blind_step(lengths, c, options, cost);
    }
  }
  const double n = static_cast<double>(batches);
  HdpReport out{nlohmann::json::object(),
                {{"batches", batches},
                 {"sequences_per_batch", sequences / n},
                 {"tokens_per_batch", tokens / n},
                 {"longest", longest},
                 {"ranks", c.parallel.world_size},
                 {"pipelines", options.ranks},
                 {"stages", stages},
                 {"hosts", hosts_of(c)},
                 {"max_tokens_per_rank", options.max_tokens_per_rank}}};
  for (const auto& [policy, s] : sums)
    out.policies[hdp_policy_name(policy)] = s.mean(n, !options.hosts.empty(), policy == HdpPolicy::kRondo);
  return out;
}

std::string hdp_report_text(const HdpReport& r, const Config& c) {
  const auto &report = r.policies, &batches = r.batches;
  std::string out;
  char line[256];
  std::string where = std::to_string(batches["ranks"].get<int64_t>()) + " ranks";
  const bool hosts = batches["hosts"].get<int64_t>() > 1;
  if (hosts) where += " on " + std::to_string(batches["hosts"].get<int64_t>()) + " hosts";
  if (batches["stages"].get<int64_t>() > 1)  // the planner's groups are of pipelines
    where += " (" + std::to_string(batches["pipelines"].get<int64_t>()) + " pipelines of " +
             std::to_string(batches["stages"].get<int64_t>()) + " stages, " + c.pipeline.schedule + ")";
  std::snprintf(
      line, sizeof line,
      "HDP (parallel.hdp): %lld sampled batches of %.0f tokens in %.1f sequences on average (longest %lld) "
      "on %s, %lld tokens per rank\n",
      static_cast<long long>(batches["batches"].get<int64_t>()), batches["tokens_per_batch"].get<double>(),
      batches["sequences_per_batch"].get<double>(), static_cast<long long>(batches["longest"].get<int64_t>()),
      where.c_str(), static_cast<long long>(batches["max_tokens_per_rank"].get<int64_t>()));
  out += line;
  out += "  policy     step (s)  x lower bound  busy max/mean  planner (ms)  sequences by group size\n";
  for (HdpPolicy policy : kHdpPolicies) {
    const auto& r = report[hdp_policy_name(policy)];
    // Group sizes in power-of-two bins: 1, 2, 3-4, 5-8, ...
    std::map<int64_t, int64_t> bins;
    for (const auto& dk : r["degrees"]) {
      int64_t top = 1;
      while (top < dk[0].get<int64_t>()) top *= 2;
      bins[top] += dk[1].get<int64_t>();
    }
    std::string degrees;
    for (auto [top, k] : bins) {
      if (!degrees.empty()) degrees += ' ';
      if (top > 2) degrees.append(std::to_string(top / 2 + 1)).append("-");
      degrees.append(std::to_string(top)).append(":").append(std::to_string(k));
    }
    if (hosts) {
      std::snprintf(line, sizeof line, "; %.0f%% of groups across hosts",
                    100 * r["groups_across_hosts"].get<double>());
      degrees += line;
    }
    std::snprintf(line, sizeof line, "  %-9s %9.4f  %13.3f  %13.3f  %12.2f  %s%s\n", hdp_policy_name(policy),
                  r["step_time"].get<double>(), r["step_time"].get<double>() / r["lower_bound"].get<double>(),
                  r["busy_max_over_mean"].get<double>(), 1e3 * r["planner_seconds"].get<double>(),
                  degrees.c_str(),
                  c.parallel.hdp_policy == hdp_policy_name(policy) ? "  <- parallel.hdp_policy" : "");
    out += line;
  }
  if (hosts) {
    const auto& r = report["rondo"];
    std::snprintf(
        line, sizeof line,
        "  rondo placing its groups as if on one host: step %.4f s (%.3f x rondo's), timed on these "
        "hosts\n",
        r["fabric_blind_step_time"].get<double>(),
        r["fabric_blind_step_time"].get<double>() / r["step_time"].get<double>());
    out += line;
  }
  return out;
}

}  // namespace rondo
