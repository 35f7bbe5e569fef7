#include "faults/collective_lineup.h"

#include <algorithm>

#include "faults/transfer_lineup.h"

namespace rondo {

Arrivals arrivals(const LinedUpCollective& c) {
  Arrivals out;
  if (c.members.size() < 2) return out;
  std::vector<const MemberRecord*> by_entry;
  for (const auto& m : c.members) by_entry.push_back(&m);
  std::sort(by_entry.begin(), by_entry.end(),
            [](const MemberRecord* a, const MemberRecord* b) { return a->enter_ns < b->enter_ns; });
  const MemberRecord& latest = *by_entry.back();
  const MemberRecord& second = *by_entry[by_entry.size() - 2];
  out.latest = latest.rank;
  int64_t blame = latest.enter_ns - second.enter_ns;
  std::vector<int64_t> others_gaps;
  for (size_t i = 0; i + 1 < by_entry.size(); ++i) others_gaps.push_back(by_entry[i]->gap_ns);
  const bool gaps_known = latest.gap_ns >= 0 && std::all_of(others_gaps.begin(), others_gaps.end(),
                                                            [](int64_t g) { return g >= 0; });
  if (gaps_known) {
    const auto mid = others_gaps.begin() + static_cast<std::ptrdiff_t>(others_gaps.size() / 2);
    std::nth_element(others_gaps.begin(), mid, others_gaps.end());
    blame = std::max<int64_t>(0, std::min(blame, latest.gap_ns - *mid));
  }
  out.blame_s = static_cast<double>(blame) * 1e-9;
  for (size_t i = 0; i + 1 < by_entry.size(); ++i) {
    out.waited_s.emplace_back(by_entry[i]->rank,
                              static_cast<double>(latest.enter_ns - by_entry[i]->enter_ns) * 1e-9);
  }
  return out;
}

std::vector<LinkTransfer> link_transfers(const LinedUpCollective& c) {
  std::map<int, const MemberRecord*> by_rank;
  for (const auto& m : c.members) by_rank[m.rank] = &m;
  // The k-th exchange from `src` as each side recorded it.
  const auto kth = [](const MemberRecord& m, bool sent, int peer, size_t k) -> const report::Exchange* {
    size_t seen = 0;
    for (const auto& e : m.exchanges) {
      if ((sent ? e.send_peer() : e.recv_peer()) != peer) continue;
      if (seen++ == k) return &e;
    }
    return nullptr;
  };
  std::vector<LinkTransfer> out;
  for (const auto& receiver : c.members) {
    std::map<int, size_t> taken;  // per sender, exchanges matched so far
    for (const auto& e : receiver.exchanges) {
      const int src = e.recv_peer();
      const auto sender = by_rank.find(src);
      if (src < 0 || src == receiver.rank || sender == by_rank.end()) continue;
      const auto* sent = kth(*sender->second, true, receiver.rank, taken[src]++);
      if (!sent) continue;
      const int64_t ready = std::max(e.posted_ns(), sent->posted_ns());
      // Received no later than both sides were ready says nothing of the link: an all-to-all's
      // receive found complete at its first poll (timed at its posting, the earliest it can have
      // arrived), or the receiver's last poll before the sender posted.
      if (e.recv_ns() <= ready) continue;
      out.push_back({src, receiver.rank, static_cast<double>(e.recv_ns() - ready) * 1e-9, sent->bytes()});
    }
  }
  return out;
}

std::vector<LinedUpCollective> CollectiveLineup::add(const report::StepReport& report) {
  std::vector<LinedUpCollective> complete;
  for (const auto& r : report.collectives()) {
    auto& last_end = last_end_ns_[report.rank()];
    const int64_t gap = last_end > 0 ? std::max<int64_t>(0, r.enter_ns() - last_end) : -1;
    last_end = std::max(last_end, r.end_ns());
    if (r.group().empty() || is_transfer(r) || r.group_size() < 2 || !r.completed()) continue;
    auto [it, fresh] = pending_.try_emplace({r.group(), r.group_seq()});
    auto& p = it->second;
    if (fresh) {
      p.collective.group = r.group();
      p.collective.group_seq = r.group_seq();
      p.collective.op = r.op();
      p.group_size = r.group_size();
    }
    p.last_step = std::max(p.last_step, report.step());
    p.collective.step = std::max(p.collective.step, report.step());
    p.collective.members.push_back(
        {report.rank(), r.enter_ns(), gap,
         std::vector<report::Exchange>(r.exchanges().begin(), r.exchanges().end())});
    if (static_cast<int>(p.collective.members.size()) >= p.group_size) {
      complete.push_back(std::move(p.collective));
      pending_.erase(it);
    }
  }
  return complete;
}

size_t CollectiveLineup::expire(int64_t step) {
  return std::erase_if(pending_, [step](const auto& kv) { return kv.second.last_step < step; });
}

}  // namespace rondo
