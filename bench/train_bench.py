#!/usr/bin/env python3
"""Side-by-side training throughput benchmarks of rondo, in one session, alternating runs.

  bench/train_bench.py ddp         # rondo vs PyTorch DDP over gloo (bench/ddp_reference.py), 1 and 2 ranks
  bench/train_bench.py ddp-large   # the same on a compute-bound model (8 layers, hidden 512, 8 heads, seq 256)
  bench/train_bench.py llama       # a Llama (GQA, rotary, SwiGLU) against the same Llama in PyTorch DDP
  bench/train_bench.py overlap     # gradient reduction overlapped or not, with and without a slow (emulated) link
  bench/train_bench.py overlap-tcp # the same over real TCP between two network namespaces, with and without a
                                   # tbf-throttled 1 Gbit/s link (root; scripts/netns-hosts)
  bench/train_bench.py allocator   # malloc policies and preloaded allocators: tokens/s, system-time share, faults
  bench/train_bench.py recorder    # step time with the timing recorder on vs off: paired whole runs, and paired
                                   # blocks of one run (comms.timing_recorder_blocks), medians with 95% intervals
  bench/train_bench.py dp          # dp=2 vs dp=1 tokens/s, same model and global batch
  bench/train_bench.py pipeline    # pp=2 schedules on real compute: tokens/s, bubble measured vs predicted
  bench/train_bench.py heavy-head  # a model whose LM head outweighs its blocks: roundpipe vs 1f1b at pp=2, and
                                   # under a memory cap that 1f1b cannot meet
  bench/train_bench.py chunked     # long sequences whole or in chunks (data.chunk_size): peak RSS and tokens/s by
                                   # sequence length; the Debian copyright corpus padded, packed, chunked
  bench/train_bench.py chunked-pipeline  # the same at pp=2 (1f1b): chunks as the schedule's microbatches
  bench/train_bench.py chunkflow   # ChunkFlow's memory/recompute trade-off on the lognormal mix, pp=1 and pp=2:
                                   # padded, packed whole, packed in chunks with K = 1, 2, 4
  bench/train_bench.py async       # 1f1b sync vs async (PipeDream-2BW) at pp=2 and 4: step time, bubble
  bench/train_bench.py context     # long sequences on 2 ranks: data parallel (a row each) vs context parallel
                                   # (both rows split between the ranks, ring attention): tokens/s, peak RSS
  bench/train_bench.py hdp         # HDP on 2 and 4 ranks, mixed lengths: the rondo, megatron and static policies on the
                                   # same batches (tokens/s, busy max/mean measured and planned), and the same at
                                   # 16 ranks with emulated compute; 4 and 16 also as pipelines of 2 stages
                                   # (HDP_CASES=2,4,4pp2,16,16pp2: which cases)
  bench/train_bench.py moe-partition  # MoE at ep=2 with the gradient reduction overlapped: FSMoE's gradient
                                   # partitioning (moe.gradient_partitioning) on and off, with and without a slow
                                   # (emulated) link: step time, exposed allreduce, buckets done inside the backward
  RONDO_BASELINE_BUILD_DIR=DIR bench/train_bench.py versus
                                   # this build against another commit's build in DIR, alternated run by run:
                                   # ddp's 1 and 2 ranks and every pipeline schedule, tokens/s and the ratio
                                   # (VERSUS_CASES=roundpipe,ddp: the cases whose names hold one of these)

Each case runs `ROUNDS` times (default 3), alternating its variants; a run's figure is the median
over its steps after the warm-up; the reported figure is the median over rounds. Before the
figures it prints what decides them: the BLAS and allocator libraries each side loaded, thread
counts, allocator settings (rondo's RUN_DIR/runtime.json, the reference's own report).
"""
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("RONDO_BUILD_DIR", os.path.join(ROOT, "build"))
RONDO = os.path.join(BUILD, "orchestrator", "rondo")
COMMON = ["training.micro_batch_size=4", "training.global_batch_size=8", "checkpoint.interval=0",
          "training.lr_warmup_iters=0", "training.lr_decay_style=constant", "training.log_interval=1000"]
# The demo model: 4 layers, hidden 128, 4 heads, ffn 512, vocab 256, seq 128.
SMALL = {"layers": 4, "hidden": 128, "heads": 4, "seq": 128}
# Compute-bound: 8 layers, hidden 512, 8 heads, seq 256 (ffn 2048).
LARGE = {"layers": 8, "hidden": 512, "heads": 8, "seq": 256}
# A Llama (bench/families_bench.sh's shape): 4 layers, hidden 256, 8 heads over 2 key/value groups,
# SwiGLU 688, seq 256.
LLAMA = {"layers": 4, "hidden": 256, "heads": 8, "seq": 256, "family": "llama", "groups": 2, "ffn": 688}
LIB = "/usr/lib/x86_64-linux-gnu/"
PRELOADS = {"jemalloc": LIB + "libjemalloc.so.2", "mimalloc": LIB + "libmimalloc.so.2",
            "tcmalloc": LIB + "libtcmalloc.so.4"}
