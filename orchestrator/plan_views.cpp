#include "orchestrator/plan_views.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include <unistd.h>

#include "orchestrator/model_dims.h"
#include "orchestrator/plan_builder.h"
#include "parallelism/model_parameters.h"
#include "proto/plan_names.h"
#include "proto/plan_version.h"

namespace rondo {

int64_t count_parameters(const plan::ModelSpec& m) { return model_parameters(model_dims(m)); }

std::string action_to_string(const plan::Action& a) {
  // A forward of the next step's microbatch (asynchronous plans) carries a "+".
  const std::string stage = std::to_string(a.stage()),
                    mb = std::to_string(a.microbatch()) + (a.ahead() ? "+" : "");
  switch (a.kind()) {
    case plan::ACTION_F:
      return stage + "F" + mb;
    case plan::ACTION_B:
      return stage + "B" + mb;
    case plan::ACTION_I:
      return stage + "I" + mb;
    case plan::ACTION_W:
      return stage + "W" + mb;
    case plan::ACTION_SEND_F:
      return "SEND_F" + stage + ">" + std::to_string(a.peer()) + (a.ahead() ? "+" : "");
    case plan::ACTION_RECV_F:
      return "RECV_F" + stage + "<" + std::to_string(a.peer()) + (a.ahead() ? "+" : "");
    case plan::ACTION_SEND_B:
      return "SEND_B" + stage + ">" + std::to_string(a.peer());
    case plan::ACTION_RECV_B:
      return "RECV_B" + stage + "<" + std::to_string(a.peer());
    case plan::ACTION_ALLREDUCE:
      return "ALLREDUCE";
    case plan::ACTION_OPTIM:
      return "OPTIM";
    default:
      return "?";
  }
}

nlohmann::json plan_to_json(const plan::Plan& p, bool with_actions) {
  const auto& m = p.mesh();
  nlohmann::json j;
  j["version"] = p.version();
  j["world_size"] = m.world_size();
  j["mesh"] = {{"tp", m.tp()}, {"pp", m.pp()}, {"dp", m.dp()},
               {"cp", m.cp()}, {"ep", m.ep()}, {"vpp", m.vpp()}};
  j["rings"] = nlohmann::json::array();
  for (const auto& g : m.groups()) {
    if (g.kind() == gradient_group_kind(m) && g.ring_size() > 0)
      j["rings"].push_back(
          {{"dp_group", g.index()}, {"ring", std::vector<uint32_t>(g.ring().begin(), g.ring().end())}});
  }
  j["micro_batch_size"] = p.training().micro_batch_size();
  j["global_batch_size"] = p.training().global_batch_size();
  j["num_microbatches"] = p.training().num_microbatches();
  j["pipeline_chunk_lengths"] = std::vector<int64_t>(p.data().pipeline_chunk_lengths().begin(),
                                                     p.data().pipeline_chunk_lengths().end());
  j["schedule"] = name_of(p.schedule());
  j["model_family"] = p.model().family();
  j["recompute_granularity"] = name_of(p.model().recompute_granularity());
  j["parameters"] = count_parameters(p.model());
  j["tokens_per_step"] = static_cast<int64_t>(p.training().global_batch_size()) * p.model().seq_length();
  const auto stages_json = [](const auto& stages) {
    auto out = nlohmann::json::array();
    for (const auto& s : stages) {
      out.push_back({{"index", s.index()},
                     {"first_layer", s.first_layer()},
                     {"num_layers", s.num_layers()},
                     {"embedding", s.has_embedding()},
                     {"lm_head", s.has_lm_head()}});
    }
    return out;
  };
  j["stages"] = stages_json(p.stages());
  j["backward_stages"] = stages_json(p.backward_stages());
  j["stateless_workers"] = p.stateless_workers();
  j["asynchronous"] = p.asynchronous();
  j["delay_correction"] = name_of(p.delay_correction());
  const auto& pred = p.prediction();
  nlohmann::json pred_ranks = nlohmann::json::array();
  for (const auto& r : pred.ranks()) {
    pred_ranks.push_back({{"pp_rank", r.pp_rank()},
                          {"busy_s", r.busy_s()},
                          {"peak_activations", r.peak_activations()},
                          {"weight_bytes", r.weight_bytes()},
                          {"activation_bytes", r.activation_bytes()},
                          {"peak_bytes", r.weight_bytes() + r.activation_bytes()}});
  }
  j["prediction"] = {
      {"step_time_s", pred.step_time_s()},
      {"bubble_fraction", pred.bubble_fraction()},
      {"exposed_comm_s", pred.exposed_comm_s()},
      {"stage_forward_s", std::vector<double>(pred.stage_forward_s().begin(), pred.stage_forward_s().end())},
      {"stage_backward_s",
       std::vector<double>(pred.stage_backward_s().begin(), pred.stage_backward_s().end())},
      {"stage_weight_s", std::vector<double>(pred.stage_weight_s().begin(), pred.stage_weight_s().end())},
      {"device_tflops", pred.device_tflops()},
      {"ranks", std::move(pred_ranks)}};
  if (pred.stage_backward_lead_s_size() > 0) {
    j["prediction"]["stage_backward_lead_s"] =
        std::vector<double>(pred.stage_backward_lead_s().begin(), pred.stage_backward_lead_s().end());
  }
  auto& ranks = j["ranks"] = nlohmann::json::array();
  for (const auto& r : p.ranks()) {
    const auto& c = r.coords();
    nlohmann::json rj = {
        {"rank", r.rank()},
        {"coords", {{"tp", c.tp()}, {"cp", c.cp()}, {"ep", c.ep()}, {"dp", c.dp()}, {"pp", c.pp()}}},
        {"stages", std::vector<uint32_t>(r.stages().begin(), r.stages().end())}};
    if (with_actions) {
      auto& acts = rj["actions"] = nlohmann::json::array();
      for (const auto& a : r.actions()) acts.push_back(action_to_string(a));
      rj["microbatch_first_sample"] =
          std::vector<uint32_t>(r.microbatch_first_sample().begin(), r.microbatch_first_sample().end());
    }
    ranks.push_back(std::move(rj));
  }
  return j;
}

std::string emulated_op_warning(const plan::Plan& p) {
  const auto& pred = p.prediction();
  if (!p.training().emulate_compute() || pred.stage_forward_s().empty()) return "";
  double shortest = std::numeric_limits<double>::infinity();
  for (double f : pred.stage_forward_s()) {
    if (f > 0) shortest = std::min(shortest, f);
  }
  if (!(shortest < kShortestEmulatedOpS)) return "";
  std::ostringstream out;
  out << "warning: training.emulate_compute: the shortest emulated op lasts " << shortest * 1e6
      << " us, comparable to the executor's own overhead per action (~100-300 us on a CPU), so measured "
         "bubbles will exceed the prediction; pipeline.device_tflops="
      << pred.device_tflops() * shortest / kShortestEmulatedOpS << " makes every op last 1 ms or more\n";
  return out.str();
}

std::string memory_warning(const plan::Plan& p, double host_bytes) {
  const bool gpu = p.training().device() == plan::DEVICE_CUDA;
  const double device = gpu ? kLargestGpuBytes : host_bytes;
  const plan::RankPrediction* worst = nullptr;
  for (const auto& r : p.prediction().ranks()) {
    if (!worst || r.weight_bytes() + r.activation_bytes() > worst->weight_bytes() + worst->activation_bytes())
      worst = &r;
  }
  if (!worst || !(device > 0) || worst->weight_bytes() + worst->activation_bytes() <= device) return "";
  std::ostringstream out;
  out << "warning: pipeline rank " << worst->pp_rank() << " needs "
      << (worst->weight_bytes() + worst->activation_bytes()) / 1e9 << " GB (predicted: weights and optimizer "
      << worst->weight_bytes() / 1e9 << ", activations " << worst->activation_bytes() / 1e9 << "), more than "
      << (gpu ? "any one GPU holds (" : "this machine's memory (") << device / 1e9
      << " GB); more pipeline or tensor parallelism, a smaller micro batch or recomputation lowers it, and "
         "pipeline.memory_cap_gb set to your device's memory refuses such a plan\n";
  return out.str();
}

double host_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0.0;
}

