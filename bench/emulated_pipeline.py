#!/usr/bin/env python3
"""Pipelines at 16 and 32 ranks on this 2-core machine with emulated compute
(`training.emulate_compute`): every F/B/I/W sleeps for the plan's predicted duration, transfers
(32 KiB activations and gradients), reductions and the optimizer are real. For each schedule it
prints the predicted makespan and bubble (`rondo plan`) beside what ran (`compute_span_s` and
`bubble_fraction` of metrics.jsonl, median over steps 2..N), and the executor's overhead per
action: (emulated makespan - predicted makespan) / the compute actions of the busiest rank. A
1-rank run gives the executor's own overhead without contention.

  python3 bench/emulated_pipeline.py [--ranks 16,32] [--schedules 1f1b,1f1b+async,interleaved_1f1b,zb_h1,zbv,roundpipe]
                                     [--device-tflops 0.001] [--steps 4]
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("RONDO_BUILD_DIR", os.path.join(ROOT, "build"))
RONDO = os.path.join(BUILD, "orchestrator", "rondo")


def sets_for(ranks, schedule, tflops, steps):
    # "1f1b+async": 1f1b with pipeline.async (PipeDream-2BW).
    extra = []
    if schedule.endswith("+async"):
        schedule = schedule[: -len("+async")]
        extra = ["pipeline.async=true"]
    # Two layers per rank (one per stage for v=2 schedules), 2p microbatches of 2 x 64 tokens (one
    # rank: 64 microbatches).
    vpp = 2 if schedule in ("interleaved_1f1b", "looped_bfs") else 1
    s = ["model.num_layers=%d" % (2 * ranks), "model.hidden_size=64", "model.num_attention_heads=4",
         "model.ffn_hidden_size=128", "model.seq_length=64", "training.micro_batch_size=2",
         "training.global_batch_size=%d" % (4 * ranks if ranks > 1 else 128), "training.train_iters=%d" % steps,
         "training.lr_warmup_iters=0", "checkpoint.interval=0", "training.emulate_compute=true",
         "pipeline.device_tflops=%g" % tflops, "parallel.world_size=%d" % ranks,
         "parallel.pipeline_model_parallel_size=%d" % ranks, "pipeline.schedule=" + schedule,
         "parallel.virtual_pipeline_model_parallel_size=%d" % vpp] + extra
    return [x for pair in (("--set", v) for v in s) for x in pair]


def run(ranks, schedule, tflops, steps, tmp):
    args = sets_for(ranks, schedule, tflops, steps)
    plan = json.loads(subprocess.run([RONDO, "plan", "--json"] + args, check=True, capture_output=True,
                                     text=True).stdout)
    run_dir = os.path.join(tmp, "%s-%d" % (schedule, ranks))
    subprocess.run([RONDO, "run", "--run-dir", run_dir] + args, check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))][1:]
    with open(os.path.join(run_dir, "plan.json")) as f:
        actions = max(sum(1 for a in r["actions"] if re.fullmatch(r"\d+[FBIW]\d+", a)) for r in
                      json.load(f)["ranks"])
    span = statistics.median(r["compute_span_s"] for r in rows)
    bubble = statistics.median(r["bubble_fraction"] for r in rows)
    pred = plan["prediction"]
    return pred["step_time_s"], span, pred["bubble_fraction"], bubble, actions


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", default="16,32")
    ap.add_argument("--schedules", default="1f1b,interleaved_1f1b,zb_h1,zbv,roundpipe")
    ap.add_argument("--device-tflops", type=float, default=0.001)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    cores = os.cpu_count()
    ompi = subprocess.run(["mpirun", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"# {platform.node()}: {cores} cores, {platform.platform()}, {ompi}; "
          f"pipeline.device_tflops={args.device_tflops:g}, {args.steps} steps (median of 2..{args.steps})")
    print()
    print("| ranks | schedule | makespan predicted | makespan emulated | Δ | bubble predicted | bubble measured | "
          "Δ | overhead per action |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    misses = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(1, "1f1b")] + [(int(r), s) for r in args.ranks.split(",") for s in args.schedules.split(",")]
        for ranks, schedule in cases:
            pred_span, span, pred_bubble, bubble, actions = run(ranks, schedule, args.device_tflops, args.steps, tmp)
            rel = span / pred_span - 1
            if ranks > 1 and (abs(rel) > 0.05 or abs(bubble - pred_bubble) > 0.05):
                misses.append(f"{schedule} at {ranks} ranks")
            print(f"| {ranks} | {schedule} | {pred_span:.3f} s | {span:.3f} s | {100 * rel:+.1f}% | "
                  f"{pred_bubble:.3f} | {bubble:.3f} | {bubble - pred_bubble:+.3f} | "
                  f"{1e6 * (span - pred_span) / actions:.0f} µs ({actions} actions) |", flush=True)
    if misses:
        print("\noff the floor (makespan within 5%, bubble within 0.05): " + ", ".join(misses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
