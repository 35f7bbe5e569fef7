"""training.cpu_kernels: rondo's kernels (fused GELU and attention softmax, oneDNN GEMMs; the
default) train the same model as LibTorch's own (`aten`): the same loss trajectory within float
rounding, on 2 data-parallel ranks and on a 2-stage pipeline with packed documents (a mask per
sample, over the lognormal corpus's documents). runtime.json names what ran."""
import json
import os

from rondo_testlib import TINY, Context, losses

ctx = Context()
STEPS = ["training.train_iters=30"]


def kernels(run_dir):
    with open(os.path.join(run_dir, "runtime.json")) as f:
        return json.load(f)["cpu_kernels"]


for name, sets in [("dp2", ["parallel.world_size=2"]),
                   ("pp2-packed", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                                   "data.path=lognormal", "data.pack=true"])]:
    fused, _ = ctx.run(f"{name}-fused", TINY + STEPS + sets)
    aten, _ = ctx.run(f"{name}-aten", TINY + STEPS + sets + ["training.cpu_kernels=aten"])
    lf, la = losses(fused), losses(aten)
    worst = max(abs(lf[s] - la[s]) / abs(la[s]) for s in la)
    ctx.check(sorted(lf) == sorted(la) and len(la) == 30, f"{name}: both ran 30 steps")
    first, last = min(la), max(la)
    ctx.check(worst < 1e-4, f"{name}: losses agree within float rounding (worst relative difference {worst:.2e} "
                            f"over 30 steps; first {lf[first]:.6f} vs {la[first]:.6f}, "
                            f"last {lf[last]:.6f} vs {la[last]:.6f})")
    ctx.check(kernels(aten) == "aten", f"{name}: runtime.json says aten for aten: {kernels(aten)}")
    ctx.check(kernels(fused).startswith("fused") or kernels(fused).startswith("aten"),
              f"{name}: runtime.json names the fused kernels: {kernels(fused)}")
ctx.finish()
