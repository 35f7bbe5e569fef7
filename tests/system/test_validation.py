"""Validation as Megatron-LM does it (data.split, training.eval_interval, training.eval_iters):

- data.split=80,20 trains on exactly the first documents: its losses equal a run on a directory
  holding only those files (Megatron's rounding picks them, recomputed here);
- the loss of an evaluation is computed independently: the weights after step 6, exported from the
  checkpoint to Hugging Face and back, give a run over a directory of only the held-out files that
  first step's loss, which is val_loss (one global batch: the same windows);
- evaluations come every eval_interval steps, after the last and at an exit (exit_interval);
- pp=2 (1f1b, interleaved, zbv, roundpipe's stateless workers each evaluating a share of their
  pipeline's microbatches through the whole model), dp=2 and cp=2 evaluate what one rank evaluates
  (1e-5), and a run cut at step 4 and resumed evaluates what the uninterrupted one did;
- an asynchronous stream (1f1b, PipeDream-2BW) evaluates after draining: its rows are there and the
  loss falls; MoE with expert parallelism evaluates too; val_perplexity is exp(val_loss); TensorBoard holds val_loss at the evaluated steps
  (read by the independent reader in tfevents.py);
- a split without validation documents, a bad split, a held-out part too small for one sample and
  evaluation with an asynchronous roundpipe are refused naming the key."""
import glob
import json
import math
import os
import shutil
import subprocess
import sys

from rondo_testlib import TINY, Context, losses, rel_diff, validations
from tfevents import events

ctx = Context()
BUILTIN = "/usr/share/common-licenses"
base = TINY + ["parallel.world_size=1", "model.family=llama", "model.num_layers=4", "training.train_iters=6", "training.eval_interval=3",
               "training.eval_iters=2", "training.log_interval=3"]
split = base + ["data.split=80,20"]


def megatron_split(n, weights):
    """Megatron's document ranges, written out from its rule (rounded cumulative shares)."""
    total = sum(weights)
    at = [0]
    for w in weights:
        at.append(at[-1] + int(round(w / total * n)))
    diff = at[-1] - n
    return [0] + [a - diff for a in at[1:]]


files = sorted(f for f in os.listdir(BUILTIN)
               if os.path.isfile(os.path.join(BUILTIN, f)) and not os.path.islink(os.path.join(BUILTIN, f)))
cut = megatron_split(len(files), [80, 20])
parts = {}
for name, (lo, hi) in (("train", cut[0:2]), ("held-out", cut[1:3])):
    parts[name] = os.path.join(ctx.tmp, "docs-" + name)
    os.makedirs(parts[name])
    for f in files[lo:hi]:
        shutil.copy(os.path.join(BUILTIN, f), parts[name])

# The training part is what trains.
plain = losses(ctx.run("train-docs", base + ["training.eval_interval=0", "data.path=" + parts["train"]])[0])
split_run, proc = ctx.run("ref", split)
ref_losses, ref = losses(split_run), validations(split_run)
worst = max(rel_diff(plain[s], ref_losses[s]) for s in plain)
ctx.check(len(plain) == 6 and worst <= 1e-6,
          f"data.split=80,20 trains on documents {cut[0]}-{cut[1]} of {len(files)} only: the losses of a run on "
          f"those files (worst {worst:.1e})")
ctx.check(sorted(ref) == [3, 6] and sorted(ref_losses) == list(range(1, 7)),
          f"evaluations after steps 3 and 6 (every 3 and the last), beside every step's row: {sorted(ref)}")
ctx.check(all(math.isclose(r["val_perplexity"], math.exp(r["val_loss"]), rel_tol=1e-12) for r in ref.values()),
          "val_perplexity is exp(val_loss)")
ctx.check(all(r["val_targets"] == 2 * 8 * 64 and r["eval_iters"] == 2 for r in ref.values()),
          f"each evaluation counts eval_iters x global batch x seq targets: {[r['val_targets'] for r in ref.values()]}")
ctx.check("validation after step 6: loss" in proc.stderr, "the log shows each evaluation")

# Independently: the step-6 weights through Hugging Face and back, trained for one step on the
# held-out files alone: that step's loss is over the validation's first global batch.
one, _ = ctx.run("ref-one-batch", split + ["training.eval_iters=1", "checkpoint.interval=6"])
hf, weights = os.path.join(ctx.tmp, "step6-hf"), os.path.join(ctx.tmp, "step6")
ctx.cli("convert", "--from", os.path.join(one, "checkpoints", "step-6"), "--to-hf", hf, "--dtype", "fp32")
ctx.cli("convert", "--from-hf", hf, "--to", weights)
again, _ = ctx.run("held-out", base + ["training.eval_interval=0", "training.train_iters=1",
                                       "data.path=" + parts["held-out"], "checkpoint.load=" + weights])
