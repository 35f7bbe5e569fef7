#include "orchestrator/traffic_report.h"

#include <algorithm>
#include <cstdio>
#include <random>
#include <sstream>
#include <utility>
#include <vector>

#include "common/errors.h"
#include "orchestrator/fabric.h"
#include "orchestrator/model_dims.h"
#include "parallelism/model_parameters.h"
#include "proto/plan_names.h"

namespace rondo {
namespace {

constexpr int kEcmpDraws = 20;
constexpr double kGradientBytes = 4;  // fp32 gradients

// Bytes of gradients the rank all-reduces each step: its stages' parameters, its tensor-parallel share.
double gradient_bytes(const plan::Plan& plan, int rank) {
  const auto& m = plan.model();
  const GptDims dims = model_dims(m, std::max(1u, plan.mesh().ep()));
  double params = 0;
  for (uint32_t s : plan.ranks(rank).stages()) {
    const auto& st = plan.stages(static_cast<int>(s));
    params += static_cast<double>(
        stage_parameters(dims, st.first_layer(), st.num_layers(), st.has_embedding(), st.has_lm_head()));
  }
  return params * kGradientBytes / std::max<uint32_t>(1, plan.mesh().tp());
}

struct Totals {
  std::vector<double> load;
  double completion_s = 0, degraded_bytes = 0;
  int busiest = -1;
};

Totals totals(const LeafSpine& net, const std::vector<double>& load, const std::set<int>& degraded) {
  Totals t{load};
  for (int l = 0; l < net.link_count(); ++l) {
    const double s = load[static_cast<size_t>(l)] / net.capacity_bytes_per_s(l);
    if (t.busiest < 0 || s > t.completion_s) t.completion_s = s, t.busiest = l;
    if (degraded.contains(l)) t.degraded_bytes += load[static_cast<size_t>(l)];
  }
  return t;
}

void add(std::vector<double>& into, const std::vector<double>& load) {
  for (size_t i = 0; i < into.size(); ++i) into[i] += load[i];
}

int flows_between_leaves(const LeafSpine& net, const TrafficPlan& p) {
  return static_cast<int>(std::count_if(p.flows.begin(), p.flows.end(), [&](const Flow& f) {
    return net.leaf_of(f.src_host) != net.leaf_of(f.dst_host);
  }));
}

nlohmann::json totals_json(const LeafSpine& net, const Totals& t) {
  return {{"busiest_link", net.link_name(t.busiest)},
          {"busiest_link_bytes", t.load[static_cast<size_t>(t.busiest)]},
          {"completion_s", t.completion_s},
          {"degraded_bytes", t.degraded_bytes}};
}

std::string megabytes(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
  return buf;
}

std::string milliseconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
  return buf;
}

}  // namespace

