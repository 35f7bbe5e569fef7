"""Document-aware packing and chunked long-context training end to end. The corpus: the GPL-3's
paragraphs as JSONL documents (a few to a few hundred tokens each) and the whole GPL-3 as one more
(34 KB), so rows of 128 tokens hold several short documents or one piece of a long one.

- data.pack: attention within documents changes the losses (against unpacked rows);
- data.chunk_size=32 (a quarter of model.seq_length) trains to the unchunked run's losses within
  1e-5 relative for 12 steps, packed and unpacked, K = 1 and 2, equal-token and cost-aware
  boundaries, on one and two data-parallel ranks (the gradient reduction overlapped with the
  backward, which must not take a parameter's gradient as final before the last chunk's
  backward); metrics.jsonl counts the chunks and the recomputed ones (ChunkFlow's rule at pp=1);
- the same on the synthetic lognormal length mix (data.path=lognormal);
- with pipeline parallelism every step runs its own schedule whose microbatches are the step's
  chunks, planned as at one stage (short documents packed, long ones split; the same chunk and
  recompute counts as the one-stage run, step by step): pp=2 with 1f1b and gpipe, K = 1 and 2,
  packed and cost-aware, with full recomputation at pp=2 x dp=2, again within 1e-5 of the
  one-process unchunked run; other schedules are refused naming data.chunk_size;
- interrupted after step 6 and resumed, chunked runs (one stage and pp=2) log the uninterrupted
  run's losses: the sampler and the chunking stay deterministic mid-epoch;
- data.pad, the padded baseline (one document per row from its start): each step counts exactly
  the targets its sampled documents hold (the sampler's draw recomputed here), the same on one
  rank, pp=2 and dp=2; data.pad with data.pack is refused naming data.pad."""
import json
import os

from rondo_testlib import Context, losses, rel_diff

ctx = Context()
TEXT = "/usr/share/common-licenses/GPL-3"  # base-files (Essential): on every Debian system
with open(TEXT, encoding="utf-8") as f:
    text = f.read()
docs = [p.strip() for p in text.split("\n\n") if p.strip()] + [text]
corpus = os.path.join(ctx.tmp, "gpl3-paragraphs.jsonl")
with open(corpus, "w", encoding="utf-8") as f:
    for d in docs:
        f.write(json.dumps({"text": d}) + "\n")

BASE = [
    "model.num_layers=2", "model.hidden_size=64", "model.num_attention_heads=4",
    "model.ffn_hidden_size=128", "model.seq_length=128",
    "training.micro_batch_size=2", "training.global_batch_size=4", "training.train_iters=12",
    "training.lr=1e-3", "training.lr_warmup_iters=0", "training.lr_decay_style=constant",
    "checkpoint.interval=0", f"data.path={corpus}", "parallel.world_size=1",
]


def run(name, sets):
    run_dir, _ = ctx.run(name, BASE + sets)
    got = losses(run_dir)
    ctx.check(sorted(got) == list(range(1, 13)), f"{name}: 12 steps logged")
    return run_dir, got


def worst(ref, got):
    return max(rel_diff(ref[s], got.get(s, float("nan"))) for s in ref)


