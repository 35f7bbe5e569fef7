// The device mesh: rank <-> (tp, cp, ep, dp, pp) coordinates in Megatron order tp-cp-ep-dp-pp
// (tp innermost, pp outermost), and the communication groups along each dimension.
//
// The data-parallel dimension of size dp = world / (tp*cp*pp) is split into expert parallelism
// (ep, inner) and expert-data parallelism (dp/ep, outer): a rank's `dp` coordinate is its position
// in its full data-parallel group, `ep` its position inside its expert-parallel group
// (ep = dp mod ep_size). Pure function of the sizes; cheap at 16k ranks.
#pragma once

#include <cstdint>
#include <vector>

namespace rondo {

struct MeshCoords {
  int tp = 0, cp = 0, ep = 0, dp = 0, pp = 0;
  bool operator==(const MeshCoords&) const = default;
};

enum class MeshDim { kTp, kCp, kEp, kDp, kPp, kDpCp, kExpertDp };

class DeviceMesh {
 public:
  // Throws rondo::PlanError if the sizes do not multiply to a consistent world.
  DeviceMesh(int world_size, int tp, int cp, int ep, int pp);

  int world_size() const { return world_; }
  int tp() const { return tp_; }
  int cp() const { return cp_; }
  int ep() const { return ep_; }
  int dp() const { return dp_; }
  int pp() const { return pp_; }

  MeshCoords coords(int rank) const;
  int rank(const MeshCoords& coords) const;

  // The ranks that share every coordinate of `rank` except along `dim`, in coordinate order.
  // kEp: same tp, cp, pp and expert-data index; kDpCp: the union of the dp and cp dimensions;
  // kExpertDp: same tp, cp, pp and ep index (the replicas of the same experts).
  std::vector<int> group_of(int rank, MeshDim dim) const;

  // All groups along `dim`, each once, ordered by their smallest rank.
  std::vector<std::vector<int>> groups(MeshDim dim) const;

 private:
  int world_, tp_, cp_, ep_, dp_, pp_;
};

}  // namespace rondo