seen_environments = set()


def model_sets(m):
    sets = [f"model.num_layers={m['layers']}", f"model.hidden_size={m['hidden']}",
            f"model.num_attention_heads={m['heads']}", f"model.ffn_hidden_size={m.get('ffn', 4 * m['hidden'])}",
            f"model.vocab_size={m.get('vocab', 256)}", f"model.seq_length={m['seq']}"]
    if m.get("family", "gpt") != "gpt":
        sets += [f"model.family={m['family']}", f"model.num_query_groups={m['groups']}"]
    return sets


def show_environment(side, env):
    """Prints a side's runtime environment the first time it is seen."""
    key = side + json.dumps(env, sort_keys=True)
    if key in seen_environments:
        return
    seen_environments.add(key)
    blas = ", ".join(os.path.basename(b) for b in env["blas_libraries"]) or "none found"
    if env.get("openblas_core"):
        blas += f" (OpenBLAS core {env['openblas_core']})"
    extra = "".join(f", {k}={v}" for k, v in sorted(env["environment"].items()))
    preload = "".join(f" + {os.path.basename(a)}" for a in env["preloaded_allocators"])
    print(f"  [{side}] torch {env['torch_version']}; blas: {blas}; threads: {env['intra_op_threads']} intra-op, "
          f"{env['inter_op_threads']} inter-op; allocator: {env['malloc_policy']}{preload}; "
          f"kernels: {env['cpu_kernels']}{extra}", flush=True)


def rondo_rows(tmp, name, sets, steps=60, warmup=5, env=None, rondo=RONDO):
    """The metrics rows of one `rondo run` after warm-up (`rondo`: the coordinator of a build; it
    launches the worker beside it)."""
    run_dir = os.path.join(tmp, name)
    cmd = [rondo, "run", "--run-dir", run_dir, "--set", f"training.train_iters={steps}"]
    for s in COMMON + sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, capture_output=True, env=dict(os.environ, **(env or {})))
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f][warmup:]
    with open(os.path.join(run_dir, "runtime.json")) as f:
        show_environment("rondo", json.load(f))
    subprocess.run(["rm", "-rf", run_dir], check=True)
    return rows


def rondo_run(tmp, name, sets, steps=60, warmup=5, env=None, rondo=RONDO):
    """Median figures of one `rondo run` over its steps after warm-up."""
    rows = rondo_rows(tmp, name, sets, steps, warmup, env, rondo)
    out = {k: statistics.median(r[k] for r in rows) for k in rows[0] if isinstance(rows[0][k], (int, float))}
    if "targets" in rows[0]:
        # The tokens the loss really trains on (padding and document crossings left out), per second.
        out["targets_per_s"] = statistics.median(r["targets"] / r["step_time_s"] for r in rows)
    cpu = sum(r["cpu_user_s"] + r["cpu_sys_s"] for r in rows)
    out["sys_share"] = sum(r["cpu_sys_s"] for r in rows) / cpu if cpu > 0 else 0.0
    return out


def ddp_run(ranks, model, steps=60, warmup=5):
    # Debian's interpreter: the one python3-torch is installed for.
    cmd = ["/usr/bin/python3", os.path.join(ROOT, "bench", "ddp_reference.py"), "--ranks", str(ranks),
           "--steps", str(steps), "--warmup", str(warmup)]
    for k in ("layers", "hidden", "heads", "seq", "family", "groups", "ffn"):
        if k in model:
            cmd += [f"--{k}", str(model[k])]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    show_environment("PyTorch DDP", result["runtime"])
    return result["tokens_per_s"]


def overlap_report(name, runs):
    on, off = runs["on"], runs["off"]
    print(f"overlap ({name}): step {median_of(on, 'step_time_s') * 1e3:.1f} ms on vs "
          f"{median_of(off, 'step_time_s') * 1e3:.1f} ms off; exposed allreduce "
          f"{median_of(on, 'allreduce_s') * 1e3:.2f} ms on vs {median_of(off, 'allreduce_s') * 1e3:.2f} ms off; "
          f"backward {median_of(on, 'backward_s') * 1e3:.1f} vs {median_of(off, 'backward_s') * 1e3:.1f} ms; "
          f"buckets done inside the backward {median_of(on, 'grad_buckets_done_in_backward'):.0f} "
          f"of {median_of(on, 'grad_buckets'):.0f}", flush=True)


def overlap_runs(tmp, rounds, sets):
    runs = {"on": [], "off": []}
    for _ in range(rounds):
        for mode in ("on", "off"):
            runs[mode].append(rondo_run(tmp, f"overlap-{mode}", sets + [
                "parallel.world_size=2", "comms.bucket_size_mb=0.25",
                f"comms.overlap_grad_reduce={'true' if mode == 'on' else 'false'}"]))
    return runs


