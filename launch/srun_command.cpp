#include "launch/srun_command.h"

namespace rondo {

std::vector<std::string> srun_command(const SrunOptions& o) {
  // --kill-on-bad-exit: one rank's death ends the step at once (rondo then restarts it);
  // --overcommit: more ranks than cores on small nodes, as mpirun's --oversubscribe;
  // --mpi=pmix: how Debian's Open MPI learns its ranks under srun.
  std::vector<std::string> cmd = {"srun",
                                  "--ntasks=" + std::to_string(o.num_ranks),
                                  "--kill-on-bad-exit=1",
                                  "--overcommit",
                                  "--mpi=pmix",
                                  "--export=ALL"};
  cmd.insert(cmd.end(), o.extra_args.begin(), o.extra_args.end());
  cmd.push_back(o.worker);
  cmd.push_back("--run-dir");
  cmd.push_back(o.run_dir);
  return cmd;
}

}  // namespace rondo
