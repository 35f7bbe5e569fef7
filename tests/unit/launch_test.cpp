// Rank discovery from launcher environments, the mpirun and srun command lines (with mpirun's
// binding of ranks to cores), and the batch script of `rondo sbatch`.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <thread>

#include "launch/mpirun_command.h"
#include "launch/rank_discovery.h"
#include "launch/sbatch_script.h"
#include "launch/srun_command.h"

namespace rondo {
namespace {

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(RankDiscovery, TorchrunComesFirst) {
  const auto d = discover_rank(env_of({{"RANK", "3"},
                                       {"WORLD_SIZE", "8"},
                                       {"LOCAL_RANK", "1"},
                                       {"LOCAL_WORLD_SIZE", "4"},
                                       {"OMPI_COMM_WORLD_RANK", "5"}}));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->rank, 3);
  EXPECT_EQ(d->source, "torchrun");
  EXPECT_EQ(d->describe(), "rank 3 of 8 (local 1 of 4) from torchrun");
}

TEST(RankDiscovery, OpenMpi) {
  const auto d = discover_rank(env_of({{"OMPI_COMM_WORLD_RANK", "2"},
                                       {"OMPI_COMM_WORLD_SIZE", "4"},
                                       {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                                       {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                                       {"SLURM_PROCID", "9"}}));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->source, "openmpi");
  EXPECT_EQ(d->rank, 2);
  EXPECT_EQ(d->local_size, 2);
}

TEST(RankDiscovery, PmixUnderSrunBorrowsTheLocalRankFromSlurm) {
  const auto d = discover_rank(
      env_of({{"PMIX_RANK", "5"}, {"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}}));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->source, "pmix");
  EXPECT_EQ(d->world_size, 8);
  EXPECT_EQ(d->local_rank, 1);
}

TEST(RankDiscovery, SlurmAloneAndNothing) {
  const auto d =
      discover_rank(env_of({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "1"}}));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->source, "slurm");
  EXPECT_FALSE(discover_rank(env_of({{"RANK", "x"}})));
  EXPECT_FALSE(discover_rank(env_of({})));
}

TEST(Launch, SrunCommandKillsTheStepOnABadExit) {
  const auto cmd = srun_command({4, "/bin/rondo-worker", "/runs/a", {"--exclusive"}});
  const std::vector<std::string> want = {
      "srun",         "--ntasks=4",  "--kill-on-bad-exit=1", "--overcommit", "--mpi=pmix",
      "--export=ALL", "--exclusive", "/bin/rondo-worker",    "--run-dir",    "/runs/a"};
  EXPECT_EQ(cmd, want);
}

TEST(Launch, MpirunBindsEachRankToItsOwnCoresWhenTheyFit) {
  MpirunOptions o;
  o.num_ranks = 2;
  o.worker = "/bin/rondo-worker";
  o.run_dir = "/runs/a";
  o.bind_cores_per_rank = 2;
  auto cmd = mpirun_command(o);
  auto has = [&](const std::vector<std::string>& part) {
    return std::search(cmd.begin(), cmd.end(), part.begin(), part.end()) != cmd.end();
  };
  EXPECT_TRUE(has({"--bind-to", "core", "--map-by", "slot:PE=2"}));
  EXPECT_FALSE(has({"--oversubscribe"}));
  o.bind_cores_per_rank = 0;
  cmd = mpirun_command(o);
  EXPECT_TRUE(has({"--oversubscribe", "--bind-to", "none"}));
  EXPECT_FALSE(has({"--map-by"}));

  // auto: ranks x threads within the cores, placed by mpirun on this machine, each rank bound to
  // its share of the cores (its helper threads run there too).
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 1, 2, {}), 1);
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 4, 8, {}), 4);
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 1, 16, {}), 8);
  EXPECT_EQ(mpirun_cores_per_rank("auto", 3, 1, 8, {}), 2);
  EXPECT_EQ(mpirun_cores_per_rank("auto", 3, 1, 2, {}), 0);  // more ranks than cores
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 2, 3, {}), 0);
  // Hosts, or a binding or mapping of the user's own: mpirun_args decide.
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 1, 2, split_args("--hostfile /h --mca btl tcp,self")), 0);
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 1, 2, {"-H", "a,b"}), 0);
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 1, 2, {"-host", "a,b"}), 0);
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 1, 2, {"--host=a,b"}), 0);
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 1, 2, {"-npernode", "1"}), 0);
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 1, 2, {"--mca", "hwloc_base_binding_policy", "none"}), 0);
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 1, 2, {"--bind-to=socket"}), 0);
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 1, 2, {"--map-by", "node"}), 0);
  EXPECT_EQ(mpirun_cores_per_rank("auto", 2, 1, 2, {"--mca", "btl", "tcp,self"}), 1);
  EXPECT_EQ(mpirun_cores_per_rank("none", 2, 1, 64, {}), 0);
  EXPECT_EQ(mpirun_cores_per_rank("core", 8, 2, 2, {}), 2);  // told to: mpirun judges
  // This machine's physical cores, hyperthreads counted once: at least one, at most its CPUs.
  const int physical = usable_physical_cores();
  EXPECT_GE(physical, 1);
  EXPECT_LE(physical, static_cast<int>(std::thread::hardware_concurrency()));
}

TEST(Launch, SbatchScript) {
  SbatchOptions o;
  o.rondo = "/opt/rondo";
  o.worker = "/opt/rondo-worker";
  o.config_path = "/cfg/job.yaml";
  o.overrides = {"training.lr=1e-3", "data.path=it's here"};
  o.run_dir = "/runs/x";
  o.nodes = 2;
  o.ntasks_per_node = 4;
  o.time = "4:00:00";
  o.partition = "gpu";
  const auto s = sbatch_script(o);
  for (const char* want :
       {"#SBATCH --nodes=2\n", "#SBATCH --ntasks-per-node=4\n", "#SBATCH --time=4:00:00\n",
        "#SBATCH --partition=gpu\n", "#SBATCH --signal=B:USR1@120\n",
        "#SBATCH --output=/runs/x/slurm-%j.out\n", "scontrol show hostnames \"$SLURM_JOB_NODELIST\"",
        "trap requeue USR1", "scontrol requeue \"$SLURM_JOB_ID\"", "'/opt/rondo' run '/cfg/job.yaml'",
        "--set parallel.world_size=8", "--set launch.control_address=0.0.0.0:0",
        "--set 'data.path=it'\\''s here'"}) {
    EXPECT_NE(s.find(want), std::string::npos) << want << "\n" << s;
  }
  EXPECT_EQ(shell_quote("a b"), "'a b'");
}

}  // namespace
}  // namespace rondo
