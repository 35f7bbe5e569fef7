#include "parallelism/hdp_megatron.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace rondo {

namespace {

struct Item {
  size_t sequence;
  int64_t tokens, degree;
  double load;  // L^2 / degree, Megatron's estimate
};

struct Group {
  int64_t size;
  std::vector<Item> items;
};

// The items cut, in order, into runs of about equal load, as many as there are distinct degrees.
std::vector<std::vector<Item>> equal_buckets(const std::vector<Item>& items) {
  std::vector<int64_t> degrees;
  for (const auto& it : items) degrees.push_back(it.degree);
  std::sort(degrees.begin(), degrees.end());
  auto k = static_cast<int64_t>(std::unique(degrees.begin(), degrees.end()) - degrees.begin());
  double total = 0;
  for (const auto& it : items) total += it.load;
  const double target = total / static_cast<double>(k);
  std::vector<std::vector<Item>> buckets;
  std::vector<Item> current;
  double work = 0;
  const auto n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    const auto& it = items[static_cast<size_t>(i)];
    // Megatron's rule, its countdown included: each closed bucket both lowers the buckets still to
    // come and counts among those made.
    if (!current.empty() &&
        (work + it.load > 1.1 * target || n - i <= k - static_cast<int64_t>(buckets.size()))) {
      buckets.push_back(std::move(current));
      current.clear();
      work = 0;
      --k;
    }
    current.push_back(it);
    work += it.load;
  }
  if (!current.empty()) buckets.push_back(std::move(current));
  return buckets;
}

double spread(const std::vector<double>& load) {
  const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
  return *hi - *lo;
}

// One microbatch's groups (in the order they opened) from `items`; what did not fit is left in it.
std::vector<Group> next_microbatch(std::vector<Item>& items, int64_t ranks) {
  auto buckets = equal_buckets(items);
  std::vector<Group> groups;
  std::vector<std::vector<size_t>> members;  // ranks of each group (contiguous, from rank 0)
  std::vector<double> load(static_cast<size_t>(ranks), 0.0);
  int64_t next_free = 0;
  int64_t first_degree = -1;
  bool balance = false;
  while (!buckets.empty()) {
    size_t b = 0;
    for (; b < buckets.size(); ++b) {
      if (buckets[b].empty()) continue;
      const int64_t need = buckets[b].front().degree;
      const bool open = ranks - next_free >= need;
      if (open || std::any_of(groups.begin(), groups.end(), [&](const Group& g) { return g.size == need; }))
        break;
    }
    if (b == buckets.size()) break;
    const Item it = buckets[b].front();
    buckets[b].erase(buckets[b].begin());
    size_t g = groups.size();
    if (ranks - next_free >= it.degree) {
      groups.push_back({it.degree, {}});
      members.emplace_back(static_cast<size_t>(it.degree));
      std::iota(members.back().begin(), members.back().end(), static_cast<size_t>(next_free));
      next_free += it.degree;
    } else {
      double best = 0;
      for (size_t i = 0; i < groups.size(); ++i) {
        if (groups[i].size != it.degree) continue;
        double most = 0;
        for (size_t r : members[i]) most = std::max(most, load[r]);
        if (g == groups.size() || most < best) g = i, best = most;
      }
    }
    groups[g].items.push_back(it);
    for (size_t r : members[g]) load[r] += it.load;
    while (!buckets.empty() && buckets.front().empty()) buckets.erase(buckets.begin());
    if (first_degree < 0) first_degree = it.degree;
    balance = balance || it.degree < first_degree;
    const double most = *std::max_element(load.begin(), load.end());
    if (balance && !buckets.empty() && spread(load) <= 0.05 * most) break;
  }
  std::vector<Item> left;
  for (auto& bucket : buckets) left.insert(left.end(), bucket.begin(), bucket.end());
  // The most loaded group gives back its last sequence while that narrows the spread.
  while (true) {
    const double most = *std::max_element(load.begin(), load.end()),
                 least = *std::min_element(load.begin(), load.end());
    if (most - least <= 0.05 * most || least == 0) break;
    const auto r = static_cast<size_t>(std::max_element(load.begin(), load.end()) - load.begin());
    size_t g = 0;
    while (std::find(members[g].begin(), members[g].end(), r) == members[g].end()) ++g;
    if (groups[g].items.size() <= 1) break;
    auto trial = load;
    for (size_t m : members[g]) trial[m] -= groups[g].items.back().load;
    if (spread(trial) >= most - least) break;
    load = trial;
    left.push_back(groups[g].items.back());
    groups[g].items.pop_back();
  }
  // Ranks left empty: the first of the smallest groups doubles (later groups move up, as
  // Megatron's shift does), while any are left.
  while (next_free < ranks && !groups.empty()) {
    auto g = std::min_element(groups.begin(), groups.end(),
                              [](const Group& a, const Group& b) { return a.size < b.size; });
    const int64_t grow = std::min(std::min(2 * g->size, ranks) - g->size, ranks - next_free);
    if (grow <= 0) break;
    g->size += grow;
    next_free += grow;
  }
  items = std::move(left);
  return groups;
}

}  // namespace

std::vector<HdpPlacement> megatron_placements(const std::vector<int64_t>& lengths, const HdpOptions& o,
                                              const ContextParallelCost& cost) {
  std::vector<Item> items;
  for (size_t i = 0; i < lengths.size(); ++i) {
    const double need = static_cast<double>(lengths[i]) / static_cast<double>(o.max_tokens_per_rank);
    int64_t d = need <= 1 ? 1 : static_cast<int64_t>(std::llround(std::exp2(std::ceil(std::log2(need)))));
    hdp_min_degree(lengths[i], o);  // a sequence no group holds is refused, naming the cap
    d = std::min(d, o.ranks);
    const double l = static_cast<double>(lengths[i]);
    items.push_back({i, lengths[i], d, l * l / static_cast<double>(d)});
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& a, const Item& b) { return a.tokens > b.tokens; });
  std::vector<HdpPlacement> out(lengths.size());
  double start = 0;  // the microbatch's: the barrier that ended the one before
  while (!items.empty()) {
    double end = start;
    int64_t first = 0;
    for (const Group& g : next_microbatch(items, o.ranks)) {
      std::vector<int64_t> ranks(static_cast<size_t>(g.size));
      std::iota(ranks.begin(), ranks.end(), first);
      first += g.size;
      double t = start;
      for (const Item& it : g.items) {
        const double s = hdp_group_seconds(it.tokens, ranks, o, cost);
        out[it.sequence] = {it.tokens, ranks, t, s};
        t += s;
      }
      end = std::max(end, t);
    }
    start = end;
  }
  return out;
}

}  // namespace rondo
