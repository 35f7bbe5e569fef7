// Rank discovery: which rank this process is, from the launcher's environment, before MPI (or a
// device) is touched: the local rank picks the device. Sources, in this fixed order: torchrun
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE), Open MPI (OMPI_COMM_WORLD_*), PMIx
// (PMIX_RANK), PMI (PMI_RANK, PMI_SIZE), Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID). A
// source without a local rank borrows it from a later one (srun sets SLURM_LOCALID under PMIx).
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace rondo {

struct DiscoveredRank {
  int rank = -1;
  int world_size = -1;  // -1: the source does not say
  int local_rank = -1;
  int local_size = -1;
  std::string source;  // "torchrun", "openmpi", "pmix", "pmi", "slurm"

  // "rank 3 of 8 (local 1 of 4) from openmpi"
  std::string describe() const;
};

using EnvLookup = std::function<const char*(const char*)>;

// nullopt when no source names a rank (a process started by hand).
std::optional<DiscoveredRank> discover_rank(const EnvLookup& env);
std::optional<DiscoveredRank> discover_rank();  // from this process's environment

}  // namespace rondo
