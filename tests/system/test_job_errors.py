"""Bad input fails clearly: config errors exit 2 naming the key; a failing rank is named with its log;
a pipeline rank killed mid-step fails the job at once, naming that rank, its pid and the signal."""
import json
import os
import re
import signal
import subprocess
import time

from rondo_testlib import TINY, Context

ctx = Context()
_, proc = ctx.run("bad-config", TINY + ["training.global_batch_size=7"], expect_status=2)
ctx.check("training.global_batch_size" in proc.stderr, "a config error names its key")
ctx.check(not os.path.exists(os.path.join(ctx.tmp, "bad-config")), "nothing is launched or written for a bad config")

tiny_text = os.path.join(ctx.tmp, "tiny.txt")
with open(tiny_text, "w") as f:
    f.write("too short")
run_dir, proc = ctx.run("short-data", TINY + ["parallel.world_size=2", f"data.path={tiny_text}"], expect_status=2)
ctx.check("data.path" in proc.stderr, "a data file shorter than one sample is reported by key")
ctx.check("rank 0 failed" in proc.stderr and "logs/rank-0.log" in proc.stderr, "the failing rank and its log are named")
ctx.check(os.path.exists(os.path.join(run_dir, "logs", "rank-0.log")), "the rank's log exists")

# A plan of another version is refused by the worker, naming both versions.
ok_dir, _ = ctx.run("version", TINY + ["training.train_iters=1"])
with open(os.path.join(ok_dir, "plan.pb"), "rb") as f:
    plan = f.read()
# The version this build writes (proto/plan_version.h).
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto", "plan_version.h")) as f:
    version = int(re.search(r"kPlanVersion = (\d+);", f.read()).group(1))
ctx.check(plan[:2] == bytes([0x08, version]), f"plan.pb starts with its version field ({version})")
with open(os.path.join(ok_dir, "plan.pb"), "wb") as f:
    f.write(b"\x08\x01" + plan[2:])
proc = subprocess.run([ctx.worker, "--run-dir", ok_dir], capture_output=True, text=True, timeout=120)
with open(os.path.join(ok_dir, "logs", "rank-0.log")) as f:
    log = f.read()
ctx.check(proc.returncode != 0 and "version 1 plan" in log and f"runs version {version}" in log,
          "a version 1 plan is refused: " + next((l for l in log.splitlines() if "version" in l), "?"))

# Kill pipeline rank 1 (the last stage) while it trains; rank 0 waits on it in the middle of a step.
run_dir = os.path.join(ctx.tmp, "killed")
cmd = [ctx.rondo, "run", "--run-dir", run_dir, "--worker", ctx.worker]
for s in TINY + ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2", "training.train_iters=1000000",
                 "comms.timeout_s=60", "launch.max_restarts=0"]:
    cmd += ["--set", s]
job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
metrics = os.path.join(run_dir, "metrics.jsonl")
deadline = time.time() + 120
while time.time() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics) > 1000):
    time.sleep(0.2)
with open(os.path.join(run_dir, "workers.json")) as f:
    victim = next(w["pid"] for w in json.load(f) if w["rank"] == 1)
t_kill = time.time()
os.kill(victim, signal.SIGKILL)
out, err = job.communicate(timeout=120)
took = time.time() - t_kill
ctx.check(job.returncode != 0, f"the job failed (exit {job.returncode})")
ctx.check(took < 60, f"within the communication timeout ({took:.1f} s after the kill)")
ctx.check(f"rank 1 (pid {victim}" in err and "killed by signal 9" in err,
          "rondo names the killed rank, its pid and the signal: " + next((l for l in err.splitlines() if "signal 9" in l), "?"))
with open(os.path.join(run_dir, "events.jsonl")) as f:
    ended = [e for e in map(json.loads, f) if e["event"] == "rank_ended"]
ctx.check(len(ended) == 1 and ended[0]["rank"] == 1, f"events.jsonl records which rank ended the job {ended}")
ctx.finish()