def median_of(rounds, key):
    return statistics.median(r[key] for r in rounds)


def compare_ddp(tmp, rounds, model, steps, warmup, label):
    """rondo (its fused GELU/softmax kernels, and ATen's) against PyTorch DDP, the three alternated."""
    for ranks in (1, 2):
        fused, aten, theirs = [], [], []
        base = [f"parallel.world_size={ranks}"] + model_sets(model)
        for _ in range(rounds):
            fused.append(rondo_run(tmp, f"r{ranks}", base + ["training.cpu_kernels=fused"], steps,
                                   warmup)["tokens_per_s"])
            aten.append(rondo_run(tmp, f"r{ranks}", base + ["training.cpu_kernels=aten"], steps,
                                  warmup)["tokens_per_s"])
            theirs.append(ddp_run(ranks, model, steps, warmup))
        a, c, b = statistics.median(fused), statistics.median(aten), statistics.median(theirs)
        print(f"{label}: {ranks} rank(s): rondo {a:.0f} tokens/s (on ATen's kernels {c:.0f}), PyTorch DDP/gloo "
              f"{b:.0f} tokens/s, rondo/DDP {a / b:.2f} (on ATen's kernels {c / b:.2f})", flush=True)


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    rounds = int(os.environ.get("ROUNDS", "3"))
    tmp = tempfile.mkdtemp(prefix="rondo-bench-")
    small = model_sets(SMALL)
    if what in ("ddp", "all"):
        compare_ddp(tmp, rounds, SMALL, 60, 5, "ddp")
    if what in ("ddp-large", "all"):
        compare_ddp(tmp, rounds, LARGE, 10, 3, "ddp-large")
    if what in ("llama", "all"):
        compare_ddp(tmp, rounds, LLAMA, 30, 5, "llama")
    if what in ("overlap", "all"):
        # 0.2 GB/s: the model's 3.5 MB of gradients take ~17 ms per step, about its backward time.
        for link in ("0", "0.2"):
            name = "no link emulation" if link == "0" else f"emulated {link} GB/s link"
            overlap_report(name, overlap_runs(tmp, rounds, small + [f"comms.emulated_link_gbps={link}"]))
    if what in ("overlap-tcp", "all"):
        if os.geteuid() != 0:
            print("overlap-tcp: skipped (network namespaces need root)")
        else:
            hosts = os.path.join(tmp, "hosts")
            script = os.path.join(ROOT, "scripts", "netns-hosts")
            for rate in ("", "1gbit"):
                subprocess.run([script, "up", hosts, "2"] + ([rate] if rate else []), check=True)
                try:
                    launch = [f"launch.{key}={open(os.path.join(hosts, key)).read().strip()}"
                              for key in ("mpirun_args", "control_address")]
                    name = f"TCP between namespaces{', tbf ' + rate if rate else ', unthrottled'}"
                    overlap_report(name, overlap_runs(tmp, rounds, small + launch))
                finally:
                    subprocess.run([script, "down", hosts], check=True)
    if what in ("allocator", "all"):
        variants = {"caching (rondo's default)": ([], None), "system (glibc defaults)": (["training.malloc_policy=system"], None)}
        for name, path in PRELOADS.items():
            if os.path.exists(path):
                variants[f"system + LD_PRELOAD {name}"] = (["training.malloc_policy=system"], {"LD_PRELOAD": path})
        for ranks in (1, 2):
            runs = {v: [] for v in variants}
            for _ in range(rounds):
                for v, (sets, env) in variants.items():
                    runs[v].append(rondo_run(tmp, "alloc", small + [f"parallel.world_size={ranks}"] + sets, env=env))
            for v in variants:
                r = runs[v]
                print(f"allocator: {ranks} rank(s), {v}: {median_of(r, 'tokens_per_s'):.0f} tokens/s, system time "
                      f"{median_of(r, 'sys_share') * 100:.1f}% of CPU, {median_of(r, 'page_faults'):.0f} page faults "
                      f"per step, max RSS {median_of(r, 'max_rss_mb'):.0f} MB", flush=True)
    if what in ("recorder", "all"):
        recorder_overhead(tmp, rounds, small)
    if what in ("dp", "all"):
        one, two = [], []
        for _ in range(rounds):
            one.append(rondo_run(tmp, "dp1", small + ["parallel.world_size=1"])["tokens_per_s"])
            two.append(rondo_run(tmp, "dp2", small + ["parallel.world_size=2"])["tokens_per_s"])
        a, b = statistics.median(one), statistics.median(two)
        print(f"dp: tokens/s dp=1 {a:.0f}, dp=2 {b:.0f}, dp2/dp1 {b/a:.2f}")
    if what in ("pipeline", "all"):
        variants = pipeline_variants(small)
        runs = {v: [] for v in variants}
        for _ in range(rounds):
            for v, sets in variants.items():
                runs[v].append(rondo_run(tmp, "pipe", sets, steps=40, warmup=5))
        for v, r in runs.items():
            measured, predicted = median_of(r, "bubble_fraction"), median_of(r, "bubble_fraction_predicted")
            print(f"pipeline: {v}: {median_of(r, 'tokens_per_s'):.0f} tokens/s, step {median_of(r, 'step_time_s') * 1e3:.1f} ms, "
                  f"bubble measured {measured:.3f}, predicted {predicted:.3f} (|diff| {abs(measured - predicted):.3f}), "
                  f"p2p wait {median_of(r, 'p2p_wait_s') * 1e3:.2f} ms", flush=True)
    if what in ("async", "all"):
        async_pipeline(tmp, rounds)
    if what in ("heavy-head", "all"):
        heavy_head(tmp, rounds)
    if what in ("chunked", "all"):
        chunked(tmp, rounds)
    if what in ("chunked-pipeline", "all"):
        chunked_pipeline(tmp, rounds)
    if what in ("chunkflow", "all"):
        chunkflow(tmp, rounds)
    if what in ("context", "all"):
        context_parallel(tmp, rounds)
    if what in ("hdp", "all"):
        hdp(tmp, rounds)
    if what in ("moe-partition", "all"):
        moe_partition(tmp, rounds, small)
    if what == "versus":
        versus(tmp, rounds, small)


