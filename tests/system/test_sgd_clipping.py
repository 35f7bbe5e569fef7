#!/usr/bin/python3
"""training.optimizer=sgd and training.clip_grad against a direct computation on the weights the
checkpoints hold (read with Debian's python3-torch, which scripts/install-deps installs; hence
/usr/bin/python3). The defaults (clip_grad 1.0, weight_decay 0.01) are off unless a case sets
them. One step from the same initial weights W0 (a run whose update is 1e-30 of a
step leaves them bit for bit) with the step's gradient g (norm |g| as metrics.jsonl reports it):
- sgd: W1 = W0 - lr * g, so |W0 - W1| / lr = |g|;
- clip_grad c < |g|: W1 = W0 - lr * g * c / (|g| + 1e-6), the unclipped update scaled;
- weight_decay wd (coupled, torch's SGD): W1 = W0 - lr * (g + wd * W0);
- pp=2: both stages clip by the global norm, so their shards equal the one-rank weights."""
import json
import os

import torch

from rondo_testlib import TINY, Context, read_safetensors

ctx = Context()
BASE = TINY + ["training.optimizer=sgd", "training.lr=1.0", "training.min_lr=0", "training.train_iters=1", "training.clip_grad=0", "training.weight_decay=0",
               "checkpoint.interval=1", "parallel.world_size=1"]


def step1(name, sets):
    run_dir, _ = ctx.run(name, BASE + sets)
    weights = {}
    step = os.path.join(run_dir, "checkpoints", "step-1")
    for f in sorted(os.listdir(step)):
        if f.startswith("model-"):
            for k, (dtype, shape, raw) in read_safetensors(os.path.join(step, f)).items():
                weights[k] = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape).double()
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        row = json.loads(f.readline())
    return weights, row["grad_norm"]


def norm(ws):
    return sum(float((w * w).sum()) for w in ws.values()) ** 0.5


def rel(a, b):
    return norm({k: a[k] - b[k] for k in b}) / max(norm(b), 1e-30)


w0, _ = step1("w0", ["training.lr=1e-30"])
w1, g = step1("sgd", [])
update = {k: w0[k] - w1[k] for k in w0}  # lr = 1: the gradient itself
ctx.check(abs(norm(update) - g) / g < 1e-4, f"sgd: |W0 - W1| / lr = {norm(update):.6f}, |g| = {g:.6f}")

clip = g / 4
w1c, gc = step1("clipped", [f"training.clip_grad={clip}"])
want = {k: update[k] * clip / (g + 1e-6) for k in update}
got = {k: w0[k] - w1c[k] for k in w0}
ctx.check(gc == g and rel(got, want) < 1e-4,
          f"clip_grad {clip:.4f}: the update is the unclipped one scaled by c / (|g| + 1e-6) "
          f"(relative difference {rel(got, want):.1e}, its norm {norm(got):.6f})")

w1d, _ = step1("decay", ["training.weight_decay=0.1"])
want = {k: update[k] + 0.1 * w0[k] for k in update}
got = {k: w0[k] - w1d[k] for k in w0}
ctx.check(rel(got, want) < 1e-4, f"weight_decay 0.1: W0 - W1 = lr * (g + wd * W0) (relative difference {rel(got, want):.1e})")

w1p, gp = step1("clipped-pp2", [f"training.clip_grad={clip}", "parallel.world_size=2",
                                "parallel.pipeline_model_parallel_size=2"])
ctx.check(set(w1p) == set(w1c) and rel(w1p, w1c) < 1e-6 and abs(gp - g) / g < 1e-5,
          f"pp=2 clips by the global norm: its two shards equal one rank's weights "
          f"(relative difference {rel(w1p, w1c):.1e})")
ctx.finish()
