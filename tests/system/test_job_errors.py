"""Bad input fails clearly: config errors exit 2 naming the key; a failing rank is named with its log."""
import os

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
ctx.finish()
