#!/usr/bin/env python3
"""Side-by-side training throughput benchmarks of rondo, in one session, alternating runs.

  bench/train_bench.py recorder   # step time with the timing recorder on vs off
  bench/train_bench.py dp         # dp=2 vs dp=1 tokens/s, same model and global batch
  bench/train_bench.py ddp        # rondo vs PyTorch DDP over gloo (bench/ddp_reference.py), 1 and 2 ranks

Each case runs `rounds` times, alternating its variants; a run's figure is the median over its
steps after the first 5 (warm-up); the reported figure is the median over rounds.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("RONDO_BUILD_DIR", os.path.join(ROOT, "build"))
RONDO = os.path.join(BUILD, "orchestrator", "rondo")
# The example model: 4 layers, hidden 128, 4 heads, ffn 512, vocab 256, seq 128.
MODEL = ["model.num_layers=4", "model.hidden_size=128", "model.num_attention_heads=4",
         "model.ffn_hidden_size=512", "model.vocab_size=256", "model.seq_length=128",
         "training.micro_batch_size=4", "training.global_batch_size=8", "checkpoint.interval=0",
         "training.lr_warmup_iters=0", "training.lr_decay_style=constant", "training.log_interval=1000"]
STEPS = 60
WARMUP = 5


def rondo_run(tmp, name, sets):
    run_dir = os.path.join(tmp, name)
    cmd = [RONDO, "run", "--run-dir", run_dir, "--set", f"training.train_iters={STEPS}"]
    for s in MODEL + sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, capture_output=True)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f][WARMUP:]
    subprocess.run(["rm", "-rf", run_dir], check=True)
    return statistics.median(r["step_time_s"] for r in rows), statistics.median(r["tokens_per_s"] for r in rows)


def ddp_run(ranks):
    # Debian's interpreter: the one python3-torch is installed for.
    out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench", "ddp_reference.py"), "--ranks", str(ranks),
                          "--steps", str(STEPS), "--warmup", str(WARMUP)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["tokens_per_s"]


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    rounds = int(os.environ.get("ROUNDS", "3"))
    tmp = tempfile.mkdtemp(prefix="rondo-bench-")
    if what in ("recorder", "all"):
        on, off = [], []
        for _ in range(rounds):
            on.append(rondo_run(tmp, "on", ["parallel.world_size=2", "comms.timing_recorder=true"])[0])
            off.append(rondo_run(tmp, "off", ["parallel.world_size=2", "comms.timing_recorder=false"])[0])
        a, b = statistics.median(on), statistics.median(off)
        print(f"recorder: step time on {a*1e3:.2f} ms, off {b*1e3:.2f} ms, on/off {a/b:.4f} ({(a/b-1)*100:+.2f}%)")
    if what in ("dp", "all"):
        one, two = [], []
        for _ in range(rounds):
            one.append(rondo_run(tmp, "dp1", ["parallel.world_size=1"])[1])
            two.append(rondo_run(tmp, "dp2", ["parallel.world_size=2"])[1])
        a, b = statistics.median(one), statistics.median(two)
        print(f"dp: tokens/s dp=1 {a:.0f}, dp=2 {b:.0f}, dp2/dp1 {b/a:.2f}")
    if what in ("ddp", "all"):
        for ranks in (1, 2):
            ours, theirs = [], []
            for _ in range(rounds):
                ours.append(rondo_run(tmp, f"r{ranks}", [f"parallel.world_size={ranks}"])[1])
                theirs.append(ddp_run(ranks))
            a, b = statistics.median(ours), statistics.median(theirs)
            print(f"ddp: {ranks} rank(s): rondo {a:.0f} tokens/s, PyTorch DDP/gloo {b:.0f} tokens/s, rondo/DDP {a/b:.2f}")


if __name__ == "__main__":
    main()
