"""Optimizers end to end. training.optimizer=muon (Newton-Schulz-orthogonalised momentum for the
hidden matrices, AdamW for the rest; docs/optimizers.md):
- trains (the loss falls) and differs from AdamW's trajectory;
- is layout-independent: dp=2 and pp=2 (each rank orthogonalises the whole matrices it holds)
  reproduce one rank's losses within 1e-5;
- interrupted after step 10 and resumed (momentum buffers and AdamW moments checkpointed), steps
  11-20 equal the uninterrupted run's;
- with a warm-up and cosine decay, metrics.jsonl's lr follows the schedule's formula;
- on roundpipe's stateless workers (each owner updates whole stages, so each matrix is whole where
  it is updated) it reproduces one rank, and resumes exactly."""
import json
import math
import os

from rondo_testlib import TINY, Context, losses, rel_diff

ctx = Context()
MUON = TINY + ["training.optimizer=muon", "model.num_layers=4"]


def worst(a, b, steps):
    return max(rel_diff(a[s], b.get(s, float("nan"))) for s in steps)


one = losses(ctx.run("muon", MUON + ["parallel.world_size=1"])[0])
adamw = losses(ctx.run("adamw", TINY + ["model.num_layers=4", "parallel.world_size=1"])[0])
ctx.check(one[20] < one[1] - 0.3, f"muon trains: loss {one[1]:.3f} -> {one[20]:.3f}")
ctx.check(worst(one, adamw, range(2, 21)) > 1e-3, "muon's trajectory is not AdamW's")
for name, sets in (("muon-dp2", ["parallel.world_size=2"]),
                   ("muon-pp2", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                                 "pipeline.schedule=1f1b"])):
    got = losses(ctx.run(name, MUON + sets)[0])
    ctx.check(worst(one, got, range(1, 21)) <= 1e-5,
              f"{name} reproduces one rank within 1e-5 (worst {worst(one, got, range(1, 21)):.2e})")

cut, resumed_at_10 = ctx.run_interrupted("muon-cut", MUON + ["parallel.world_size=2"], 10)
resumed = losses(cut)
ctx.check(resumed_at_10 and worst(one, resumed, range(11, 21)) <= 1e-5,
          f"muon resumed at step 10: steps 11-20 within 1e-5 of the uninterrupted run "
          f"(worst {worst(one, resumed, range(11, 21)):.2e})")

# The schedule as metrics.jsonl reports it: warm-up over 5 steps, cosine to min_lr at step 20.
sched_dir, _ = ctx.run("cosine", MUON + ["parallel.world_size=1", "training.lr_warmup_iters=5",
                                         "training.lr_decay_style=cosine", "training.min_lr=1e-4"])
with open(os.path.join(sched_dir, "metrics.jsonl")) as f:
    lrs = {r["step"]: r["lr"] for r in map(json.loads, f)}
want = {s: 1e-3 * s / 5 if s <= 5 else 1e-4 + 0.5 * (1 + math.cos(math.pi * (s - 5) / 15)) * (1e-3 - 1e-4)
        for s in range(1, 21)}
ctx.check(max(abs(lrs[s] - want[s]) for s in want) < 1e-12, "lr follows warm-up then cosine decay to min_lr")

# Stateless workers sum gradients in another association (each owner its stages, in node memory):
# synchronous roundpipe's AdamW runs differ from one rank's by ~1e-6; Muon's by as little.
ROUNDPIPE = ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2", "pipeline.schedule=roundpipe"]
got = losses(ctx.run("muon-roundpipe", MUON + ROUNDPIPE)[0])
ctx.check(worst(one, got, range(1, 21)) <= 1e-5,
          f"muon on roundpipe's stateless workers reproduces one rank within 1e-5 "
          f"(worst {worst(one, got, range(1, 21)):.2e})")
rp_cut, resumed_at_10 = ctx.run_interrupted("muon-roundpipe-cut", MUON + ROUNDPIPE, 10)
rp_resumed = losses(rp_cut)
ctx.check(resumed_at_10 and worst(got, rp_resumed, range(11, 21)) == 0.0,
          f"muon on roundpipe resumed at step 10: steps 11-20 equal the uninterrupted run "
          f"(worst {worst(got, rp_resumed, range(11, 21)):.2e})")
ctx.finish()
