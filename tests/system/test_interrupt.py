"""An interrupt loses nothing. The first SIGINT (Ctrl-C) or SIGTERM to `rondo run` stops the job
as SIGUSR1 does: every rank checkpoints after its current step and exits, `rondo run` ends 0 with
the job "stopped" (events.jsonl names the signal), and the same command resumes from that
checkpoint and trains to the uninterrupted run's losses. A second signal stops at once: the job
ends "was interrupted", non-zero."""
import json
import os
import signal
import time

from rondo_testlib import TINY, Context, losses, rel_diff, rows, wait_for

ctx = Context()
# Long enough that a signal sent after 20 steps lands mid-run (TINY trains about 100 steps a second).
STEPS = 2000
SETS = TINY + ["parallel.world_size=2", f"training.train_iters={STEPS}"]
whole_dir, _ = ctx.run("whole", SETS)
reference = losses(whole_dir)

for sig in (signal.SIGINT, signal.SIGTERM):
    name = "interrupted-" + sig.name
    run_dir, proc = ctx.start(name, SETS)
    wait_for(lambda: len(rows(run_dir)) >= 20, 300, "20 steps")
    proc.send_signal(sig)
    proc.wait(timeout=120)
    with open(run_dir + ".out") as f:
        out = f.read()
    last = max(r["step"] for r in rows(run_dir))
    latest = os.path.join(run_dir, "checkpoints", "latest")
    saved = open(latest).read().strip() if os.path.exists(latest) else None
    with open(os.path.join(run_dir, "events.jsonl")) as f:
        events = [json.loads(line) for line in f]
    ctx.check(proc.returncode == 0 and "stopped after step" in out and saved == f"step-{last}" and last < STEPS,
              f"{sig.name}: rondo run ended 0, stopped after step {last} with checkpoint {saved}")
    ctx.check(any(e.get("event") == "stop_requested" and e.get("signal") == sig.name for e in events)
              and any(e.get("event") == "stopped" for e in events),
              f"{sig.name}: events.jsonl records the request and the stop")
    _, resumed = ctx.run(name, SETS)
    got = losses(run_dir)
    worst = max(rel_diff(reference[s], got.get(s, float("nan"))) for s in reference)
    ctx.check(f"resumed from checkpoint step-{last}" in resumed.stderr and worst <= 1e-6,
              f"{sig.name}: the same command resumed at step {last}; all {STEPS} steps match the uninterrupted "
              f"run within 1e-6 (worst {worst:.2e})")

# Twice: at once, without waiting for the step.
run_dir, proc = ctx.start("interrupted-twice", TINY + ["parallel.world_size=2", "training.train_iters=100000"])
wait_for(lambda: len(rows(run_dir)) >= 3, 300, "3 steps")
proc.send_signal(signal.SIGINT)
time.sleep(0.05)  # delivered apart (signals pending together merge), before the first one's stop completes
proc.send_signal(signal.SIGINT)
started = time.monotonic()
proc.wait(timeout=60)
with open(run_dir + ".out") as f:
    out = f.read()
ctx.check(proc.returncode != 0 and "was interrupted" in out,
          f"a second SIGINT stops at once ({time.monotonic() - started:.1f} s, exit {proc.returncode})")
ctx.finish()
