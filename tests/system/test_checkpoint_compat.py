"""A checkpoint written by an earlier rondo still loads and continues: tests/data/checkpoint-v8/
holds step 3 of a two-stage pipeline run made by the commit its expected.json names (plan version
8, the GPT before the model became a family's parts), and that run's losses for steps 1-6. Today's
worker must start from the same weights (steps 1-6 of a fresh run equal the old ones) and, resumed
from the old checkpoint, continue with the old steps 4-6."""
import json
import os
import shutil

from rondo_testlib import Context, losses, rel_diff

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "data", "checkpoint-v8")
# Across CPUs the GEMM kernels may round differently; on the machine that wrote the fixture the
# losses are bit-identical (0.0).
TOLERANCE = 1e-5

ctx = Context()
with open(os.path.join(FIXTURE, "expected.json")) as f:
    expected = json.load(f)
old = {int(step): loss for step, loss in expected["losses"].items()}
sets = expected["sets"]

fresh, _ = ctx.run("fresh", sets)
new = losses(fresh)
worst = max(rel_diff(old[s], new.get(s, float("nan"))) for s in range(1, 7))
print(f"fresh run against {expected['commit']}'s: worst relative loss difference {worst:.3e}")
ctx.check(worst <= TOLERANCE, f"a fresh run's steps 1-6 equal the old rondo's (worst {worst:.3e})")

resumed_dir = os.path.join(ctx.tmp, "resumed")
shutil.copytree(os.path.join(FIXTURE, "checkpoints"), os.path.join(resumed_dir, "checkpoints"))
_, proc = ctx.run("resumed", sets)
ctx.check("resumed from checkpoint step-3" in proc.stderr, "the run resumed from the old checkpoint step-3")
got = losses(resumed_dir)
ctx.check(sorted(got) == [4, 5, 6], f"it ran steps 4-6 (logged {sorted(got)})")
worst = max(rel_diff(old[s], got.get(s, float("nan"))) for s in range(4, 7))
print(f"resumed from the old checkpoint: worst relative loss difference over steps 4-6 {worst:.3e}")
ctx.check(worst <= TOLERANCE, f"steps 4-6 continue the old run (worst {worst:.3e})")
ctx.finish()
