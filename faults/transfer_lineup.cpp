#include "faults/transfer_lineup.h"

#include <algorithm>

namespace rondo {

namespace {

// Unmatched records kept per link: a side whose records were lost (its ring slots reused) must not
// make the queues grow without end; the oldest go first.
constexpr size_t kMaxUnmatched = 4096;

template <typename T>
void push_bounded(std::deque<T>& q, T value) {
  q.push_back(std::move(value));
  if (q.size() > kMaxUnmatched) q.pop_front();
}

}  // namespace

std::vector<MatchedTransfer> TransferLineup::add(const report::StepReport& report) {
  std::vector<std::pair<int, int>> touched;
  for (const auto& r : report.collectives()) {
    if (!r.group().empty() || !r.completed() || r.connections().empty()) continue;
    const auto& c = r.connections(0);
    if (r.op() == "send" && c.send_peer() >= 0) {
      const std::pair<int, int> link{report.rank(), c.send_peer()};
      push_bounded(sends_[link], Send{r.enter_ns()});
      touched.push_back(link);
    } else if (r.op() == "recv" && c.recv_peer() >= 0) {
      const std::pair<int, int> link{c.recv_peer(), report.rank()};
      push_bounded(receives_[link], Receive{r.end_ns() - static_cast<int64_t>(c.total_ns()), r.end_ns(),
                                            report.step(), r.bytes()});
      touched.push_back(link);
    }
  }
  std::vector<MatchedTransfer> out;
  for (const auto& link : touched) {
    auto& sends = sends_[link];
    auto& receives = receives_[link];
    while (!sends.empty() && !receives.empty()) {
      const auto s = sends.front();
      const auto r = receives.front();
      sends.pop_front();
      receives.pop_front();
      MatchedTransfer t{.src = link.first, .dst = link.second, .step = r.step, .bytes = r.bytes};
      const int64_t late = std::min(r.end_ns, s.posted_ns) - r.wait_start_ns;
      t.sender_late_s = static_cast<double>(std::max<int64_t>(0, late)) * 1e-9;
      if (s.posted_ns >= r.wait_start_ns)
        t.link_s = static_cast<double>(std::max<int64_t>(0, r.end_ns - s.posted_ns)) * 1e-9;
      out.push_back(t);
    }
  }
  return out;
}

}  // namespace rondo