def pipeline_variants(small):
    """Eight microbatches of 2 per step, the demo model's 4 layers: 2 or 4 stages over 2 ranks."""
    batch = small + ["training.micro_batch_size=2", "training.global_batch_size=16"]
    variants = {"pp=1 (reference)": batch + ["parallel.world_size=1"]}
    for schedule, vpp in (("gpipe", 1), ("1f1b", 1), ("interleaved_1f1b", 2), ("looped_bfs", 2), ("zb_h1", 1),
                          ("zbv", 1), ("roundpipe", 1)):
        variants[schedule] = batch + ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                                      f"pipeline.schedule={schedule}",
                                      f"parallel.virtual_pipeline_model_parallel_size={vpp}"]
    return variants


def moe_partition(tmp, rounds, small):
    """FSMoE's gradient partitioning: the dense gradients' buckets in flight advanced between the MoE
    backward's expert calls, or only between layers."""
    moe = small + ["model.num_experts=4", "model.moe_router_topk=2", "parallel.world_size=2",
                   "parallel.expert_model_parallel_size=2", "moe.a2a_overlap_degree=2", "moe.bwd_degree=2",
                   "comms.overlap_grad_reduce=true", "comms.bucket_size_mb=0.25"]
    for link in os.environ.get("MOE_LINKS", "0,0.2,0.05").split(","):
        runs = {"on": [], "off": []}
        for _ in range(rounds):
            for mode in ("on", "off"):
                runs[mode].append(rondo_run(tmp, f"moe-partition-{mode}", moe + [
                    f"comms.emulated_link_gbps={link}",
                    f"moe.gradient_partitioning={'true' if mode == 'on' else 'false'}"], steps=40))
        on, off = runs["on"], runs["off"]
        name = "no link emulation" if link == "0" else f"emulated {link} GB/s link"
        print(f"moe-partition ({name}): step {median_of(on, 'step_time_s') * 1e3:.1f} ms on vs "
              f"{median_of(off, 'step_time_s') * 1e3:.1f} ms off (off/on "
              f"{median_of(off, 'step_time_s') / median_of(on, 'step_time_s'):.3f}); exposed allreduce "
              f"{median_of(on, 'allreduce_s') * 1e3:.2f} vs {median_of(off, 'allreduce_s') * 1e3:.2f} ms; backward "
              f"{median_of(on, 'backward_s') * 1e3:.1f} vs {median_of(off, 'backward_s') * 1e3:.1f} ms; buckets done "
              f"inside the backward {median_of(on, 'grad_buckets_done_in_backward'):.0f} vs "
              f"{median_of(off, 'grad_buckets_done_in_backward'):.0f} of {median_of(on, 'grad_buckets'):.0f}",
              flush=True)


