"""LoRA (training.lora_rank, lora_alpha, lora_target_modules) on a converted model:

- a base model (a short full run, exported to Hugging Face and converted back: what a user brings)
  fine-tuned with LoRA starts at the base model's loss (B = 0) and trains;
- only the adapters change: every other tensor of the fine-tuned checkpoint equals the base's bit
  for bit, and only the target layers have adapters;
- the merged export (`rondo convert --to-hf`) is W + (alpha / rank) B A for every adapted weight
  (computed here from the checkpoint's bytes) and the base's own tensor elsewhere; the merged model
  gives the adapted model's loss (one padded document: every step reads the same sample);
- pp=2 (1f1b, zbv, roundpipe's stateless workers) and dp=2 reproduce one rank's LoRA losses
  (1e-5); a run cut and resumed reproduces the uninterrupted one; asynchronous streams (1f1b and
  roundpipe) train their adapters and leave every other weight as initialised;
- LoRA with MoE, Hugging Face's split q/k/v names and an unknown layer are refused
  naming the key."""
import json
import os
import struct
import subprocess
import sys

from rondo_testlib import Context, losses, read_safetensors, rel_diff

ctx = Context()
ALPHA, RANK = 8.0, 4
corpus = os.path.join(ctx.tmp, "one-document.jsonl")
with open(corpus, "w") as fh:
    fh.write(json.dumps({"text": "LoRA trains a low-rank update beside a frozen weight, and merges it after. " * 2})
             + "\n")
MODEL = ["model.family=llama", "model.num_layers=4", "model.hidden_size=64", "model.num_attention_heads=4",
         "model.num_query_groups=2", "model.ffn_hidden_size=128", "model.seq_length=64"]
DATA = ["data.path=" + corpus, "data.pad=true", "training.micro_batch_size=1", "training.global_batch_size=2",
        "training.lr=1e-2", "training.lr_warmup_iters=0", "checkpoint.interval=0", "parallel.world_size=1"]
LORA = [f"training.lora_rank={RANK}", f"training.lora_alpha={ALPHA}", "training.lora_target_modules=qkv,down"]


def floats(entry):
    dtype, shape, raw = entry
    assert dtype == "F32", dtype
    return shape, struct.unpack(f"<{len(raw) // 4}f", raw)


def run_from(weights, name, sets, expect_status=0):
    run_dir = os.path.join(ctx.tmp, name)
    cmd = [ctx.rondo, "run", os.path.join(weights, "config.yaml"), "--run-dir", run_dir, "--worker", ctx.worker]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != expect_status:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise AssertionError(f"{name}: rondo run exited {proc.returncode}, expected {expect_status}")
    return run_dir, proc


# The base model: trained a little, exported and converted back (a rondo weights directory).
trained, _ = ctx.run("base-training", MODEL + DATA + ["training.train_iters=3", "checkpoint.interval=3"])
base = os.path.join(ctx.tmp, "base")
ctx.cli("convert", "--from", trained, "--to-hf", base + "-hf", "--dtype", "fp32")
ctx.cli("convert", "--from-hf", base + "-hf", "--to", base)
base_tensors = read_safetensors(os.path.join(base, "model.safetensors"))

full = losses(run_from(base, "full", DATA + ["training.train_iters=1"])[0])
lora_dir, proc = run_from(base, "lora", DATA + LORA + ["training.train_iters=7", "checkpoint.interval=6"])
lora = losses(lora_dir)
ctx.check(rel_diff(full[1], lora[1]) <= 1e-6,
          f"LoRA starts at the base model's loss (B = 0): {lora[1]:.6f} vs {full[1]:.6f}")
ctx.check(lora[7] < lora[1] - 0.05, f"and trains: {lora[1]:.4f} -> {lora[7]:.4f}")
ctx.check("trained: LoRA's adapters" in proc.stderr, "the log counts the trained parameters apart")

step6 = read_safetensors(os.path.join(lora_dir, "checkpoints", "step-6", "model-pp0-tp0.safetensors"))
adapters = sorted(k for k in step6 if ".lora_" in k)
want = sorted(f"block{l}.{m}.lora_{ab}" for l in range(4) for m in ("attn.qkv", "down") for ab in "ab")
ctx.check(adapters == want, f"adapters on the target layers only ({len(adapters)}: qkv and down of 4 blocks)")
frozen = [k for k in step6 if ".lora_" not in k]
changed = [k for k in frozen if step6[k] != base_tensors.get(k)]
ctx.check(set(frozen) == set(base_tensors) and not changed,
          f"every other tensor ({len(frozen)}) is the base's bit for bit after 6 steps (changed: {changed[:3]})")
ctx.check(all(any(v != 0 for v in floats(step6[k])[1]) for k in adapters if k.endswith("lora_b")),
          "every B has left zero")

# The merged export: W + alpha / rank * B A, row by row against the Hugging Face names.
merged = os.path.join(ctx.tmp, "merged-hf")
ctx.cli("convert", "--from", os.path.join(lora_dir, "checkpoints", "step-6"), "--to-hf", merged, "--dtype", "fp32")
hf = read_safetensors(os.path.join(merged, "model.safetensors"))
base_hf = read_safetensors(os.path.join(base + "-hf", "model.safetensors"))


