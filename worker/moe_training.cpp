#include "worker/moe_training.h"

#include <algorithm>
#include <filesystem>
#include <string>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "common/logging.h"
#include "parallelism/exec/moe_profile.h"
#include "proto/plan.pb.h"

namespace rondo {

namespace {

// This rank's group of `kind` (collective: every rank takes part in every group's split).
std::unique_ptr<Communicator> split_group(const plan::Plan& plan, plan::GroupKind kind, int rank,
                                          Communicator& world, std::vector<int>& members) {
  std::unique_ptr<Communicator> mine;
  for (const auto& g : plan.mesh().groups()) {
    if (g.kind() != kind) continue;
    std::vector<int> ranks(g.ranks().begin(), g.ranks().end());
    auto sub = world.split(ranks);
    if (sub) {
      mine = std::move(sub);
      members = std::move(ranks);
    }
  }
  if (!mine)
    throw PlanError("rank " + std::to_string(rank) + " is in no " + plan::GroupKind_Name(kind) + " group");
  mine->set_timeout(world.timeout());
  return mine;
}

}  // namespace

std::unique_ptr<MoeTraining> MoeTraining::make(const plan::Plan& plan, int rank, Communicator& world,
                                               TimingRecorder* recorder) {
  const auto& moe = plan.model().moe();
  if (moe.num_experts() == 0) return nullptr;
  std::unique_ptr<MoeTraining> out(new MoeTraining());
  out->experts_ = moe.num_experts();
  for (int64_t l = 0; l < static_cast<int64_t>(plan.model().num_layers()); l += moe.layer_freq())
    out->layers_.push_back(l);
  ExpertParallel ep;
  const int size = static_cast<int>(plan.mesh().ep());
  if (size > 1) {
    std::vector<int> members;
    out->ep_comm_ = split_group(plan, plan::GROUP_EP, rank, world, members);
    out->ep_coll_ = std::make_unique<Collectives>(*out->ep_comm_, recorder);
    out->ep_coll_->set_group("ep@" + std::to_string(members.front()), members);
    out->ep_combine_comm_ = split_group(plan, plan::GROUP_EP, rank, world, members);
    out->ep_combine_coll_ = std::make_unique<Collectives>(*out->ep_combine_comm_, recorder);
    out->ep_combine_coll_->set_group("ep_combine@" + std::to_string(members.front()), members);
    out->expert_dp_comm_ = split_group(plan, plan::GROUP_EXPERT_DP, rank, world, members);
    out->expert_dp_coll_ = std::make_unique<Collectives>(*out->expert_dp_comm_, recorder);
    out->expert_dp_coll_->set_group("edp@" + std::to_string(members.front()), members);
    // comms.emulated_link_gbps holds for the exchanges as for every other collective.
    for (auto* coll : {out->ep_coll_.get(), out->ep_combine_coll_.get(), out->expert_dp_coll_.get()})
      coll->set_emulated_link_bandwidth(plan.comms().emulated_link_gbps() * 1e9);
    ep = {out->ep_coll_.get(), out->ep_combine_coll_.get(), size,
          static_cast<int>(plan.ranks(rank).coords().ep())};
  }
  out->runtime_ = std::make_shared<MoeRuntime>(ep);
  // 0 (auto): 1 until choose_degrees() has profiled the group.
  out->runtime_->set_degrees({static_cast<int>(std::max(1u, moe.forward_degree())),
                              static_cast<int>(std::max(1u, moe.backward_degree()))});
  return out;
}

void MoeTraining::choose_degrees(const plan::Plan& plan, StagedModel& model, int rank,
                                 const std::string& run_dir) {
  const auto& moe = plan.model().moe();
  const auto& ep = runtime_->expert_parallel();
  if (ep.size <= 1 || (moe.forward_degree() > 0 && moe.backward_degree() > 0)) return;
  const auto held = model->moe_layers();
  if (held.empty()) return;  // a stage without MoE layers: its whole expert group has none
  const auto& m = plan.model();
  const double tokens = static_cast<double>(plan.training().micro_batch_size()) * m.seq_length();
  const auto work = moe_layer_work(tokens, moe.router_topk(), moe.capacity_factor(), m.hidden_size(),
                                   m.ffn_hidden_size(), moe.num_experts(), ep.size);
  const auto costs = profile_moe_costs(*ep.group, held.begin()->second->expert(0), work);
  const auto choice = choose_moe_degrees(costs, work);
  const ExpertDegrees degrees{
      moe.forward_degree() > 0 ? static_cast<int>(moe.forward_degree()) : choice.forward,
      moe.backward_degree() > 0 ? static_cast<int>(moe.backward_degree()) : choice.backward};
  for (const auto& [layer, part] : held) runtime_->set_degrees(layer, degrees);
  if (rank != 0) return;
  logging::get("worker")->info(
      "MoE pipeline degrees (FSMoE, from the profiled costs): forward {}, backward {}", degrees.forward,
      degrees.backward);
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& [layer, part] : held) {
    nlohmann::json forward, backward;
    for (const auto& [d, s] : choice.forward_s) forward[std::to_string(d)] = s;
    for (const auto& [d, s] : choice.backward_s) backward[std::to_string(d)] = s;
    layers.push_back({{"layer", layer},
                      {"forward_s", forward},
                      {"backward_s", backward},
                      {"chosen_degree", degrees.forward},
                      {"chosen_bwd_degree", degrees.backward}});
  }
  auto out = costs.to_json();
  out["rows_per_microbatch"] = work.rows;
  out["layers"] = layers;
  write_file_atomic((std::filesystem::path(run_dir) / "moe_costs.json").string(), out.dump(2) + "\n");
}

