#!/usr/bin/env python3
"""Fine-tuning a converted model: LoRA against full training, side by side, alternating runs.

  bench/lora_bench.py          # ROUNDS (default 2) rounds; LORA_RANKS=16 (comma separated)

The base model is a Llama of 8 layers, hidden 512, 8 heads over 2 key/value groups, SwiGLU 1408,
vocabulary 8192, seq 256 (31M parameters), made the way a user gets one: a short rondo run,
exported to Hugging Face (`rondo convert --to-hf`) and converted back (`--from-hf`). Each variant
then trains from those weights (`checkpoint.load`) on the built-in text, 30 steps of 8 x 256
tokens on 1 rank and at pp=2 (1f1b): full training (AdamW over every weight) and LoRA on every
block's linear layers (`training.lora_target_modules=all-linear`). Figures: tokens/s and the step's
forward/backward/optimizer time (medians over the steps after 5 of warm-up, then over rounds), and
peak RSS of the largest rank (`max_rss_mb`, the last step's: it only grows). The environment that
decides them (BLAS, allocator, threads) is printed first.
"""
import os
import statistics
import subprocess
import tempfile

from train_bench import RONDO, median_of, model_sets, rondo_run

BASE = {"layers": 8, "hidden": 512, "heads": 8, "seq": 256, "family": "llama", "groups": 2, "ffn": 1408,
        "vocab": 8192}


def converted_base(tmp):
    """A rondo weights directory made as a user makes one: trained briefly, out to HF and back."""
    run_dir, hf, weights = (os.path.join(tmp, k) for k in ("base-run", "base-hf", "base"))
    cmd = [RONDO, "run", "--run-dir", run_dir, "--set", "parallel.world_size=1", "--set", "training.train_iters=2",
           "--set", "checkpoint.interval=2", "--set", "training.lr_warmup_iters=0"]
    for s in model_sets(BASE):
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, capture_output=True)
    subprocess.run([RONDO, "convert", "--from", run_dir, "--to-hf", hf], check=True, capture_output=True)
    subprocess.run([RONDO, "convert", "--from-hf", hf, "--to", weights], check=True, capture_output=True)
    return weights


def main():
    rounds = int(os.environ.get("ROUNDS", "2"))
    ranks = [int(r) for r in os.environ.get("LORA_RANKS", "16").split(",")]
    tmp = tempfile.mkdtemp(prefix="rondo-lora-bench-")
    weights = converted_base(tmp)
    common = model_sets(BASE) + [f"checkpoint.load={weights}", "training.lr=1e-4"]
    layouts = {"1 rank": ["parallel.world_size=1"],
               "pp=2 (1f1b)": ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2"]}
    variants = {"full": []}
    for r in ranks:
        variants[f"LoRA r={r}"] = [f"training.lora_rank={r}", f"training.lora_alpha={2 * r}",
                                   "training.lora_target_modules=all-linear"]
    for layout, lay in layouts.items():
        runs = {v: [] for v in variants}
        for _ in range(rounds):
            for v, sets in variants.items():
                runs[v].append(rondo_run(tmp, "lora", common + lay + sets, steps=30, warmup=5))
        full = runs["full"]
        for v, r in runs.items():
            print(f"lora: {layout}, {v}: {median_of(r, 'tokens_per_s'):.0f} tokens/s "
                  f"({median_of(r, 'tokens_per_s') / median_of(full, 'tokens_per_s'):.2f}x full), "
                  f"forward {median_of(r, 'forward_s') * 1e3:.0f} ms, backward {median_of(r, 'backward_s') * 1e3:.0f} ms, "
                  f"optimizer {median_of(r, 'optimizer_s') * 1e3:.1f} ms, peak RSS {median_of(r, 'max_rss_mb'):.0f} MB "
                  f"({median_of(r, 'max_rss_mb') - median_of(full, 'max_rss_mb'):+.0f} MB), "
                  f"loss {statistics.median(x['loss'] for x in r):.3f}", flush=True)
    subprocess.run(["rm", "-rf", tmp], check=True)


if __name__ == "__main__":
    main()
