// Reading which rank ended a job out of mpirun's own words (Open MPI 4's messages, verbatim).
#include "launch/launcher_report.h"

#include <gtest/gtest.h>

namespace rondo {
namespace {

TEST(LauncherReport, KilledBySignal) {
  const auto e = parse_mpirun_report(
      "[vm:12996] Read -1, expected 32768, errno = 3\n"
      "--------------------------------------------------------------------------\n"
      "mpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 (Killed).\n"
      "--------------------------------------------------------------------------\n");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->rank, 1);
  EXPECT_EQ(e->host, "vm");
  EXPECT_EQ(e->signal, 9);
  EXPECT_EQ(e->how(), "killed by signal 9 (Killed)");
}

TEST(LauncherReport, NonZeroExit) {
  const auto e = parse_mpirun_report(
      "mpirun detected that one or more processes exited with non-zero status, thus causing\n"
      "the job to be terminated. The first process to do so was:\n\n"
      "  Process name: [[24479,1],3]\n"
      "  Exit code:    3\n");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->rank, 3);
  EXPECT_EQ(e->signal, 0);
  EXPECT_EQ(e->how(), "exited with status 3");
}

TEST(LauncherReport, SrunKilledTaskNotItsOwnTeardown) {
  const auto e = parse_mpirun_report(
      "srun: error: localhost: task 0: Terminated\n"
      "srun: error: localhost: task 1: Killed\n"
      "srun: launch/slurm: _step_signal: Terminating StepId=2.0\n");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->rank, 1);
  EXPECT_EQ(e->host, "localhost");
  EXPECT_EQ(e->signal, 9);
  EXPECT_EQ(e->how(), "killed by signal 9 (Killed)");
  const auto x = parse_srun_report("srun: error: vm: task 3: Exited with exit code 2\n");
  ASSERT_TRUE(x);
  EXPECT_EQ(x->rank, 3);
  EXPECT_EQ(x->how(), "exited with status 2");
}

TEST(LauncherReport, NothingNamed) { EXPECT_FALSE(parse_mpirun_report("step 10/20 | loss 2.0\n")); }

}  // namespace
}  // namespace rondo
