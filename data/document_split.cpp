#include "data/document_split.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/errors.h"

namespace rondo {

std::vector<double> parse_document_split(const std::string& text) {
  std::vector<double> weights;
  std::stringstream items(text);
  for (std::string item; std::getline(items, item, ',');) {
    const auto first = item.find_first_not_of(" \t"), last = item.find_last_not_of(" \t");
    item = first == std::string::npos ? "" : item.substr(first, last - first + 1);
    size_t used = 0;
    double w = -1;
    try {
      w = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || !std::isfinite(w) || w < 0) {
      throw ConfigError("data.split", "'" + text + "': '" + item +
                                          "' is not a non-negative number (weights of the training, "
                                          "validation and test documents, e.g. 98,2 or 969,30,1)");
    }
    weights.push_back(w);
  }
  if (!text.empty() && weights.size() != static_cast<size_t>(std::count(text.begin(), text.end(), ',')) + 1)
    throw ConfigError("data.split", "'" + text + "' has an empty part");
  if (weights.empty()) weights = {1.0};
  if (weights.size() > 3)
    throw ConfigError("data.split", "'" + text + "' has " + std::to_string(weights.size()) +
                                        " parts; at most three (training, validation, test)");
  weights.resize(3, 0.0);
  double total = 0;
  for (double w : weights) total += w;
  if (weights[0] <= 0)
    throw ConfigError("data.split",
                      "'" + text + "' gives training no documents (its first weight must be > 0)");
  for (double& w : weights) w /= total;
  return weights;
}

std::vector<std::pair<uint64_t, uint64_t>> split_documents(uint64_t documents,
                                                           const std::vector<double>& weights) {
  // Megatron's rule: cumulative rounded shares, the total's rounding excess taken off every
  // boundary past the first.
  std::vector<int64_t> at{0};
  for (double w : weights)  // rounding half to even, as Python's round()
    at.push_back(at.back() + static_cast<int64_t>(std::nearbyint(w * static_cast<double>(documents))));
  const int64_t excess = at.back() - static_cast<int64_t>(documents);
  for (size_t i = 1; i < at.size(); ++i)
    at[i] = std::clamp<int64_t>(at[i] - excess, at[i - 1], static_cast<int64_t>(documents));
  std::vector<std::pair<uint64_t, uint64_t>> parts;
  for (size_t i = 0; i + 1 < at.size(); ++i)
    parts.emplace_back(static_cast<uint64_t>(at[i]), static_cast<uint64_t>(at[i + 1]));
  return parts;
}

CorpusParts split_corpus(const TokenCorpus& all, const std::vector<double>& weights, uint64_t min_tokens) {
  const auto parts = split_documents(all.num_documents(), weights);
  CorpusParts out{all.documents_slice(parts[0].first, parts[0].second, "training"),
                  all.documents_slice(parts[1].first, parts[1].second, "validation")};
  if (out.training.size() < min_tokens) {
    throw ConfigError("data.split", "the training documents (" + out.training.source() + ") hold " +
                                        std::to_string(out.training.size()) +
                                        " tokens; training needs at least " + std::to_string(min_tokens) +
                                        " (model.seq_length + 1)");
  }
  return out;
}

}  // namespace rondo
