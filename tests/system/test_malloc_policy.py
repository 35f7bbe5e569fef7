"""training.malloc_policy: with the default caching policy, steady-state steps take no page faults
(memory freed by one step is reused by the next); glibc's defaults (`system`) fault thousands of
pages back in every step. Counts, not timings."""
import json
import os
import statistics

from rondo_testlib import Context

ctx = Context()
# The default demo model (4 layers, hidden 128): its activations exceed glibc's mmap threshold.
MODEL = ["training.train_iters=12", "checkpoint.interval=0", "parallel.world_size=2"]


def faults(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [r["page_faults"] for r in rows[4:]]  # after warm-up


caching, _ = ctx.run("caching", MODEL + ["training.malloc_policy=caching"])
system, _ = ctx.run("system", MODEL + ["training.malloc_policy=system"])
fc, fs = faults(caching), faults(system)
print(f"page faults per steady-state step (worst rank): caching {fc}, system {fs}")
ctx.check(statistics.median(fc) <= 64, f"caching: steady steps fault (almost) no pages (median {statistics.median(fc)})")
ctx.check(statistics.median(fs) > 10 * max(1, statistics.median(fc)),
          "system: glibc's defaults fault pages back in every step (what the caching policy prevents)")
with open(os.path.join(caching, "runtime.json")) as f:
    env = json.load(f)
ctx.check(env["malloc_policy"].startswith("caching") and env["intra_op_threads"] >= 1,
          f"runtime.json records the policy and threads: {env['malloc_policy']}")
ctx.check(any("blas" in b for b in env["blas_libraries"]), f"runtime.json names the BLAS: {env['blas_libraries']}")
ctx.finish()
