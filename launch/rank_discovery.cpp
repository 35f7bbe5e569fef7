#include "launch/rank_discovery.h"

#include <cstdlib>

namespace rondo {

namespace {

int number(const EnvLookup& env, const char* name) {
  const char* v = env(name);
  if (v == nullptr || *v == '\0') return -1;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (end != nullptr && *end == '\0' && n >= 0) ? static_cast<int>(n) : -1;
}

struct Source {
  const char* name;
  const char* rank;
  const char* size;
  const char* local_rank;
  const char* local_size;
};

constexpr Source kSources[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"},
    {"pmix", "PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"},
    {"pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"},
};

}  // namespace

std::string DiscoveredRank::describe() const {
  std::string s = "rank " + std::to_string(rank);
  if (world_size >= 0) s += " of " + std::to_string(world_size);
  if (local_rank >= 0) {
    s += " (local " + std::to_string(local_rank);
    if (local_size >= 0) s += " of " + std::to_string(local_size);
    s += ")";
  }
  return s + " from " + source;
}

std::optional<DiscoveredRank> discover_rank(const EnvLookup& env) {
  for (size_t i = 0; i < std::size(kSources); ++i) {
    const auto& src = kSources[i];
    const int rank = number(env, src.rank);
    if (rank < 0) continue;
    DiscoveredRank d;
    d.rank = rank;
    d.world_size = number(env, src.size);
    d.local_rank = number(env, src.local_rank);
    d.local_size = number(env, src.local_size);
    d.source = src.name;
    // Borrow what this source lacks from the later ones, in order.
    for (size_t k = i + 1; k < std::size(kSources); ++k) {
      if (d.world_size < 0) d.world_size = number(env, kSources[k].size);
      if (d.local_rank < 0) d.local_rank = number(env, kSources[k].local_rank);
      if (d.local_size < 0) d.local_size = number(env, kSources[k].local_size);
    }
    return d;
  }
  return std::nullopt;
}

std::optional<DiscoveredRank> discover_rank() {
  return discover_rank([](const char* name) { return std::getenv(name); });
}

}  // namespace rondo
