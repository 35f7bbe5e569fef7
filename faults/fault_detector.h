// FaultDetector: slow ranks and slow links from the ranks' step reports (C4D-style). Collective
// traffic is periodic and homogeneous, so a rank or a link that behaves differently from its peers
// step after step is a fault. Plain C++ over report messages: the coordinator feeds it live, and
// `rondo diagnose RUN_DIR` replays a run's recorded reports (RUN_DIR/timings.jsonl) through it.
//
// Each step, once every rank reported it (or reports `kJudgeAfterSteps` newer arrived), is judged:
// - slow link: a directed link whose typical (median) transfer took `slow_link_factor` times as
//   long per byte as the job's other links', each transfer timed from when both of its sides had
//   posted it (a late sender is the sender's fault, not the link's), and at least
//   `slow_link_share` of the step in all. A rank whose incoming and outgoing links are both slow is
//   the rank when it is also late into collectives (it progresses everything late), else its
//   node's network (a slow_link verdict naming the rank, no link); not two links either way. A
//   link one of whose ends spent at least half the link's time in the step waiting for a CPU
//   (run_queue_wait_s: starved by another process on its core) is that rank's fault, not the
//   link's: a slow_rank verdict naming the starved end -- unless that end kept up on another link
//   of its side (an all-to-all's other pairs into the receiver or out of the sender, not slow).
//   Both directions between two ranks slow (and nothing else of theirs) are the slower one: over
//   TCP the other's acknowledgements queue behind it.
// - slow rank: the rank that kept the others waiting for at least `slow_rank_share` of the step,
//   while waiting little itself (less than half of that). It kept them waiting by entering its
//   groups' collectives last, by taking in transfers late (a transfer that took longer than its
//   link's typical time per byte stalled the ring at its receiver; a link slow for every transfer
//   moves the typical time, not the excess, and over a link judged slow in the step the excess --
//   transfers queued behind each other there -- is the link's), and by posting its pipeline transfers after
//   the next or previous stage began waiting for them, more than the hop did in the attempt's first judged
//   steps (transfer_lineup.h: a slow stage holds up both neighbours; blame_pipeline_hops). A
//   pipeline hop's transfer once both sides were ready counts as its link's.
// - slow stage: a rank whose compute (forward + backward seconds) over what the cost model predicts
//   for its stages is `slow_stage_factor` times the other ranks' (their median): a stage slow from
//   an attempt's first step, which sets its hops' baselines and so hides from them. Only where the
//   predictions are given (DetectorOptions::predicted_compute_s: pipelines of fixed stages).
// A suspect becomes a verdict once it was suspect in `persist` of the last `window` judged steps
// (one noisy step is not a fault); it is raised once, again only after a whole window clean.
// A new attempt (a restart) starts the detector over.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "faults/collective_lineup.h"
#include "faults/transfer_lineup.h"
#include "faults/verdict.h"
#include "proto/report.pb.h"

namespace rondo {

// Defaults: orchestrator/config.h's FaultsConfig (faults.* keys). The rank share: the others waiting
// 0.16 of a step is a rank about 19% slower than they are (0.16 / 0.84), just under the 20% a
// slow rank must be found at, and above the noise of a machine running more ranks than it has
// cores (up to ~0.14 of a step in single steps); the link factor above healthy TCP links' spread
// between network namespaces (up to ~6.5x).
struct DetectorOptions {
  double slow_rank_share = 0.16;
  double slow_link_factor = 8.0;
  double slow_link_share = 0.02;
  int window = 8;
  int persist = 5;
  // Above the spread of measured over predicted compute between healthy stages (the cost model's
  // error and a machine's cores differing in speed: up to ~1.3 in single steps, less over 5 of 8).
  double slow_stage_factor = 1.3;
  // Per world rank: its stages' predicted forward + backward seconds a step (empty: no such rule).
  std::vector<double> predicted_compute_s;
};

class FaultDetector {
 public:
  static constexpr int64_t kJudgeAfterSteps = 4;
  // An attempt's first steps are not judged: buffers are allocated, caches warm, rank 0 sets up
  // its metrics; ranks differ there for reasons that pass.
  static constexpr int64_t kWarmupSteps = 5;
  // Links are judged against the job's other links: at least this many measured in the step (two
  // ranks' two links say nothing about which one is slow).
  static constexpr size_t kMinLinks = 3;

  FaultDetector(int world_size, DetectorOptions options = {});
  int world_size() const { return world_size_; }

  // Per world rank, the predicted compute of its stages in the attempts from now on (empty: none).
  void set_predicted_compute(std::vector<double> seconds) {
    options_.predicted_compute_s = std::move(seconds);
  }
  // Adds one rank's report; returns the verdicts the steps it let be judged reached.
  std::vector<Verdict> add(const report::StepReport& report);
  // Judges every step still open (the end of a replay).
  std::vector<Verdict> finish();

