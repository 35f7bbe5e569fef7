"""Interrupt after step 10 and resume: steps 11-20 match the uninterrupted run within 1e-6, for
data parallelism and for pipelines (each pipeline rank checkpoints and restores its own stages)."""
import json
import os

from rondo_testlib import TINY, Context, losses, rel_diff

ctx = Context()
full, _ = ctx.run("full", TINY + ["parallel.world_size=2"])
cut, proc = ctx.run("cut", TINY + ["parallel.world_size=2", "training.exit_interval=10"])
ctx.check(sorted(losses(cut)) == list(range(1, 11)), "the interrupted run stopped after step 10")
ctx.check(os.path.exists(os.path.join(cut, "checkpoints", "step-10", "manifest.json")), "it left checkpoint step-10")
with open(os.path.join(cut, "checkpoints", "latest")) as f:
    ctx.check(f.read().strip() == "step-10", "latest points to step-10")
_, proc = ctx.run("cut", TINY + ["parallel.world_size=2"])
ctx.check("resumed from checkpoint step-10" in proc.stderr, "the second run resumed from step-10")
a, b = losses(full), losses(cut)
ctx.check(sorted(b) == list(range(1, 21)), "the resumed run logged steps 11..20")
worst = max(rel_diff(a[s], b[s]) for s in range(11, 21))
print(f"largest relative loss difference over steps 11-20: {worst:.3e}")
ctx.check(worst <= 1e-6, f"steps 11-20 match within 1e-6 (worst {worst:.3e})")
with open(os.path.join(cut, "metrics.jsonl")) as f:
    resumed_rows = [json.loads(line) for line in f][10:]
ctx.check(all(r.get("grad_buckets_started_in_backward", 0) >= 1 for r in resumed_rows),
          "after the resume the backward still starts the gradient reduction (hooks survive the reload)")
with open(os.path.join(cut, "events.jsonl")) as f:
    events = [json.loads(line)["event"] for line in f]
ctx.check("resumed" in events and "exit_interval" in events, f"events.jsonl records the stop and resume: {events}")

# Pipelines: 1f1b at pp=2 x dp=2, zbv (two stages per rank, split backward) at pp=2, and
# roundpipe's stateless workers (one shared model shard; each worker's optimizer shard holds the
# stages it updates).
PIPE = TINY + ["model.num_layers=4"]
for name, sets in (("1f1b-pp2-dp2", ["parallel.world_size=4", "parallel.pipeline_model_parallel_size=2",
                                     "pipeline.schedule=1f1b"]),
                   ("zbv-pp2", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                                "pipeline.schedule=zbv"]),
                   ("roundpipe-pp2", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                                      "pipeline.schedule=roundpipe"])):
    whole, _ = ctx.run(name + "-full", PIPE + sets)
    part, _ = ctx.run(name + "-cut", PIPE + sets + ["training.exit_interval=10"])
    files = os.listdir(os.path.join(part, "checkpoints", "step-10"))
    shards = sorted(f for f in files if f.startswith("model-"))
    optim = sorted(f for f in files if f.startswith("optim-") and f.endswith(".pt"))
    layouts = sorted(f for f in files if f.endswith(".layout.json"))
    want = ["model-pp0-tp0.safetensors"] if name.startswith("roundpipe") else ["model-pp0-tp0.safetensors",
                                                                              "model-pp1-tp0.safetensors"]
    # AdamW's flat layouts beside stages bound to ranks (another partition can load them by name).
    want_layouts = [] if name.startswith("roundpipe") else ["optim-pp0-tp0.layout.json", "optim-pp1-tp0.layout.json"]
    ctx.check(shards == want and optim == ["optim-pp0-tp0.pt", "optim-pp1-tp0.pt"] and layouts == want_layouts,
              f"{name}: model shards {shards}, optimizer shards {optim}, layouts {layouts}")
    _, proc = ctx.run(name + "-cut", PIPE + sets)
    a, b = losses(whole), losses(part)
    worst = max(rel_diff(a[s], b.get(s, float("nan"))) for s in range(11, 21))
    ctx.check("resumed from checkpoint step-10" in proc.stderr and worst <= 1e-6,
              f"{name}: resumed at step 10, steps 11-20 match within 1e-6 (worst {worst:.3e})")
ctx.finish()
