// TransferLineup: the pipeline's point-to-point transfers (flight records without a group: a stage
// sending its activations or gradients to the next) matched across their two sides, and what a
// matched transfer says. The k-th send from rank s to rank r pairs with the k-th receive r took in
// from s (both sides record every transfer, in order). A receiver blocked waiting before the sender
// had even posted its data was kept waiting by the sender: a slow stage holds up its neighbours
// this way, as a late member holds up a collective (collective_lineup.h). Once both had posted, the
// rest of the wait was the link's.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <utility>
#include <vector>

#include "proto/report.pb.h"

namespace rondo {

// A point-to-point transfer's record (send or recv), on the pipeline's channel (no group) or one of
// its own (ring attention's "ring"): not a collective, whatever its group says.
inline bool is_transfer(const report::CollectiveRecord& r) { return r.op() == "send" || r.op() == "recv"; }

struct MatchedTransfer {
  int src = -1, dst = -1;
  int64_t step = 0;  // the receiver's report's step
  uint64_t bytes = 0;
  double sender_late_s = 0;  // how long the receiver waited before the sender posted
  double link_s = -1;        // the transfer after the sender posted, while the receiver waited (-1:
                             // the receiver was not waiting then: not a measure of the link)
};

class TransferLineup {
 public:
  // Adds one rank's report; returns the transfers it matched.
  std::vector<MatchedTransfer> add(const report::StepReport& report);

 private:
  struct Send {
    int64_t posted_ns = 0;
  };
  struct Receive {
    int64_t wait_start_ns = 0, end_ns = 0, step = 0;
    uint64_t bytes = 0;
  };
  std::map<std::pair<int, int>, std::deque<Send>> sends_;        // (src, dst): unmatched sends
  std::map<std::pair<int, int>, std::deque<Receive>> receives_;  // (src, dst): unmatched receives
};

}  // namespace rondo
