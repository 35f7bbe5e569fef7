"""Emulated compute: 8 pipeline ranks (zb_h1, and roundpipe's stateless workers) on this machine's cores, every F/B/I/W sleeping for the
plan's predicted op duration while the transfers between the ranks are real (a run whose
activations never arrived would fail on its receive deadline). Checks what emulation promises
without timing thresholds: each step's pipeline takes at least the busiest rank's predicted
compute (sleeps never end early), the bubble is reported, losses read 0, and the log says so."""
import json
import os

from rondo_testlib import Context

ctx = Context()
SETS = [
    "model.num_layers=16", "model.hidden_size=64", "model.num_attention_heads=4", "model.ffn_hidden_size=128",
    "model.seq_length=64", "training.micro_batch_size=2", "training.global_batch_size=32",
    "training.train_iters=3", "training.lr_warmup_iters=0", "checkpoint.interval=0",
    "training.emulate_compute=true", "pipeline.device_tflops=0.02", "parallel.world_size=8",
    "parallel.pipeline_model_parallel_size=8", "comms.timeout_s=60",
]
for schedule in ("zb_h1", "roundpipe"):
    run_dir, _ = ctx.run(f"{schedule}-pp8-emulated", SETS + [f"pipeline.schedule={schedule}"])
    with open(os.path.join(run_dir, "plan.json")) as f:
        plan = json.load(f)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    busiest = max(r["busy_s"] for r in plan["prediction"]["ranks"])
    ctx.check(len(rows) == 3, f"{schedule}: three steps ran")
    ctx.check(all(r["compute_span_s"] >= busiest * (1 - 1e-6) for r in rows),
              f"{schedule}: every step's pipeline lasted at least the busiest rank's predicted compute "
              f"({busiest:.3f} s): " + ", ".join(f"{r['compute_span_s']:.3f}" for r in rows))
    ctx.check(all(0 <= r["bubble_fraction"] < 1 for r in rows),
              f"{schedule}: the bubble is measured (last {rows[-1]['bubble_fraction']:.3f}, predicted "
              f"{plan['prediction']['bubble_fraction']:.3f})")
    ctx.check(all(r["loss"] == 0 for r in rows), f"{schedule}: emulated losses read 0")
    with open(os.path.join(run_dir, "logs", "rank-0.log")) as f:
        ctx.check("compute is emulated" in f.read(), f"{schedule}: rank 0's log says compute is emulated")
ctx.finish()