nlohmann::json traffic_report(const Config& config, const plan::Plan& plan) {
  const auto fabric = fabric_of(config);
  if (!fabric) {
    throw ConfigError(
        "topology.leaves",
        "--traffic needs the cluster's fabric: set topology.leaves, topology.hosts_per_leaf and "
        "topology.spines (topology.rank_hosts for a fragmented placement)");
  }
  const auto& net = fabric->network;
  const size_t links = static_cast<size_t>(net.link_count());
  std::vector<std::vector<double>> ecmp_load(kEcmpDraws, std::vector<double>(links, 0.0));
  std::vector<double> rondo_load(links, 0.0);
  std::vector<RingTraffic> all;
  nlohmann::json rings = nlohmann::json::array();
  for (const auto& g : plan.mesh().groups()) {
    if (g.kind() != gradient_group_kind(plan.mesh()) || g.ranks_size() < 2) continue;
    const std::vector<int> members(g.ranks().begin(), g.ranks().end());
    RingTraffic t;
    for (int r : members) t.host_of_rank.push_back(fabric->host_of_rank.at(static_cast<size_t>(r)));
    t.bytes = gradient_bytes(plan, members.front());
    t.channels = fabric->channels;
    TrafficPlan ecmp;
    for (int d = 0; d < kEcmpDraws; ++d) {
      std::mt19937 rng(static_cast<uint32_t>(d + 1) * 7919u + g.index());
      ecmp = ecmp_ring_traffic(net, t, rng);
      add(ecmp_load[static_cast<size_t>(d)], ecmp.load);
    }
    const auto planned = plan_ring_traffic(net, t, fabric->degraded);
    add(rondo_load, planned.load);
    all.push_back(t);
    rings.push_back({{"group", g.index()},
                     {"ranks", members},
                     {"ring", g.ring_size() ? std::vector<int>(g.ring().begin(), g.ring().end()) : members},
                     {"bytes", t.bytes},
                     {"flows_between_leaves_rank_order", flows_between_leaves(net, ecmp)},
                     {"flows_between_leaves", flows_between_leaves(net, planned)}});
  }
  // ECMP: the draw of median completion time.
  std::vector<Totals> draws;
  for (const auto& load : ecmp_load) draws.push_back(totals(net, load, fabric->degraded));
  std::sort(draws.begin(), draws.end(),
            [](const Totals& a, const Totals& b) { return a.completion_s < b.completion_s; });
  nlohmann::json degraded = nlohmann::json::array();
  for (int l : fabric->degraded) degraded.push_back(net.link_name(l));
  return {{"fabric",
           {{"leaves", net.leaves},
            {"hosts_per_leaf", net.hosts_per_leaf},
            {"spines", net.spines},
            {"host_gbps", net.host_gbps},
            {"spine_gbps", net.spine_gbps},
            {"channels", fabric->channels},
            {"degraded_links", degraded}}},
          {"rings", rings},
          {"ecmp", totals_json(net, draws[draws.size() / 2])},
          {"ecmp_worst", totals_json(net, draws.back())},
          {"ecmp_draws", kEcmpDraws},
          {"rondo", totals_json(net, totals(net, rondo_load, fabric->degraded))},
          {"lower_bound_s", rings_lower_bound_s(net, all)}};
}

std::string traffic_report_text(const nlohmann::json& r) {
  std::ostringstream out;
  const auto& f = r["fabric"];
  out << "traffic on the fabric (topology.*): " << f["leaves"] << " leaves x " << f["hosts_per_leaf"]
      << " hosts, " << f["spines"] << " spines; host links " << f["host_gbps"].get<double>()
      << " Gb/s, spine links " << f["spine_gbps"].get<double>() << " Gb/s, " << f["channels"]
      << " flow(s) per ring edge";
  if (!f["degraded_links"].empty()) {
    out << "; degraded:";
    const char* sep = " ";
    for (const auto& l : f["degraded_links"]) out << std::exchange(sep, ", ") << l.get<std::string>();
  }
  out << "\ndata-parallel rings (each rank's gradients, all-reduced at once every step):\n";
  if (r["rings"].empty()) out << "  none: the data-parallel size is 1\n";
  size_t shown = 0;
  for (const auto& g : r["rings"]) {
    if (++shown > 8) {
      out << "  ... " << r["rings"].size() - 8 << " more\n";
      break;
    }
    out << "  group " << g["group"] << ": " << g["ranks"].size() << " ranks, " << megabytes(g["bytes"])
        << "; ring";
    size_t listed = 0;
    for (const auto& rank : g["ring"]) {
      if (++listed > 16) {
        out << " ...";
        break;
      }
      out << " " << rank;
    }
    out << ": " << g["flows_between_leaves"]
        << " flows between leaves (rank order: " << g["flows_between_leaves_rank_order"] << ")\n";
  }
  const auto row = [&](const char* what, const std::string& ecmp, const std::string& rondo) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "  %-20s %-42s %s\n", what, ecmp.c_str(), rondo.c_str());
    out << buf;
  };
  const auto &e = r["ecmp"], &p = r["rondo"];
  row("", "before: ECMP, rank order (median of " + std::to_string(r["ecmp_draws"].get<int>()) + ")",
      "after: rondo");
  row("busiest link", e["busiest_link"].get<std::string>() + ": " + megabytes(e["busiest_link_bytes"]),
      p["busiest_link"].get<std::string>() + ": " + megabytes(p["busiest_link_bytes"]));
  row("all-reduce (fluid)",
      milliseconds(e["completion_s"]) + " (worst draw " + milliseconds(r["ecmp_worst"]["completion_s"]) + ")",
      milliseconds(p["completion_s"]) + " (lower bound " + milliseconds(r["lower_bound_s"]) + ")");
  if (!f["degraded_links"].empty())
    row("on degraded links", megabytes(e["degraded_bytes"]), megabytes(p["degraded_bytes"]));
  return out.str();
}

}  // namespace rondo
