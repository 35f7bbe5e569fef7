#include "pipeline/layer_times.h"

#include <numeric>
#include <sstream>

#include "common/errors.h"

namespace rondo {
namespace {

std::vector<int> parse_counts(const std::string& text, const std::string& key) {
  std::vector<int> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    const auto first = item.find_first_not_of(' '), last = item.find_last_not_of(' ');
    item = first == std::string::npos ? "" : item.substr(first, last - first + 1);
    try {
      size_t used = 0;
      const int n = std::stoi(item, &used);
      if (used != item.size() || n < 0) throw std::invalid_argument(item);
      out.push_back(n);
    } catch (const std::exception&) {
      throw ConfigError(key, "'" + item + "' is not a layer count (a non-negative integer)");
    }
  }
  if (out.empty()) throw ConfigError(key, "names no stage");
  return out;
}

void check_sum(const std::vector<int>& counts, int num_layers, const std::string& what,
               const std::string& key) {
  const int sum = std::accumulate(counts.begin(), counts.end(), 0);
  if (sum != num_layers) {
    throw ConfigError(key, "the " + what + " stages hold " + std::to_string(sum) + " layers, the model has " +
                               std::to_string(num_layers) + " (--num-layers)");
  }
}

}  // namespace

StagePartition parse_stage_partition(const std::string& text, int num_layers, const std::string& key) {
  StagePartition out;
  const auto bar = text.find('|');
  if (bar == std::string::npos) {
    out.forward = parse_counts(text, key);
    check_sum(out.forward, num_layers, "", key);
    return out;
  }
  if (text.find('|', bar + 1) != std::string::npos) {
    throw ConfigError(key, "takes at most one '|' (FORWARD|BACKWARD)");
  }
  out.forward = parse_counts(text.substr(0, bar), key);
  out.backward = parse_counts(text.substr(bar + 1), key);
  check_sum(out.forward, num_layers, "forward", key);
  check_sum(out.backward, num_layers, "backward", key);
  return out;
}

StageCosts stage_costs_from_layer_times(const LayerTimes& t, const StagePartition& part) {
  StageCosts c;
  c.p2p_latency = t.hop;
  const double recompute = t.recompute ? t.forward : 0.0;
  if (part.separate_backward()) {
    for (int layers : part.forward) {
      c.f.push_back(layers * t.forward);
      c.w.push_back(0.0);
    }
    for (size_t k = 0; k < part.backward.size(); ++k) {
      const int layers = part.backward[k];
      const double lead = k == 0 ? t.head_forward : layers * recompute;
      const double proper = layers * t.backward + (k == 0 ? t.head_backward : 0.0);
      c.b.push_back(lead + proper);
      c.b_lead.push_back(lead);
      c.backward_weight_bytes.push_back(layers * t.layer_bytes + (k == 0 ? t.head_bytes : 0.0));
    }
    for (int layers : part.forward) c.forward_weight_bytes.push_back(layers * t.layer_bytes);
    c.host_bandwidth = t.host_bandwidth;
    return c;
  }
  const size_t n = part.forward.size();
  for (size_t s = 0; s < n; ++s) {
    const int layers = part.forward[s];
    const bool head = s + 1 == n;
    const double proper = layers * t.backward + (head ? t.head_backward : 0.0);
    c.f.push_back(layers * t.forward + (head ? t.head_forward : 0.0));
    c.b.push_back(layers * recompute + proper);
    c.w.push_back(proper / 2);
  }
  return c;
}

}  // namespace rondo