namespace {

// Data-parallel rings ordered by the fabric (topology.*) or around comms.avoid_links (at most 8
// listed); "" when every ring is in rank order.
std::string rings_summary(const plan::Mesh& m) {
  std::ostringstream out;
  int rings = 0;
  for (const auto& g : m.groups()) {
    if (g.kind() != gradient_group_kind(m) || g.ring_size() == 0) continue;
    if (rings++ == 8) {
      out << "  ...\n";
      break;
    }
    out << (rings == 1 ? "rings by leaf and host (topology.*) and around avoided links (comms.avoid_links):\n"
                       : "")
        << "  data-parallel group " << g.index() << ":";
    for (uint32_t r : g.ring()) out << " " << r << " ->";
    out << " " << g.ring(0) << "\n";
  }
  return out.str();
}

}  // namespace

std::string plan_summary(const plan::Plan& p) {
  const auto& m = p.mesh();
  const auto& t = p.training();
  std::ostringstream out;
  out << "plan v" << p.version() << ": " << m.world_size() << " ranks = tp " << m.tp() << " x cp " << m.cp()
      << " x dp " << m.dp() << " x pp " << m.pp() << " (ep " << m.ep() << ", vpp " << m.vpp() << ")\n";
  out << "model: " << count_parameters(p.model()) << " parameters, " << p.model().num_layers()
      << " layers, hidden " << p.model().hidden_size() << ", seq " << p.model().seq_length() << "\n";
  out << "batch: global " << t.global_batch_size() << " = micro " << t.micro_batch_size() << " x dp "
      << m.dp() << " x " << t.num_microbatches() << " microbatches per rank; "
      << static_cast<int64_t>(t.global_batch_size()) * p.model().seq_length() << " tokens per step\n";
  out << "pipeline: schedule " << name_of(p.schedule())
      << (p.asynchronous() ? " asynchronous (PipeDream-2BW, one-step weight delay, correction " +
                                 name_of(p.delay_correction()) + "; \"+\": the next step's forward)"
                           : "")
      << ", " << p.stages_size() << " stages:";
  for (const auto& s : p.stages()) {
    out << " [" << s.index() << ": layers " << s.first_layer() << "-" << s.first_layer() + s.num_layers() - 1
        << (s.has_embedding() ? " +embedding" : "") << (s.has_lm_head() ? " +lm_head" : "") << "]";
  }
  out << "\n";
  if (p.backward_stages_size() > 0) {
    out << "backward (own partition, stateless workers), " << p.backward_stages_size() << " stages:";
    for (const auto& s : p.backward_stages()) {
      out << " [" << s.index() << ": "
          << (s.num_layers() > 0 ? "layers " + std::to_string(s.first_layer()) + "-" +
                                       std::to_string(s.first_layer() + s.num_layers() - 1)
                                 : std::string("no block"))
          << (s.has_embedding() ? " +embedding" : "") << (s.has_lm_head() ? " +lm_head" : "") << "]";
    }
    out << "\n";
  }
  out << rings_summary(m);
  if (m.pp() > 1) {
    const std::string stuck = blocking_send_deadlock(p);
    out << "transfers: "
        << (stuck.empty() ? "also deadlock-free where sends block until matched"
                          : "need non-blocking sends (rondo's executor never blocks on one); "
                            "with blocking sends: " +
                                stuck)
        << "\n";
  }
  const auto& pred = p.prediction();
  out << "predicted step (at pipeline.device_tflops): " << pred.step_time_s() * 1e3 << " ms, bubble "
      << 100 * pred.bubble_fraction() << "%, exposed p2p (summed over pipeline ranks) "
      << pred.exposed_comm_s() * 1e3 << " ms\n";
  out << emulated_op_warning(p) << memory_warning(p, host_memory_bytes());
  for (const auto& r : pred.ranks()) {
    out << "  pipeline rank " << r.pp_rank() << ": busy " << r.busy_s() * 1e3 << " ms, peak "
        << r.peak_activations() << " microbatches in flight, memory "
        << (r.weight_bytes() + r.activation_bytes()) / 1e9 << " GB (weights+optimizer "
        << r.weight_bytes() / 1e9 << ", activations " << r.activation_bytes() / 1e9 << ")\n";
  }
  const int shown = std::min(p.ranks_size(), 8);
  for (int i = 0; i < shown; ++i) {
    const auto& r = p.ranks(i);
    const auto& c = r.coords();
    out << "  rank " << r.rank() << ": tp " << c.tp() << " cp " << c.cp() << " ep " << c.ep() << " dp "
        << c.dp() << " pp " << c.pp() << " | " << r.actions_size() << " actions:";
    const int acts = std::min(r.actions_size(), 12);
    for (int k = 0; k < acts; ++k) out << " " << action_to_string(r.actions(k));
    if (r.actions_size() > acts) out << " ...";
    out << "\n";
  }
  if (p.ranks_size() > shown) out << "  ... " << p.ranks_size() - shown << " more ranks (see --json)\n";
  return out.str();
}

}  // namespace rondo