  // Share of the last window's judged steps the rank was a suspect in (0..1).
  double suspicion(int rank) const;
  // Links with a raised slow_link verdict in this attempt (sender, receiver).
  const std::set<std::pair<int, int>>& degraded_links() const { return degraded_; }
  // The newest number of `group`'s collectives the rank reported completed (hang evidence).
  std::optional<uint64_t> last_completed(int rank, const std::string& group) const;
  int64_t steps_judged() const { return judged_; }

 private:
  struct OpenStep {
    std::vector<double> blame_s, wait_s, step_times;
    std::map<std::pair<int, int>, std::vector<LinkTransfer>> links;
    std::map<std::pair<int, int>, double> pipeline_late_s;  // per pipeline hop: its sender's lateness
    std::vector<double> run_queue_s;                        // per rank: waiting for a CPU
    std::vector<double> compute_s;                          // per rank: forward + backward seconds
    int reports = 0;
  };
  // A link's transfers in one step: their total time, their typical time per byte, and how much
  // longer than that typical time they took in all (stalls at the receiver).
  struct LinkStats {
    double seconds = 0, rate = 0, excess_s = 0;
  };
  static LinkStats link_stats(const std::vector<LinkTransfer>& transfers);
  // A suspect's history: one flag per judged step (newest last), and its latest evidence.
  struct Suspect {
    std::deque<bool> flags;
    bool raised = false;
    nlohmann::json evidence;
  };
  using SuspectKey = std::pair<int, int>;  // a rank: (rank, -2); its node's network: (rank, -3); a link

  void reset(int attempt);
  void absorb(const LinedUpCollective& c);
  void absorb(const MatchedTransfer& t);
  std::vector<Verdict> judge_ready(int64_t newest_step);
  std::vector<Verdict> judge(int64_t step, OpenStep& s);
  // A pipeline hop's lateness beyond its own baseline, as blame on its sender: stages differ in
  // work, and a schedule makes a stage wait for its neighbour by design (warm-up, cool-down, the
  // heavier stage), so only what exceeds the hop's median over the attempt's first `window` judged
  // steps is a fault (no pipeline blame before).
  void blame_pipeline_hops(OpenStep& s);
  // This step's suspects and their evidence.
  std::map<SuspectKey, nlohmann::json> suspects_of(const OpenStep& s, double step_time) const;
  // Links slower per byte than the others (each with its evidence), when enough were measured.
  std::map<std::pair<int, int>, nlohmann::json> slow_links(
      const std::map<std::pair<int, int>, LinkStats>& stats, double step_time) const;
  // Ranks computing `slow_stage_factor` times slower than the others against their predictions.
  void add_slow_stage_suspects(std::map<SuspectKey, nlohmann::json>& out, const OpenStep& s) const;
  // A slow link an end of which waited for a CPU for half its time or more is that end's (a
  // starved rank: a suspect), taken out of `slow` -- unless the end kept up elsewhere: another
  // link of its side (into the receiver, out of the sender: an all-to-all's other pairs) measured
  // and not slow.
  void blame_starved_ends(std::map<SuspectKey, nlohmann::json>& out, const OpenStep& s,
                          const std::map<std::pair<int, int>, LinkStats>& stats,
                          std::map<std::pair<int, int>, nlohmann::json>& slow, double step_time) const;
  // Both directions between two ranks slow, no other link of either slow and neither end late into
  // collectives: only the slower direction stays in `slow` (evidence reverse_also_slow). Over TCP
  // the other carries its acknowledgements through the slow one's queue, and would make both ends
  // look like nodes slow in and out. Equal ratios keep the direction from the higher rank.
  void collapse_reverse_pairs(std::map<std::pair<int, int>, nlohmann::json>& slow, const OpenStep& s,
                              double step_time) const;
  // The slow links (`slow`, from slow_links) as suspects: a link, a sender's or receiver's side, a
  // node's network or a rank.
  void add_link_suspects(std::map<SuspectKey, nlohmann::json>& out, const OpenStep& s,
                         const std::map<std::pair<int, int>, LinkStats>& stats,
                         std::map<std::pair<int, int>, nlohmann::json> slow, double step_time) const;
  std::vector<Verdict> update_suspects(int64_t step, const std::map<SuspectKey, nlohmann::json>& now);

  int world_size_;
  DetectorOptions options_;
  int attempt_ = -1;
  int64_t first_step_ = -1;  // the attempt's first reported step
  CollectiveLineup lineup_;
  TransferLineup transfers_;
  std::map<std::pair<int, int>, std::vector<double>> hop_baseline_;  // first judged steps' lateness
  std::map<int64_t, OpenStep> open_;
  std::map<SuspectKey, Suspect> suspects_;
  std::set<std::pair<int, int>> degraded_;
  std::map<std::pair<int, std::string>, uint64_t> last_completed_;
  int64_t judged_ = 0, newest_judged_ = -1;
};

}  // namespace rondo
