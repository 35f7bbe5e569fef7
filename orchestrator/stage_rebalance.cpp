#include "orchestrator/stage_rebalance.h"

#include <algorithm>
#include <limits>

#include "orchestrator/step_prediction.h"

namespace rondo {

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Predicted forward + backward seconds of one stage of `layers` layers from `first`.
double stage_work(const CostModel& model, const Config& config, int index, int first, int layers,
                  int stages) {
  const auto costs =
      model.stage_costs({{index, first, layers, index == 0, index + 1 == stages}},
                        config.pipeline.p2p_latency_s, config.pipeline.p2p_bandwidth_gbps * 1e9);
  return costs.f[0] + costs.b[0];
}

std::string why_not_rebalanced(const Config& config, const plan::Plan& plan) {
  const int pp = static_cast<int>(plan.mesh().pp());
  if (pp <= 1) return "there is one pipeline stage (parallel.pipeline_model_parallel_size 1)";
  if (plan.stateless_workers()) return "roundpipe's stateless workers take every stage in turn";
  if (plan.asynchronous()) return "pipeline.async's delayed update cannot load another partition";
  if (plan.stages_size() != pp) return "each rank holds several virtual stages";
  if (config.training.optimizer != "adamw")
    return "only training.optimizer adamw state can be re-partitioned (it is " + config.training.optimizer +
           ")";
  return "";
}

// Each stage's predicted forward + backward seconds, by stage index.
std::vector<double> stage_predictions(const CostModel& model, const Config& config, const plan::Plan& plan) {
  const int stages = plan.stages_size();
  std::vector<double> predicted(static_cast<size_t>(stages));
  for (const auto& st : plan.stages()) {
    predicted.at(st.index()) =
        stage_work(model, config, static_cast<int>(st.index()), static_cast<int>(st.first_layer()),
                   static_cast<int>(st.num_layers()), stages);
  }
  return predicted;
}

double rank_prediction(const plan::Plan& plan, int rank, const std::vector<double>& predicted) {
  double work = 0;
  for (uint32_t s : plan.ranks(rank).stages()) work += predicted.at(s);
  return work;
}

}  // namespace

bool has_rank_compute_predictions(const Config& c) {
  return c.parallel.pipeline_model_parallel_size > 1 && c.pipeline.schedule != "roundpipe" &&
         !c.parallel.hdp && c.data.chunk_size == 0;
}

std::vector<double> predicted_rank_compute(const Config& config, const plan::Plan& plan) {
  if (!has_rank_compute_predictions(config) || plan.mesh().pp() <= 1 || plan.stateless_workers()) return {};
  const auto predicted = stage_predictions(cost_model(config), config, plan);
  std::vector<double> out;
  for (int r = 0; r < static_cast<int>(plan.mesh().world_size()); ++r)
    out.push_back(rank_prediction(plan, r, predicted));
  return out;
}

StageRebalance rebalance_stages(const Config& config, const plan::Plan& plan,
                                const std::vector<double>& busy_s, const std::set<int>& slow) {
  StageRebalance out;
  out.why_not = why_not_rebalanced(config, plan);
  if (!out.why_not.empty()) return out;
  const int stages = plan.stages_size(), world = static_cast<int>(plan.mesh().world_size());
  const CostModel model = cost_model(config);  // once: the cut below asks it for every stage shape
  std::vector<int> layers(static_cast<size_t>(stages));
  for (const auto& st : plan.stages()) layers.at(st.index()) = static_cast<int>(st.num_layers());
  const std::vector<double> predicted = stage_predictions(model, config, plan);
  // Each rank's measured compute over its stage's prediction; the healthy ranks' median is 1.
  std::vector<double> ratio(static_cast<size_t>(world), 0.0), healthy;
  for (int r = 0; r < world && r < static_cast<int>(busy_s.size()); ++r) {
    const double work = rank_prediction(plan, r, predicted);
    ratio[static_cast<size_t>(r)] = work > 0 ? busy_s[static_cast<size_t>(r)] / work : 0.0;
    if (!slow.count(r) && ratio[static_cast<size_t>(r)] > 0) healthy.push_back(ratio[static_cast<size_t>(r)]);
  }
  if (healthy.empty()) {
    out.why_not = "no healthy rank's compute time was reported to compare the slow ones with";
    return out;
  }
  const double reference = median(healthy);
  out.factors.assign(static_cast<size_t>(world), 1.0);
  std::vector<double> stage_factor(static_cast<size_t>(stages), 1.0);
  for (int r : slow) {
    if (r < 0 || r >= world) continue;
    out.factors[static_cast<size_t>(r)] = std::max(1.0, ratio[static_cast<size_t>(r)] / reference);
    for (uint32_t s : plan.ranks(r).stages())
      stage_factor[s] = std::max(stage_factor[s], out.factors[static_cast<size_t>(r)]);
  }
  // best[s][l]: the least slowest-stage time of stages 0..s-1 holding layers 0..l-1; cut[s][l] the
  // layers stage s-1 then holds.
  const int total = static_cast<int>(config.model.num_layers);
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(static_cast<size_t>(stages + 1),
                                        std::vector<double>(static_cast<size_t>(total + 1), inf));
  std::vector<std::vector<int>> cut(best.size(), std::vector<int>(static_cast<size_t>(total + 1), 0));
  best[0][0] = 0;
  for (int s = 1; s <= stages; ++s) {
    for (int l = 0; l <= total; ++l) {
      for (int n = 0; n <= l; ++n) {
        const double before = best[static_cast<size_t>(s - 1)][static_cast<size_t>(l - n)];
        if (before == inf) continue;
        const double t = std::max(before, stage_factor[static_cast<size_t>(s - 1)] *
                                              stage_work(model, config, s - 1, l - n, n, stages));
        // Ties keep the stage's current size, so an even split stays when nothing is gained.
        auto& b = best[static_cast<size_t>(s)][static_cast<size_t>(l)];
        if (t < b * (1 - 1e-12) || (t <= b * (1 + 1e-12) && n == layers[static_cast<size_t>(s - 1)])) {
          b = t;
          cut[static_cast<size_t>(s)][static_cast<size_t>(l)] = n;
        }
      }
    }
  }
  std::vector<int> chosen(static_cast<size_t>(stages));
  for (int s = stages, l = total; s > 0; --s) {
    chosen[static_cast<size_t>(s - 1)] = cut[static_cast<size_t>(s)][static_cast<size_t>(l)];
    l -= chosen[static_cast<size_t>(s - 1)];
  }
  if (chosen == layers) {
    out.why_not = "the current partition is already the best for the measured speeds";
    return out;
  }
  for (size_t s = 0; s < chosen.size(); ++s) {
    if (s > 0) out.partition += ',';
    out.partition += std::to_string(chosen[s]);
  }
  return out;
}

}  // namespace rondo