def source_commit(build_dir):
    """The commit a build directory was configured from (its CMakeCache's source directory)."""
    with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
        source = next(line.split("=", 1)[1].strip() for line in f if line.startswith("CMAKE_HOME_DIRECTORY:"))
    out = subprocess.run(["git", "-C", source, "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", source, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip()[:70] + (" (+ uncommitted changes)" if dirty else "")


def versus(tmp, rounds, small):
    """This build against RONDO_BASELINE_BUILD_DIR's, the two alternated run by run on each case."""
    baseline = os.environ.get("RONDO_BASELINE_BUILD_DIR")
    if not baseline:
        sys.exit("versus: set RONDO_BASELINE_BUILD_DIR to another commit's build directory")
    sides = {"this": (BUILD, RONDO), "baseline": (baseline, os.path.join(baseline, "orchestrator", "rondo"))}
    for side, (build, _) in sides.items():
        print(f"versus: {side} build {build}: {source_commit(build)}", flush=True)
    cases = {f"ddp {ranks} rank(s)": small + [f"parallel.world_size={ranks}"] for ranks in (1, 2)}
    cases.update({f"pipeline {v}": sets for v, sets in pipeline_variants(small).items()})
    only = os.environ.get("VERSUS_CASES")  # comma-separated substrings of case names: those cases only
    if only:
        cases = {c: s for c, s in cases.items() if any(o in c for o in only.split(","))}
    for case, sets in cases.items():
        steps = 60 if case.startswith("ddp") else 40
        runs = {side: [] for side in sides}
        for r in range(rounds):
            order = list(sides.items())
            for side, (_, rondo) in (order if r % 2 == 0 else order[::-1]):  # neither side always first
                runs[side].append(rondo_run(tmp, "versus", sets, steps=steps, rondo=rondo)["tokens_per_s"])
        a, b = statistics.median(runs["this"]), statistics.median(runs["baseline"])
        # On a shared machine interference only slows a run: the best round of each side is the
        # steadier comparison, and the ratio of each round's pair (run back to back) the fairer one.
        best = max(runs["this"]) / max(runs["baseline"])
        paired = statistics.geometric_mean(x / y for x, y in zip(runs["this"], runs["baseline"]))
        print(f"versus: {case}: this {a:.0f} tokens/s, baseline {b:.0f} tokens/s, this/baseline {a / b:.3f} "
              f"(best rounds {best:.3f}, paired rounds' geometric mean {paired:.3f}; rounds: this "
              f"{', '.join(f'{x:.0f}' for x in runs['this'])}; baseline "
              f"{', '.join(f'{x:.0f}' for x in runs['baseline'])})", flush=True)


def async_pipeline(tmp, rounds):
    """1f1b synchronous vs asynchronous (pipeline.async, PipeDream-2BW) at pp=2 and pp=4 on real
    compute: eight microbatches of 2 x 128 tokens per step, the demo model's 4 layers."""
    batch = model_sets(SMALL) + ["training.micro_batch_size=2", "training.global_batch_size=16",
                                 "pipeline.schedule=1f1b"]
    for pp in (2, 4):
        layout = [f"parallel.world_size={pp}", f"parallel.pipeline_model_parallel_size={pp}"]
        variants = {"sync": [], "async": ["pipeline.async=true"],
                    "async + error feedback": ["pipeline.async=true", "pipeline.delay_correction=error_feedback"]}
        runs = {v: [] for v in variants}
        for _ in range(rounds):
            for v, sets in variants.items():
                runs[v].append(rondo_run(tmp, "async", batch + layout + sets, steps=40, warmup=5))
        base = median_of(runs["sync"], "step_time_s")
        for v, r in runs.items():
            step = median_of(r, "step_time_s")
            extra = ""
            if v != "sync":
                extra = (f", update {median_of(r, 'delayed_update_s') * 1e3:.2f} ms on its thread, "
                         f"{median_of(r, 'delayed_update_wait_s') * 1e3:.2f} ms waited")
            print(f"async: pp={pp} {v}: {median_of(r, 'tokens_per_s'):.0f} tokens/s, step {step * 1e3:.1f} ms "
                  f"(sync/this {base / step:.2f}), bubble measured {median_of(r, 'bubble_fraction'):.3f}, "
                  f"predicted {median_of(r, 'bubble_fraction_predicted'):.3f}{extra}", flush=True)


def chunked_report(label, runs):
    for v, r in runs.items():
        recomputed = (f", {median_of(r, 'chunks_recomputed'):.0f} of {median_of(r, 'chunks'):.0f} chunks recomputed"
                      if "chunks" in r[0] else "")
        bubble = (f", bubble {median_of(r, 'bubble_fraction'):.3f} (predicted "
                  f"{median_of(r, 'bubble_fraction_predicted'):.3f})" if "bubble_fraction" in r[0] else "")
        print(f"chunked: {label}, {v}: {median_of(r, 'tokens_per_s'):.0f} tokens/s "
              f"({median_of(r, 'targets_per_s'):.0f} targets/s), step {median_of(r, 'step_time_s') * 1e3:.0f} ms, "
              f"max RSS {median_of(r, 'max_rss_mb'):.0f} MB{recomputed}{bubble}", flush=True)


def memory_growth(label, by_seq):
    """Peak RSS at the longest sequence over the same at a quarter of it, per variant."""
    seqs = sorted(by_seq)
    for short in seqs:
        if 4 * short in by_seq:
            for v in by_seq[short]:
                a, b = median_of(by_seq[short][v], "max_rss_mb"), median_of(by_seq[4 * short][v], "max_rss_mb")
                print(f"chunked: {label}, {v}: max RSS grows {b / a:.2f}x from {short} to {4 * short} tokens",
                      flush=True)


def chunked(tmp, rounds):
    """The demo model on one rank, 2 microbatches of 1 row per step. First each row one sequence
    of model.seq_length tokens (unpacked), trained whole or in chunks of 512 (K = 1, 2): peak
    memory by sequence length. Then packed documents of the Debian copyright corpus at 2048."""
    variants = {"unchunked": []}
    for k in (1, 2):
        variants[f"C=512, K={k}"] = ["data.chunk_size=512", f"data.chunks_in_memory={k}"]
    one_rank = ["parallel.world_size=1", "training.micro_batch_size=1", "training.global_batch_size=2"]
    by_seq = {}
    for seq in (512, 1024, 2048, 4096):
        runs = {v: [] for v in variants}
        for _ in range(rounds):
            for v, sets in variants.items():
                runs[v].append(rondo_run(tmp, "chunk", model_sets(dict(SMALL, seq=seq)) + one_rank + sets, steps=6,
                                         warmup=2))
        chunked_report(f"one sequence of {seq}", runs)
        by_seq[seq] = runs
    memory_growth("one rank", by_seq)
    prefix = os.path.join(tmp, "copyright")
    docs = sorted(os.path.join("/usr/share/doc", d, "copyright") for d in os.listdir("/usr/share/doc")
                  if os.path.isfile(os.path.join("/usr/share/doc", d, "copyright")))
    subprocess.run([RONDO, "data", "prepare", *docs, "--out", prefix], check=True, capture_output=True)
    packed = {"padded": ["data.pad=true"], "packed, unchunked": ["data.pack=true"]}
    for k, balance in ((1, "tokens"), (2, "tokens"), (2, "cost")):
        packed[f"packed, C=512, K={k}, {balance}"] = ["data.pack=true", "data.chunk_size=512",
                                                     f"data.chunks_in_memory={k}", f"data.chunk_balance={balance}"]
    runs = {v: [] for v in packed}
    for _ in range(rounds):
        for v, sets in packed.items():
            runs[v].append(rondo_run(tmp, "chunk", model_sets(dict(SMALL, seq=2048)) + one_rank + sets +
                                     [f"data.path={prefix}"], steps=8, warmup=2))
    chunked_report(f"copyright corpus ({len(docs)} documents), rows of 2048", runs)


def context_parallel(tmp, rounds):
    """The demo model, 2 rows of model.seq_length tokens a step on 2 ranks: data parallel (each rank
    a whole row) against context parallel (each rank its zigzag half of both rows, attention round
    the pair), and one rank with both rows as the memory reference. Rank 0's peak RSS."""
    variants = {"1 rank": ["parallel.world_size=1"],
                "dp=2": ["parallel.world_size=2"],
                "cp=2": ["parallel.world_size=2", "parallel.context_parallel_size=2"]}
    for seq in (1024, 2048, 4096):
        runs = {v: [] for v in variants}
        for _ in range(rounds):
            for v, sets in variants.items():
                runs[v].append(rondo_run(tmp, "context", model_sets(dict(SMALL, seq=seq)) + sets +
                                         ["training.micro_batch_size=1", "training.global_batch_size=2"],
                                         steps=8, warmup=2))
        for v, r in runs.items():
            print(f"context: rows of {seq}, {v}: {median_of(r, 'tokens_per_s'):.0f} tokens/s, step "
                  f"{median_of(r, 'step_time_s') * 1e3:.0f} ms, max RSS {median_of(r, 'max_rss_mb'):.0f} MB", flush=True)


def hdp(tmp, rounds):
    """parallel.hdp: the demo model on documents of lognormal lengths (median ~150 tokens, sigma 1.2)
    cut at 1024, 4096 tokens a step, at most 512 tokens of a sequence per rank (a long one needs a
    group of 2 or more). Each policy on the same batches: tokens/s and the ranks' busy max/mean,
    measured (compute seconds of the busiest rank over the mean) and as the planner predicted it.
    The cost model is set for this CPU (pipeline.device_tflops, p2p_*). On 2 ranks (this machine's
    cores) and 4 (two per core), also as 2 pipelines of 2 stages; then 16 ranks with emulated compute
    (each sub-batch sleeps for the planner's seconds, groups meet for real), as 16 ranks and as 8
    pipelines of 2 stages (1f1b: the planner's groups are of pipelines, the step it predicts
    simulated on every stage)."""
    data = model_sets(dict(SMALL, seq=1024)) + [
        "parallel.hdp=true", "data.path=lognormal", "data.lognormal_mu=5", "data.lognormal_sigma=1.2",
        "data.lognormal_documents=4000", "data.tokens_per_step=4096", "parallel.max_tokens_per_rank=512",
        "pipeline.device_tflops=0.01", "pipeline.p2p_bandwidth_gbps=5", "pipeline.p2p_latency_s=5e-5"]
    policies = ("rondo", "megatron", "static")
    emulated = ["training.emulate_compute=true", "pipeline.device_tflops=0.005"]
    cases = os.environ.get("HDP_CASES", "2,4,4pp2,16,16pp2").split(",")
    pp2 = ["parallel.pipeline_model_parallel_size=2", "pipeline.schedule=1f1b"]
    for case, ranks, extra, steps in (("2", 2, [], 30), ("4", 4, [], 30), ("4pp2", 4, pp2, 30),
                                      ("16", 16, emulated, 20), ("16pp2", 16, emulated + pp2, 20)):
        if case not in cases:
            continue
        runs = {p: [] for p in policies}
        for _ in range(rounds):
            for p in policies:
                runs[p].append(rondo_run(tmp, "hdp", data + extra + [f"parallel.world_size={ranks}",
                                                                   f"parallel.hdp_policy={p}"], steps=steps, warmup=3))
        label = f"{ranks} ranks" + (f" ({ranks // 2} pipelines of 2 stages)" if pp2[0] in extra else "") + (
            ", emulated compute" if emulated[0] in extra else "")
        for p, r in runs.items():
            measured, planned = median_of(r, "hdp_busy_max_over_mean"), median_of(r, "hdp_busy_max_over_mean_predicted")
            print(f"hdp: {label}, {p}: {median_of(r, 'tokens_per_s'):.0f} tokens/s, step "
                  f"{median_of(r, 'step_time_s') * 1e3:.0f} ms (planned {median_of(r, 'hdp_step_predicted_s') * 1e3:.0f} ms), "
                  f"busy max/mean measured {measured:.3f}, planned {planned:.3f} (|diff| {abs(measured - planned):.3f})",
                  flush=True)


def chunked_pipeline(tmp, rounds):
    """pp=2 with 1f1b, 4 rows of model.seq_length per step (one per microbatch): unchunked, or each
    row's chunks of 512 as the schedule's microbatches (K = 1, 2)."""
    variants = {"unchunked": []}
    for k in (1, 2):
        variants[f"C=512, K={k}"] = ["data.chunk_size=512", f"data.chunks_in_memory={k}"]
    pp2 = ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2", "pipeline.schedule=1f1b",
           "training.micro_batch_size=1", "training.global_batch_size=4"]
    by_seq = {}
    for seq in (1024, 4096):
        runs = {v: [] for v in variants}
        for _ in range(rounds):
            for v, sets in variants.items():
                runs[v].append(rondo_run(tmp, "chunk-pp", model_sets(dict(SMALL, seq=seq)) + pp2 + sets, steps=6,
                                         warmup=2))
        chunked_report(f"pp=2 1f1b, rows of {seq}", runs)
        by_seq[seq] = runs
    memory_growth("pp=2", by_seq)


def chunkflow(tmp, rounds):
    """ChunkFlow's trade-off: the synthetic lognormal mix (median document ~150 tokens, a tail of
    thousands), rows of 2048, the demo model. Padded (one document per row), packed whole, and
    packed in chunks of 256 keeping K = 1, 2, 4 chunks' activations; one rank (2 rows per step)
    and pp=2 with 1f1b (4 rows per step, the chunks as the schedule's microbatches)."""
    mix = ["data.path=lognormal", "data.lognormal_mu=5", "data.lognormal_sigma=1.5",
           "data.lognormal_documents=4000", "data.lognormal_max_length=8192"]
    variants = {"padded": ["data.pad=true"], "packed, unchunked": ["data.pack=true"]}
    for k in (1, 2, 4):
        variants[f"packed, C=256, K={k}"] = ["data.pack=true", "data.chunk_size=256", f"data.chunks_in_memory={k}"]
    layouts = {"pp=1": ["parallel.world_size=1", "training.micro_batch_size=1", "training.global_batch_size=2"],
               "pp=2 1f1b": ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                             "pipeline.schedule=1f1b", "training.micro_batch_size=1",
                             "training.global_batch_size=4"]}
    for layout, sets in layouts.items():
        runs = {v: [] for v in variants}
        for _ in range(rounds):
            for v, extra in variants.items():
                runs[v].append(rondo_run(tmp, "chunkflow", model_sets(dict(SMALL, seq=2048)) + sets + mix + extra,
                                         steps=8, warmup=2))
        chunked_report(f"lognormal mix, rows of 2048, {layout}", runs)


