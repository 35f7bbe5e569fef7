#include "parallelism/device_mesh.h"

#include <string>

#include "common/errors.h"

namespace rondo {

DeviceMesh::DeviceMesh(int world_size, int tp, int cp, int ep, int pp)
    : world_(world_size), tp_(tp), cp_(cp), ep_(ep), dp_(0), pp_(pp) {
  if (world_size < 1 || tp < 1 || cp < 1 || ep < 1 || pp < 1) {
    throw PlanError("device mesh: every size must be >= 1");
  }
  if (world_size % (tp * cp * pp) != 0) {
    throw PlanError("device mesh: world " + std::to_string(world_size) + " is not divisible by tp*cp*pp");
  }
  dp_ = world_size / (tp * cp * pp);
  if (dp_ % ep != 0) throw PlanError("device mesh: ep does not divide dp");
}

MeshCoords DeviceMesh::coords(int rank) const {
  MeshCoords c;
  int r = rank;
  c.tp = r % tp_;
  r /= tp_;
  c.cp = r % cp_;
  r /= cp_;
  c.dp = r % dp_;  // dp = ep_index + ep * expert_dp_index: ep is the inner part of dp
  r /= dp_;
  c.pp = r;
  c.ep = c.dp % ep_;
  return c;
}

int DeviceMesh::rank(const MeshCoords& c) const { return c.tp + tp_ * (c.cp + cp_ * (c.dp + dp_ * c.pp)); }

std::vector<int> DeviceMesh::group_of(int rank, MeshDim dim) const {
  const MeshCoords base = coords(rank);
  std::vector<int> out;
  auto with = [&](auto&& set) {
    MeshCoords c = base;
    set(c);
    out.push_back(this->rank(c));
  };
  switch (dim) {
    case MeshDim::kTp:
      for (int i = 0; i < tp_; ++i) with([&](MeshCoords& c) { c.tp = i; });
      break;
    case MeshDim::kCp:
      for (int i = 0; i < cp_; ++i) with([&](MeshCoords& c) { c.cp = i; });
      break;
    case MeshDim::kDp:
      for (int i = 0; i < dp_; ++i) with([&](MeshCoords& c) { c.dp = i; });
      break;
    case MeshDim::kEp: {
      const int first = base.dp - base.ep;
      for (int i = 0; i < ep_; ++i) with([&](MeshCoords& c) { c.dp = first + i; });
      break;
    }
    case MeshDim::kExpertDp:
      for (int i = base.ep; i < dp_; i += ep_) with([&](MeshCoords& c) { c.dp = i; });
      break;
    case MeshDim::kPp:
      for (int i = 0; i < pp_; ++i) with([&](MeshCoords& c) { c.pp = i; });
      break;
    case MeshDim::kDpCp:
      for (int d = 0; d < dp_; ++d) {
        for (int i = 0; i < cp_; ++i) {
          with([&](MeshCoords& c) {
            c.dp = d;
            c.cp = i;
          });
        }
      }
      break;
  }
  return out;
}

std::vector<std::vector<int>> DeviceMesh::groups(MeshDim dim) const {
  std::vector<std::vector<int>> out;
  std::vector<bool> seen(static_cast<size_t>(world_), false);
  for (int r = 0; r < world_; ++r) {
    if (seen[static_cast<size_t>(r)]) continue;
    auto g = group_of(r, dim);
    for (int m : g) seen[static_cast<size_t>(m)] = true;
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace rondo