std::vector<double> MoeTraining::take_step_values() {
  const auto load = runtime_->take_load();
  const size_t layers = layers_.size(), experts = static_cast<size_t>(experts_);
  std::vector<double> v(1 + 2 * layers * experts, 0.0);
  for (size_t i = 0; i < layers; ++i) {
    const auto it = load.find(layers_[i]);
    if (it == load.end()) continue;
    v[0] += it->second.aux_loss;
    for (size_t e = 0; e < experts; ++e) {
      v[1 + i * experts + e] = static_cast<double>(it->second.routed[e]);
      v[1 + (layers + i) * experts + e] = static_cast<double>(it->second.kept[e]);
    }
  }
  return v;
}

report::MoeStepReport MoeTraining::step_report(const std::vector<double>& summed) const {
  report::MoeStepReport out;
  const size_t layers = layers_.size(), experts = static_cast<size_t>(experts_);
  if (summed.size() != 1 + 2 * layers * experts) return out;  // a step with no statistics yet
  out.set_aux_loss(summed[0]);
  double routed = 0, kept = 0;
  for (size_t i = 0; i < layers; ++i) {
    auto* layer = out.add_layers();
    layer->set_layer(static_cast<int32_t>(layers_[i]));
    for (size_t e = 0; e < experts; ++e) {
      layer->add_routed(summed[1 + i * experts + e]);
      layer->add_kept(summed[1 + (layers + i) * experts + e]);
      routed += layer->routed(static_cast<int>(e));
      kept += layer->kept(static_cast<int>(e));
    }
  }
  out.set_dropped(routed > 0 ? 1.0 - kept / routed : 0.0);
  return out;
}

void MoeTraining::metrics_fields(const std::vector<double>& summed, nlohmann::json& row) const {
  const auto r = step_report(summed);
  if (r.layers().empty()) return;
  row["moe_aux_loss"] = r.aux_loss();
  nlohmann::json routed = nlohmann::json::object(), kept = nlohmann::json::object();
  double worst = 0;
  for (const auto& layer : r.layers()) {
    const std::vector<double> k(layer.kept().begin(), layer.kept().end());
    routed[std::to_string(layer.layer())] = std::vector<double>(layer.routed().begin(), layer.routed().end());
    kept[std::to_string(layer.layer())] = k;
    double sum = 0;
    for (double v : k) sum += v;
    if (sum > 0)
      worst = std::max(worst, *std::max_element(k.begin(), k.end()) * static_cast<double>(k.size()) / sum);
  }
  row["moe_routed"] = routed;
  row["moe_kept"] = kept;
  row["moe_dropped"] = r.dropped();
  row["moe_load_max_over_mean"] = worst;
}

}  // namespace rondo
