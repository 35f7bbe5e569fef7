"""Tied embeddings (model.tie_embeddings: the LM head computes with the token embedding's matrix):

- pp=2 (1f1b, interleaved, zbv -- where rank 0 holds both ends, also with dp=2 and the gradient
  reduction overlapped in tiny buckets) and dp=2 reproduce one rank's losses (1e-5); untied, the
  same run trains to other losses;
- at pp=2 the last stage's copy of the matrix equals the embedding bit for bit after every step's
  update (their gradients summed), and a one-stage checkpoint holds the matrix once;
- exported to Hugging Face, the model has no lm_head.weight and says tie_word_embeddings; converted
  back it is tied again and exports the same bytes; trained from those weights at pp=2 its first
  loss is the original's next (one padded document: every step reads the same sample);
- LoRA on a tied model (the matrix frozen everywhere) at pp=2 reproduces one rank;
- tied embeddings with pipeline.async, roundpipe or a LoRA adapter on lm_head are refused naming
  the key."""
import json
import os
import subprocess
import sys

from rondo_testlib import Context, losses, read_safetensors, rel_diff

ctx = Context()
corpus = os.path.join(ctx.tmp, "one-document.jsonl")
with open(corpus, "w") as fh:
    fh.write(json.dumps({"text": "The head reads the embedding's matrix; its gradient comes back to it. " * 2})
             + "\n")
BASE = ["model.family=llama", "model.num_layers=4", "model.hidden_size=64", "model.num_attention_heads=4",
        "model.num_query_groups=2", "model.ffn_hidden_size=128", "model.seq_length=64", "model.tie_embeddings=true",
        "data.path=" + corpus, "data.pad=true", "training.micro_batch_size=1", "training.global_batch_size=2",
        "training.lr=3e-3", "training.lr_warmup_iters=0", "training.train_iters=5", "checkpoint.interval=0",
        "parallel.world_size=1"]
PP2 = ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2"]

ref_dir, _ = ctx.run("pp1", BASE + ["checkpoint.interval=4"])
ref = losses(ref_dir)
ctx.check(ref[5] < ref[1], f"a tied model trains: {ref[1]:.4f} -> {ref[5]:.4f}")
untied = losses(ctx.run("untied", BASE + ["model.tie_embeddings=false"])[0])
ctx.check(rel_diff(untied[2], ref[2]) > 1e-4, f"untied, the same run trains otherwise ({untied[2]:.5f} vs {ref[2]:.5f})")
for name, lay in (("pp2-1f1b", PP2 + ["checkpoint.interval=5"]),
                  ("pp2-interleaved", PP2 + ["parallel.virtual_pipeline_model_parallel_size=2",
                                             "pipeline.schedule=interleaved_1f1b"]),
                  ("pp2-zbv", PP2 + ["pipeline.schedule=zbv"]),
                  # The matrix's gradient completes in stage 0's backward and the head's W, its
                  # bucket in flight meanwhile (tiny buckets); every sample is the one document, so
                  # the larger batch trains alike.
                  ("pp2-zbv-dp2", ["parallel.world_size=4", "parallel.pipeline_model_parallel_size=2",
                                   "pipeline.schedule=zbv", "training.global_batch_size=4",
                                   "comms.bucket_size_mb=0.01"]),
                  ("dp2", ["parallel.world_size=2"])):
    run_dir, _ = ctx.run(name, BASE + lay)
    got = losses(run_dir)
    worst = max(rel_diff(ref[s], got[s]) for s in ref)
    ctx.check(sorted(got) == sorted(ref) and worst <= 1e-5, f"{name} reproduces one rank's losses (worst {worst:.1e})")
    if name == "pp2-1f1b":
        step = os.path.join(run_dir, "checkpoints", "step-5")
        first = read_safetensors(os.path.join(step, "model-pp0-tp0.safetensors"))
        last = read_safetensors(os.path.join(step, "model-pp1-tp0.safetensors"))
        ctx.check("lm_head.weight" not in first and "token_embedding.weight" not in last
                  and first["token_embedding.weight"] == last["lm_head.weight"],
                  "after 5 steps the last stage's copy equals the embedding bit for bit")
one_stage = read_safetensors(os.path.join(ref_dir, "checkpoints", "step-4", "model-pp0-tp0.safetensors"))
ctx.check("lm_head.weight" not in one_stage and "token_embedding.weight" in one_stage,
          "a one-stage checkpoint holds the matrix once")

hf, weights, again = (os.path.join(ctx.tmp, k) for k in ("hf", "weights", "hf-again"))
ctx.cli("convert", "--from", os.path.join(ref_dir, "checkpoints", "step-4"), "--to-hf", hf)
exported = read_safetensors(os.path.join(hf, "model.safetensors"))
config = json.load(open(os.path.join(hf, "config.json")))
ctx.check("lm_head.weight" not in exported and config["tie_word_embeddings"] is True,
          "the export has no lm_head.weight and says tie_word_embeddings")
ctx.cli("convert", "--from-hf", hf, "--to", weights)
ctx.check("tie_embeddings: true" in open(os.path.join(weights, "config.yaml")).read(), "converted back, it is tied")
ctx.cli("convert", "--from", weights, "--to-hf", again)
ctx.check(read_safetensors(os.path.join(again, "model.safetensors")) == exported, "and exports the same bytes")
run_dir = os.path.join(ctx.tmp, "from-hf")
cmd = [ctx.rondo, "run", os.path.join(weights, "config.yaml"), "--run-dir", run_dir, "--worker", ctx.worker]
for s in BASE[8:] + PP2 + ["training.train_iters=1"]:
    cmd += ["--set", s]
proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
if proc.returncode != 0:
    sys.stderr.write(proc.stdout + proc.stderr)
got = losses(run_dir) if proc.returncode == 0 else {}
ctx.check(1 in got and rel_diff(got[1], ref[5]) <= 1e-5,
          f"from those weights at pp=2 the first loss is the original's step 5 ({got.get(1, float('nan')):.6f} vs "
          f"{ref[5]:.6f})")

lora = losses(ctx.run("lora-pp2", BASE + PP2 + ["training.lora_rank=4"])[0])
lora_ref = losses(ctx.run("lora-pp1", BASE + ["training.lora_rank=4"])[0])
ctx.check(max(rel_diff(lora[s], lora_ref[s]) for s in lora_ref) <= 1e-5 and lora[5] < lora[1],
          f"LoRA on a tied model (the matrix frozen on both ranks) at pp=2 reproduces one rank: "
          f"{lora[1]:.4f} -> {lora[5]:.4f}")

for name, sets in (("async", PP2 + ["pipeline.async=true"]), ("roundpipe", PP2 + ["pipeline.schedule=roundpipe"]),
                   ("lora-head", ["training.lora_rank=4", "training.lora_target_modules=qkv,lm_head"])):
    _, proc = ctx.run("refused-" + name, BASE + sets, expect_status=2)
    ctx.check("model.tie_embeddings" in proc.stderr, f"{name}: refused naming model.tie_embeddings")
ctx.finish()