want, got = validations(one)[6]["val_loss"], losses(again)[1]
ctx.check(rel_diff(want, got) <= 1e-5,
          f"val_loss after step 6 ({want:.6f}) is the loss of the step-6 weights, exported and loaded, on the "
          f"held-out files' first batch ({got:.6f})")

# Every layout evaluates alike.
for name, lay in (("pp2-1f1b", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2"]),
                  ("pp2-interleaved", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                                       "parallel.virtual_pipeline_model_parallel_size=2",
                                       "pipeline.schedule=interleaved_1f1b"]),
                  ("pp2-zbv", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                               "pipeline.schedule=zbv"]),
                  ("roundpipe", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                                 "pipeline.schedule=roundpipe"]),
                  ("dp2", ["parallel.world_size=2"]),
                  ("cp2", ["parallel.world_size=2", "parallel.context_parallel_size=2"])):
    got = validations(ctx.run(name, split + lay)[0])
    worst = max((rel_diff(ref[s]["val_loss"], got[s]["val_loss"]) for s in ref if s in got), default=1.0)
    ctx.check(sorted(got) == sorted(ref) and worst <= 1e-5,
              f"{name} evaluates what one rank does (worst {worst:.1e}): "
              f"{[round(got[s]['val_loss'], 5) for s in sorted(got)]}")

resumed_dir, resumed = ctx.run_interrupted("resumed", split, 4)
got = validations(resumed_dir)
ctx.check(resumed and sorted(got) == [3, 4, 6] and all(rel_diff(ref[s]["val_loss"], got[s]["val_loss"]) <= 1e-6
                                                       for s in ref),
          f"a run cut at step 4 (evaluating as it exits) and resumed evaluates as the uninterrupted one: {sorted(got)}")

stream_dir, _ = ctx.run("async", split + ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                                          "pipeline.async=true", "training.lr=3e-3"])
got, trained = validations(stream_dir), losses(stream_dir)
ctx.check(sorted(got) == [3, 6] and sorted(trained) == list(range(1, 7)) and got[6]["val_loss"] < got[3]["val_loss"],
          f"an asynchronous stream evaluates after draining, and the loss falls: "
          f"{[round(got[s]['val_loss'], 4) for s in sorted(got)]}")

moe = validations(ctx.run("moe", split + ["parallel.world_size=2", "model.num_experts=4",
                                          "parallel.expert_model_parallel_size=2", "training.micro_batch_size=2"])[0])
ctx.check(sorted(moe) == [3, 6] and all(math.isfinite(r["val_loss"]) for r in moe.values()),
          f"MoE with expert parallelism evaluates (all-to-alls in the forward): "
          f"{[round(moe[s]['val_loss'], 4) for s in sorted(moe)]}")

tb = {}
for path in glob.glob(os.path.join(split_run, "tensorboard", "events.out.tfevents.*")):
    evs, bad = events(path)
    ctx.check(bad == 0, "TensorBoard records' CRC-32C right")
    for _, step, _, scalars in evs[1:]:
        if "val_loss" in scalars:
            tb[step] = scalars["val_loss"]
ctx.check(sorted(tb) == [3, 6] and all(math.isclose(tb[s], ref[s]["val_loss"], rel_tol=1e-6) for s in tb),
          f"TensorBoard holds val_loss at the evaluated steps: {tb}")

# Refusals, naming the key.
for name, sets, key in (("no-held-out", base, "data.split"),
                        ("bad-split", split[:-1] + ["data.split=80,x"], "data.split"),
                        ("roundpipe-async", split + ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                                                     "pipeline.schedule=roundpipe", "pipeline.async=true"],
                         "training.eval_interval")):
    _, proc = ctx.run(name, sets, expect_status=2)
    ctx.check(key in proc.stderr, f"{name}: refused naming {key}: "
                                  f"{next((l for l in proc.stderr.splitlines() if key in l), '?')[-160:]}")
run_dir, proc = ctx.run("tiny-held-out", base + ["data.split=99.9,0.1"], expect_status=None)
ctx.check(proc.returncode != 0 and "data.split" in proc.stderr and "hold 0 tokens" in proc.stderr,
          f"a held-out part too small for one sample is refused naming data.split (exit {proc.returncode})")
ctx.finish()
