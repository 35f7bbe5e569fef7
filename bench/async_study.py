#!/usr/bin/env python3
"""The one-step-delay study in small (Zmushko et al. 2026, Tables 1-2), on rondo's demo GPT and the
built-in text: AdamW and Muon, each synchronous, asynchronous (pipeline.async: PipeDream-2BW's
one-step weight delay), asynchronous with the error-feedback correction, with weight prediction
from the last update (error feedback's compute points, docs/optimizers.md: a check, not a
baseline), and with the PipeMare/SpecTrain baseline (prediction along the updates' moving
average), over several seeds; the same batches for every variant of a seed (the sampler depends
on the seed only).

  bench/async_study.py [--steps 300] [--seeds 1,2,3] [--lr 3e-3]

The delayed rule does not depend on the layout (tests/system/test_async_pipeline.py), so every
run is one rank. The figure is the final loss: the mean training loss of the last 20 steps (each
on batches not seen before in the run), mean +- sd over seeds; the gap is async - sync."""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("RONDO_BUILD_DIR", os.path.join(ROOT, "build"))
RONDO = os.path.join(BUILD, "orchestrator", "rondo")
VARIANTS = [("sync", []), ("async", ["pipeline.async=true"]),
            ("async + error feedback", ["pipeline.async=true", "pipeline.delay_correction=error_feedback"]),
            ("async + weight prediction", ["pipeline.async=true", "pipeline.delay_correction=weight_prediction"]),
            ("async + velocity prediction",
             ["pipeline.async=true", "pipeline.delay_correction=velocity_prediction"])]
CORRECTIONS = [name for name, _ in VARIANTS if name.startswith("async +")]


def final_loss(tmp, name, sets, last=20):
    run_dir = os.path.join(tmp, name)
    cmd = [RONDO, "run", "--run-dir", run_dir]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, capture_output=True)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        losses = [json.loads(line)["loss"] for line in f]
    subprocess.run(["rm", "-rf", run_dir], check=True)
    return statistics.mean(losses[-last:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    common = ["parallel.world_size=1", "training.micro_batch_size=4", "training.global_batch_size=8",
              f"training.train_iters={args.steps}", f"training.lr={args.lr}", f"training.min_lr={args.lr / 10}",
              f"training.lr_warmup_iters={args.steps // 10}", "training.lr_decay_style=cosine",
              "training.weight_decay=0.1", "training.clip_grad=1.0", "training.adam_beta2=0.95",
              "training.num_threads=1", "checkpoint.interval=0", "training.log_interval=100000"]
    print(f"demo GPT (4 layers, hidden 128, seq 128), built-in text, {args.steps} steps of 8 x 128 tokens, "
          f"lr {args.lr} (warm-up 10%, cosine to 10%), weight decay 0.1, clip 1.0, betas (0.9, 0.95), "
          f"seeds {seeds}, 1 rank, 1 thread", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for opt in ("adamw", "muon"):
                for name, sets in VARIANTS:
                    loss = final_loss(tmp, "run", common + sets + [f"training.optimizer={opt}",
                                                                   f"training.seed={seed}"])
                    results.setdefault((opt, name), []).append(loss)
                    print(f"  seed {seed} {opt:5} {name:28} {loss:.4f}", flush=True)
    print()
    print("| optimizer | " + " | ".join(n for n, _ in VARIANTS) + " | " +
          " | ".join("gap closed by " + n[len("async + "):] for n in CORRECTIONS) + " |")
    print("| --- |" + " --- |" * (len(VARIANTS) + len(CORRECTIONS)))
    for opt in ("adamw", "muon"):
        cells = []
        for name, _ in VARIANTS:
            v = results[(opt, name)]
            cells.append(f"{statistics.mean(v):.4f} +- {statistics.stdev(v) if len(v) > 1 else 0:.4f}")
        mean = {n: statistics.mean(results[(opt, n)]) for n, _ in VARIANTS}
        gap = mean["async"] - mean["sync"]
        closed = [f"{(mean['async'] - mean[n]) / gap:.0%}" if abs(gap) > 1e-9 else "-" for n in CORRECTIONS]
        print(f"| {opt} | " + " | ".join(cells + closed) + " |")


if __name__ == "__main__":
    main()
