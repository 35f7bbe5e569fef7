"""A rank killed with SIGKILL mid-run: `rondo run` names the rank and the signal, relaunches from the
latest checkpoint, recomputes only the steps after it, and every step's loss equals an
uninterrupted run's."""
import os
import signal

from rondo_testlib import TINY, Context, events, losses, rows, wait_for, worker_pid

ctx = Context()
SETS = TINY + ["parallel.world_size=2", "training.train_iters=40", "checkpoint.interval=10"]
full, _ = ctx.run("full", SETS)
reference = losses(full)

run_dir, proc = ctx.start("killed", SETS)
# Past the first checkpoint (step 10) and a few steps more, then rank 1 dies without a word.
wait_for(lambda: any(r["step"] >= 13 for r in rows(run_dir)), 300, "step 13 in metrics.jsonl")
victim = worker_pid(run_dir, 1)
os.kill(victim, signal.SIGKILL)
killed_after = max(r["step"] for r in rows(run_dir))
proc.wait(timeout=600)
with open(run_dir + ".out") as f:
    out = f.read()
ctx.check(proc.returncode == 0, f"the job finished after the restart (exit {proc.returncode})")
ctx.check(f"rank 1 (pid {victim} on" in out and "signal 9" in out,
          "the failure names rank 1, its pid and signal 9")
ev = events(run_dir)
restarts = [e for e in ev if e["event"] == "restart"]
ctx.check(len(restarts) == 1, f"one restart recorded in events.jsonl: {restarts}")
from_step = restarts[0]["from_step"] if restarts else -1
ctx.check(from_step in (10, 20, 30) and from_step <= killed_after,
          f"the restart resumed from the latest checkpoint (step {from_step}, killed after step {killed_after})")
second = [r["step"] for r in rows(run_dir) if r["attempt"] == 1]
ctx.check(second == list(range(from_step + 1, 41)),
          f"only the steps after the checkpoint were recomputed: {second[:3]}..{second[-1:]}")
ctx.check(any(e["event"] == "attempt_failed" and e["restartable"] for e in ev), "the failed attempt is recorded")
got = losses(run_dir)
ctx.check(sorted(got) == list(range(1, 41)), "every step has a row")
worst = max(abs(got[s] - reference[s]) for s in reference)
print(f"largest loss difference against the uninterrupted run: {worst:.3e}")
ctx.check(worst == 0.0, f"every step's loss equals the uninterrupted run's (worst {worst:.3e})")

# No restarts allowed: the same death ends the job, naming the rank.
run_dir, proc = ctx.start("no-restart", SETS + ["launch.max_restarts=0"])
wait_for(lambda: any(r["step"] >= 3 for r in rows(run_dir)), 300, "step 3")
os.kill(worker_pid(run_dir, 0), signal.SIGKILL)
proc.wait(timeout=300)
with open(run_dir + ".out") as f:
    out = f.read()
ctx.check(proc.returncode == 1 and "rank 0 (pid" in out and "job failed" in out,
          f"with launch.max_restarts=0 the job fails naming rank 0 (exit {proc.returncode})")
# The coordinator itself killed outright: its launcher stops the ranks; none keeps training unwatched.
# Little output flows (log_interval): the launcher learns of the death from PR_SET_PDEATHSIG, or
# when the ranks' warnings about their lost coordinator meet the broken pipe.
run_dir, proc = ctx.start("coordinator-killed", SETS + ["training.train_iters=100000", "training.log_interval=1000000"])
wait_for(lambda: any(r["step"] >= 3 for r in rows(run_dir)), 300, "step 3")
pids = [worker_pid(run_dir, r) for r in (0, 1)]
proc.kill()
proc.wait()


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has ended


wait_for(lambda: all(gone(p) for p in pids), 60, "the workers to end after the coordinator's death")
ctx.check(True, "the workers ended after the coordinator was killed with SIGKILL")
ctx.finish()