# The demo model with a 16384-token vocabulary: the LM head's forward (2 x hidden x vocab FLOPs
# per token) costs about as much as 10 blocks; its weights are 2.1M of 4.9M parameters.
HEAVY = dict(SMALL, vocab=16384)


def recorder_overhead(tmp, rounds, small):
    """Step time with the timing recorder on over off, as the median of paired measurements, two ways.
    Whole runs: each round runs both, in alternating order (on-off, off-on, ...). Within one run
    (comms.timing_recorder_blocks): the recorder records BLOCK steps, pauses BLOCK, and so on; every
    other paused block is paired with the recorded blocks either side (their mean, so a steady drift
    of the machine's speed cancels; every other one, so that no two pairs share a block), a block's
    time the median of its steps but the first (the coordinator may still be judging the block
    before). The 95% intervals of the medians come from resampling the pairs."""
    block, steps = 10, 1210
    run_ratios, block_ratios = [], []
    for i in range(rounds):
        order = (True, False) if i % 2 == 0 else (False, True)
        step = {}
        for on in order:
            sets = small + ["parallel.world_size=2", f"comms.timing_recorder={str(on).lower()}"]
            step[on] = rondo_run(tmp, "on" if on else "off", sets, steps=120, warmup=10)["step_time_s"]
        run_ratios.append(step[True] / step[False])
        print(f"recorder: round {i + 1}: whole runs on {step[True] * 1e3:.2f} ms, off {step[False] * 1e3:.2f} ms, "
              f"on/off {run_ratios[-1]:.4f}", flush=True)
        rows = rondo_rows(tmp, "blocks", small + ["parallel.world_size=2", f"comms.timing_recorder_blocks={block}"],
                          steps=steps, warmup=0)
        blocks = {}
        for r in rows:
            blocks.setdefault((r["step"] - 1) // block, []).append(r)
        times = {k: statistics.median(r["step_time_s"] for r in sorted(v, key=lambda r: r["step"])[1:])
                 for k, v in blocks.items() if len(v) == block}
        mine = []
        for k in sorted(times):
            # Paused blocks are the odd ones; 3, 7, 11, ...: the first (1) is warm-up, and 5, 9, ...
            # would share their recorded neighbours with these.
            if k % 4 != 3 or blocks[k][0]["recorded"] or k - 1 not in times or k + 1 not in times:
                continue
            mine.append((times[k - 1] + times[k + 1]) / 2 / times[k])
        if not mine:
            sys.exit(f"recorder: round {i + 1} left no whole paused block between recorded ones")
        block_ratios += mine
        print(f"recorder: round {i + 1}: one run in blocks of {block} steps, {len(mine)} paused blocks, on/off "
              f"median {statistics.median(mine):.4f}", flush=True)
    for name, ratios in (("whole runs", run_ratios), (f"blocks of {block} steps", block_ratios)):
        low, med, high = median_interval(ratios)
        print(f"recorder: {name}: on/off median of {len(ratios)} pairs {med:.4f} ({(med - 1) * 100:+.2f}%), "
              f"95% interval {low:.4f}-{high:.4f}; pairs {min(ratios):.4f}-{max(ratios):.4f}")


def median_interval(ratios):
    """(low, median, high): the median and its 95% bootstrap interval."""
    rng = random.Random(1)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    return medians[int(0.025 * len(medians))], statistics.median(ratios), medians[int(0.975 * len(medians)) - 1]


def heavy_head(tmp, rounds):
    sets = model_sets(HEAVY) + ["training.micro_batch_size=2", "training.global_batch_size=16"]
    pp2 = ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2"]
    variants = {"pp=1 (reference)": ["parallel.world_size=1"],
                "1f1b, even stages (2 blocks | 2 blocks + head)": pp2 + ["pipeline.schedule=1f1b"],
                "1f1b, head alone (4 blocks | head)": pp2 + ["pipeline.schedule=1f1b",
                                                             "pipeline.stage_partition=4,0"],
                "roundpipe (RoundPipe's rounds)": pp2 + ["pipeline.schedule=roundpipe"],
                "roundpipe, earliest_free dispatch": pp2 + ["pipeline.schedule=roundpipe",
                                                            "pipeline.roundpipe_dispatch=earliest_free"]}
    for v, extra in variants.items():
        plan = json.loads(subprocess.run([RONDO, "plan", "--json"] + [x for s in sets + extra for x in ("--set", s)],
                                         capture_output=True, text=True, check=True).stdout)["prediction"]
        memory = max(r["peak_bytes"] for r in plan["ranks"]) / 1e6
        print(f"heavy-head: {v}: predicted step {plan['step_time_s'] * 1e3:.2f} ms at pipeline.device_tflops, bubble "
              f"{plan['bubble_fraction']:.3f}, largest rank {memory:.1f} MB", flush=True)
    runs = {v: [] for v in variants}
    for _ in range(rounds):
        for v, extra in variants.items():
            runs[v].append(rondo_run(tmp, "heavy", sets + extra, steps=30, warmup=5))
    for v, r in runs.items():
        print(f"heavy-head: {v}: {median_of(r, 'tokens_per_s'):.0f} tokens/s, step {median_of(r, 'step_time_s') * 1e3:.1f} ms, "
              f"bubble measured {median_of(r, 'bubble_fraction'):.3f}, predicted "
              f"{median_of(r, 'bubble_fraction_predicted'):.3f}, largest RSS {median_of(r, 'max_rss_mb'):.0f} MB",
              flush=True)


if __name__ == "__main__":
    main()
