// CollectiveLineup: the members' flight records of one collective, lined up by its group and its
// number there (comms/timing_recorder.h, RecordGroup), and what a lined-up collective says: who
// arrived last and kept the others waiting, and how long each transfer took once both of its
// sides had posted it.
//
// Records reach the coordinator in different ranks' step reports, possibly of different steps (a
// collective of the asynchronous update closes after the step's report); a collective is complete
// once every member's record is in. Pipeline transfers (no group) are not lined up.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "proto/report.pb.h"

namespace rondo {

struct MemberRecord {
  int rank = -1;  // world rank
  int64_t enter_ns = 0;
  // From the end of the rank's previous recorded operation to this entry: its compute in between
  // (-1: unknown, its first record).
  int64_t gap_ns = -1;
  std::vector<report::Exchange> exchanges;
};

struct LinedUpCollective {
  std::string group;
  uint64_t group_seq = 0;
  std::string op;
  int64_t step = 0;                   // the newest step of the reports it came in
  std::vector<MemberRecord> members;  // one per member, in the order their records arrived
};

// The time a member arrived after the others and kept them waiting, from entry times alone.
struct Arrivals {
  int latest = -1;     // world rank of the member that entered last
  double blame_s = 0;  // how long it kept every other member waiting (behind the second latest)
  std::vector<std::pair<int, double>> waited_s;  // each other member: how long it waited for the latest
};
Arrivals arrivals(const LinedUpCollective& c);

// One transfer over a directed link: from when both sides had posted it to when it was received.
struct LinkTransfer {
  int src = -1, dst = -1;
  double seconds = 0;
  uint64_t bytes = 0;
};
// The collective's transfers: the k-th exchange the receiver took in from the sender is matched
// with the k-th exchange the sender sent it. A pair without both sides recorded is skipped, and so
// is one received no later than both sides had posted it (no time the link can be charged).
std::vector<LinkTransfer> link_transfers(const LinedUpCollective& c);

class CollectiveLineup {
 public:
  // Adds one rank's report; returns the collectives it completed.
  std::vector<LinedUpCollective> add(const report::StepReport& report);
  // Forgets incomplete collectives last added to before `step` (a member's record was lost: its
  // ring slot reused, its report dropped); returns how many.
  size_t expire(int64_t step);
  size_t pending() const { return pending_.size(); }

 private:
  struct Pending {
    LinedUpCollective collective;
    int group_size = 0;
    int64_t last_step = 0;
  };
  std::map<std::pair<std::string, uint64_t>, Pending> pending_;
  std::map<int, int64_t> last_end_ns_;  // per rank, the end of its newest record seen
};

}  // namespace rondo