def expected(layer):
    (rows, cols), w = floats(step6[layer + ".weight"])
    _, a = floats(step6[layer + ".lora_a"])
    _, b = floats(step6[layer + ".lora_b"])
    return [w[i * cols + j] + ALPHA / RANK * sum(b[i * RANK + r] * a[r * cols + j] for r in range(RANK))
            for i in range(rows) for j in range(cols)], cols


worst = 0.0
for l in range(4):
    qkv, cols = expected(f"block{l}.attn.qkv")
    at = 0
    for name in ("q_proj", "k_proj", "v_proj"):
        (rows, _), got = floats(hf[f"model.layers.{l}.self_attn.{name}.weight"])
        worst = max(worst, max(abs(g - e) for g, e in zip(got, qkv[at:at + rows * cols])))
        at += rows * cols
    down, _ = expected(f"block{l}.down")
    worst = max(worst, max(abs(g - e) for g, e in zip(floats(hf[f"model.layers.{l}.mlp.down_proj.weight"])[1], down)))
untouched = [k for k in hf if not any(p in k for p in ("q_proj", "k_proj", "v_proj", "down_proj")) and hf[k] != base_hf[k]]
ctx.check(worst <= 1e-6 and not untouched,
          f"the merged export is W + (alpha/rank) B A on the adapted layers (worst {worst:.1e}) and the base "
          f"elsewhere, bit for bit (differing: {untouched[:3]})")
merged_weights = os.path.join(ctx.tmp, "merged")
ctx.cli("convert", "--from-hf", merged, "--to", merged_weights)
again = losses(run_from(merged_weights, "merged-run", DATA + ["training.train_iters=1"])[0])
ctx.check(rel_diff(again[1], lora[7]) <= 1e-5,
          f"the merged model computes the adapted one's loss: {again[1]:.6f} vs step 7's {lora[7]:.6f}")

# Layouts.
for name, lay in (("pp2-1f1b", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2"]),
                  ("pp2-zbv", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                               "pipeline.schedule=zbv"]),
                  ("roundpipe", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                                 "pipeline.schedule=roundpipe"]),
                  ("dp2", ["parallel.world_size=2"])):
    got = losses(run_from(base, "lora-" + name, DATA + LORA + ["training.train_iters=7"] + lay)[0])
    worst = max(rel_diff(lora[s], got[s]) for s in lora)
    ctx.check(sorted(got) == sorted(lora) and worst <= 1e-5, f"{name} reproduces one rank's LoRA losses "
                                                             f"(worst {worst:.1e})")
cut = os.path.join(ctx.tmp, "lora-cut")
run_from(base, "lora-cut", DATA + LORA + ["training.train_iters=7", "training.exit_interval=4"])
_, proc = run_from(base, "lora-cut", DATA + LORA + ["training.train_iters=7"])
got = losses(cut)
ctx.check("resumed from checkpoint step-4" in proc.stderr and max(rel_diff(lora[s], got[s]) for s in lora) <= 1e-6,
          "a LoRA run cut at step 4 and resumed reproduces the uninterrupted one (adapters and their moments)")
# rondo's own initialisation (no checkpoint.load): a one-step LoRA run's frozen weights.
start, _ = ctx.run("init", MODEL + DATA + LORA + ["training.train_iters=1", "checkpoint.interval=1"])
init = read_safetensors(os.path.join(start, "checkpoints", "step-1", "model-pp0-tp0.safetensors"))
for name, schedule in (("1f1b", "1f1b"), ("roundpipe", "roundpipe")):
    stream_dir, _ = run_from(base, "lora-async-" + name, DATA + LORA + [
        "training.train_iters=7", "parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
        "pipeline.async=true", "pipeline.schedule=" + schedule, "checkpoint.load=", "checkpoint.interval=7"])
    stream = losses(stream_dir)
    shards = {}
    for f in os.listdir(os.path.join(stream_dir, "checkpoints", "step-7")):
        if f.endswith(".safetensors"):
            shards.update(read_safetensors(os.path.join(stream_dir, "checkpoints", "step-7", f)))
    moved = [k for k in shards if ".lora_" not in k and shards[k] != init[k]]
    ctx.check(stream[7] < stream[1] - 0.05 and shards.keys() == init.keys() and not moved,
              f"an asynchronous {name} stream trains its adapters ({stream[1]:.4f} -> {stream[7]:.4f}) and "
              f"leaves every other weight as initialised (moved: {moved[:3]})")

for name, sets, key in (
        ("moe", ["model.num_experts=2", "checkpoint.load="], "training.lora_rank"),
        ("hf-names", ["training.lora_target_modules=q_proj,v_proj"], "training.lora_target_modules"),
        ("unknown", ["training.lora_target_modules=fc"], "training.lora_target_modules")):
    _, proc = run_from(base, "refused-" + name, DATA + LORA + sets, expect_status=2)
    ctx.check(key in proc.stderr, f"{name}: refused naming {key}: "
                                  f"{next((l for l in proc.stderr.splitlines() if key in l), '?')[-150:]}")
ctx.finish()