def grad_norms(run_dir):
    """Per step: the global gradient norm, which a wrong gradient moves sooner than the loss."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return {r["step"]: r["grad_norm"] for r in map(json.loads, f)}


plain_dir, plain = run("plain", [])
packed_dir, packed = run("packed", ["data.pack=true"])
norms = {"plain": grad_norms(plain_dir), "packed": grad_norms(packed_dir)}
ctx.check(worst(plain, packed) > 1e-3,
          f"packing documents changes the losses (largest relative change {worst(plain, packed):.2e})")

chunk_counts = {}  # per one-stage run: each step's (chunks, recomputed)
for name, ref, sets in (
    ("packed-chunk32-k1", packed, ["data.pack=true", "data.chunk_size=32", "data.chunks_in_memory=1"]),
    ("packed-chunk32-k2-cost", packed,
     ["data.pack=true", "data.chunk_size=32", "data.chunks_in_memory=2", "data.chunk_balance=cost"]),
    ("plain-chunk32-k1", plain, ["data.chunk_size=32", "data.chunks_in_memory=1"]),
    # Full recomputation: F runs the chunks without a graph, B runs them again with one.
    ("plain-chunk32-k1-full", plain, ["data.chunk_size=32", "data.chunks_in_memory=1",
                                      "model.recompute_granularity=full"]),
    ("packed-chunk32-dp2", packed, ["data.pack=true", "data.chunk_size=32", "parallel.world_size=2"]),
):
    run_dir, got = run(name, sets)
    ref_norms = norms["packed" if ref is packed else "plain"]
    ctx.check(worst(ref, got) <= 1e-5 and worst(ref_norms, grad_norms(run_dir)) <= 1e-5,
              f"{name} reproduces the unchunked run's losses and gradient norms within 1e-5 "
              f"(worst {worst(ref, got):.2e}, {worst(ref_norms, grad_norms(run_dir)):.2e})")
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    k = 1 if "k1" in name else 2
    # ChunkFlow's rule: a long sequence of N chunks recomputes its first N - K, packed short ones
    # never. Unpacked, each of a step's 4 rows is one sequence of 4 chunks or more: chunks - 4K.
    # Packed, fewer than the old rule's all-but-the-microbatch's-last-K (chunks - 2K).
    microbatches, rows_per_step = 2, 4
    if name.startswith("plain"):
        ok = all(r["chunks_recomputed"] == r["chunks"] - k * rows_per_step for r in rows)
    else:
        ok = all(0 <= r["chunks_recomputed"] < r["chunks"] - k * microbatches for r in rows)
    ok = ok and all(r["chunks"] >= 8 and 0 < r["longest_sequence"] <= 128 for r in rows)
    chunk_counts[name] = [(r["chunks"], r["chunks_recomputed"]) for r in rows]
    ctx.check(ok, f"{name}: every step reports its chunks and the recomputed ones (last: {rows[-1]['chunks']:.0f} "
                  f"chunks, {rows[-1]['chunks_recomputed']:.0f} recomputed, longest {rows[-1]['longest_sequence']:.0f})")

# The synthetic lognormal mix (data.path=lognormal), packed: chunked equals unchunked there too.
mix = ["data.path=lognormal", "data.lognormal_mu=5", "data.lognormal_sigma=1.5", "data.lognormal_documents=400",
       "data.pack=true"]
_, mixed = run("lognormal-packed", mix)
mixed_dir, mixed_chunked = run("lognormal-packed-chunk32", mix + ["data.chunk_size=32"])
ctx.check(worst(mixed, mixed_chunked) <= 1e-5,
          f"lognormal mix: chunked reproduces unchunked within 1e-5 (worst {worst(mixed, mixed_chunked):.2e})")
with open(os.path.join(mixed_dir, "logs", "rank-0.log")) as f:
    ctx.check("data lognormal (400 documents, mu 5, sigma 1.5, seed 1" in f.read(), "the worker built the lognormal mix")

# Pipeline parallelism: every step runs its own schedule over its chunks, planned as at one stage
# (the step's rows together, short documents packed, long ones split): the same chunks and the
# same recomputed ones as the one-stage twin run, step by step.
PP2 = ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2"]
chunked_runs = {}
for name, ref, sets, twin in (
    ("packed-pp2-1f1b-chunk32-k1", packed,
     PP2 + ["pipeline.schedule=1f1b", "data.pack=true", "data.chunk_size=32", "data.chunks_in_memory=1"],
     "packed-chunk32-k1"),
    ("packed-pp2-gpipe-chunk32-k2-cost", packed,
     PP2 + ["pipeline.schedule=gpipe", "data.pack=true", "data.chunk_size=32", "data.chunks_in_memory=2",
            "data.chunk_balance=cost"], "packed-chunk32-k2-cost"),
    ("plain-pp2-dp2-1f1b-chunk32-full", plain,
     ["parallel.world_size=4", "parallel.pipeline_model_parallel_size=2", "pipeline.schedule=1f1b",
      "data.chunk_size=32", "model.recompute_granularity=full"], None),
):
    run_dir, got = run(name, sets)
    chunked_runs[name] = (sets, got)
    ref_norms = norms["packed" if ref is packed else "plain"]
    ctx.check(worst(ref, got) <= 1e-5 and worst(ref_norms, grad_norms(run_dir)) <= 1e-5,
              f"{name} reproduces the one-process unchunked run's losses and gradient norms within 1e-5 "
              f"(worst {worst(ref, got):.2e}, {worst(ref_norms, grad_norms(run_dir)):.2e})")
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    counts = [(r["chunks"], r["chunks_recomputed"]) for r in rows]
    if twin:
        ok = counts == chunk_counts[twin]
        what = f"the chunks and recomputed chunks of {twin} at every step"
    else:  # full recomputation: every chunk's forward runs twice, 4 rows of 4 chunks a step
        ok = all(c == (16, 16) for c in counts)
        what = "16 chunks a step, every one recomputed"
    ctx.check(ok, f"{name}: {what} (last: {counts[-1][0]:.0f} chunks, {counts[-1][1]:.0f} recomputed)")

_, proc = ctx.run("chunked-pp2-zb_h1", BASE + PP2 + ["data.chunk_size=32", "pipeline.schedule=zb_h1"],
                  expect_status=2)
ctx.check("data.chunk_size" in proc.stderr and "gpipe or 1f1b" in proc.stderr,
          "chunking with zb_h1 is refused naming data.chunk_size: " + proc.stderr.strip().splitlines()[-1])

# Resume mid-epoch: stop after step 6 (checkpoint), run again, compare steps 7-12.
for name, sets in (("resume-packed-chunk32", ["data.pack=true", "data.chunk_size=32", "data.chunks_in_memory=1"]),
                   ("resume-packed-pp2-chunk32", chunked_runs["packed-pp2-1f1b-chunk32-k1"][0])):
    ref = run(name + "-whole", sets)[1] if name == "resume-packed-chunk32" else chunked_runs[
        "packed-pp2-1f1b-chunk32-k1"][1]
    cut, _ = ctx.run(name, BASE + sets + ["training.exit_interval=6"])
    ctx.check(sorted(losses(cut)) == list(range(1, 7)), f"{name}: stopped after step 6")
    _, proc = ctx.run(name, BASE + sets)
    got = losses(cut)
    diff = max(rel_diff(ref[s], got.get(s, float("nan"))) for s in range(7, 13))
    ctx.check("resumed from checkpoint step-6" in proc.stderr and diff <= 1e-6,
              f"{name}: resumed at step 6, steps 7-12 match the uninterrupted run within 1e-6 (worst {diff:.2e})")
# The padded baseline: sample j of step t is document splitmix64(splitmix64(seed) ^ (t*B + j)) mod
# (documents of 2 tokens or more); its targets are its first min(length, seq + 1) - 1 tokens' successors.
MASK = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


lengths = [n for n in (len(d.encode("utf-8")) for d in docs) if n >= 2]
want = {t + 1: sum(min(lengths[splitmix64(splitmix64(7) ^ (t * 4 + j)) % len(lengths)], 129) - 1 for j in range(4))
        for t in range(12)}
padded = {}
for name, sets in (("padded", ["parallel.world_size=1"]), ("padded-pp2", PP2),
                   ("padded-dp2", ["parallel.world_size=2"])):
    run_dir, padded[name] = run(name, sets + ["data.pad=true", "training.seed=7"])
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        got_targets = {r["step"]: r["targets"] for r in map(json.loads, f)}
    ctx.check(got_targets == want, f"{name}: each step counts its documents' targets ({list(got_targets.values())[:4]}"
                                   f" of {4 * 128} positions)")
for name in ("padded-pp2", "padded-dp2"):
    ctx.check(worst(padded["padded"], padded[name]) <= 1e-5,
              f"{name} trains to the one-rank padded losses (worst {worst(padded['padded'], padded[name]):.2e})")
_, proc = ctx.run("padded-packed", BASE + ["data.pad=true", "data.pack=true"], expect_status=2)
ctx.check("data.pad" in proc.stderr, "data.pad with data.pack is refused: " + proc.stderr.strip().splitlines()[-1])
ctx.finish()
