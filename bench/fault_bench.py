#!/usr/bin/env python3
"""Fault localisation benchmarks: randomised trials with real faults, judged from events.jsonl.

  bench/fault_bench.py slow-rank [TRIALS]  # a rank slowed for real (SIGSTOP/SIGCONT duty cycle) from a
                                           # random step, at a random severity; which rank is drawn too
  bench/fault_bench.py clean [RUNS]        # runs with no fault: false alarms per 1,000 rank-steps, and how much
                                           # slower one rank's core computed than the other's
                                           # (CLEAN_STEPS, CLEAN_MODEL=demo: the default config's model)
  bench/fault_bench.py rejudge DIR [ARGS]  # the slow-rank and slow-stage trials and clean runs a run left in
                                           # DIR (printed first) judged again by `rondo diagnose ARGS`
                                           # (--rank-share X, --stage-factor X, ...)
  bench/fault_bench.py hang [TRIALS]       # a rank stopped (SIGSTOP) at a random step: seconds to the verdict
  bench/fault_bench.py slow-link [TRIALS]  # three ranks on network namespaces (root): one ring link held to a
                                           # random rate (3 trials in 5), a rank slowed (1 in 5) or nothing
  bench/fault_bench.py slow-stage [TRIALS] # two pipeline stages, one slowed from its first step at a random
                                           # severity (4 trials in 5) or none; judged as slow-rank trials
                                           # (STAGE_STOPPED=LOW,HIGH: the share of each 40 ms stopped,
                                           # default 0.3,0.6)
  bench/fault_bench.py moe-link [TRIALS]   # slow-link's trials with an MoE job (root): a throttled link
                                           # carries only expert-parallel all-to-alls (the ring goes round it)

Two ranks, a core each (this machine has two; more ranks than cores slow each other at random far
beyond any threshold: docs/faults.md), the detector at its defaults (faults.* keys) unless
FAULT_SETS adds --set overrides (space separated). Severity is measured, not assumed: a trial's
slow-down is the victim's median step time after the start over the median before, minus one.
A slow-rank trial counts as detected when a slow_rank verdict names the victim within 10 steps of
the start; precision is the share of all slow-rank and slow-link verdicts that name the victim.
Prints the runtime environment (RUN_DIR/runtime.json) of the first run.

slow-link runs three ranks, each in its own network namespace (scripts/netns-hosts), with compute
emulated (each forward and backward sleeps for its predicted time, as system.slow_link does: three
ranks computing for real on two cores keep receivers off their cores) and real reductions over
TCP. A trial throttles one directed link of the ring (rank r sends to r + 1) with an htb class, at
a rate drawn from LINK_RATES (default 20-400 Mbit/s). The
verdict is right when the first slow_link verdict names that link and no slow_rank verdict names
either of its ranks. One trial in five slows a drawn rank instead (stopped 60% of every 40 ms
from step 5): right when it is the first slow rank named and no link is; one in five has no
fault: right when nothing is named.
"""
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("RONDO_BUILD_DIR", os.path.join(ROOT, "build"))
RONDO = os.path.join(BUILD, "orchestrator", "rondo")
WORKER = os.path.join(BUILD, "worker", "rondo-worker")
# About a tenth of a second a step on this machine: several periods of the duty cycle (40 ms).
MODEL = ["model.num_layers=2", "model.hidden_size=256", "model.num_attention_heads=4",
         "model.ffn_hidden_size=1024", "model.seq_length=256", "training.micro_batch_size=4",
         "training.global_batch_size=8", "training.lr_warmup_iters=0", "training.lr_decay_style=constant",
         "checkpoint.interval=0", "parallel.world_size=2", "training.log_interval=1000"]
PERIOD_S = 0.04
TMP = tempfile.mkdtemp(prefix="rondo-fault-bench-")
EXTRA = os.environ.get("FAULT_SETS", "").split()
shown = []


def start(name, sets, model=MODEL):
    run_dir = os.path.join(TMP, name)
    cmd = [RONDO, "run", "--run-dir", run_dir, "--worker", WORKER]
    for s in model + EXTRA + sets:
        cmd += ["--set", s]
    out = open(run_dir + ".out", "w")
    return run_dir, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def read_jsonl(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def faults(run_dir):
    return [e for e in read_jsonl(os.path.join(run_dir, "events.jsonl")) if e.get("event") == "fault"]


def pid_of(run_dir, rank):
    with open(os.path.join(run_dir, "workers.json")) as f:
        return next(w["pid"] for w in json.load(f) if w["rank"] == rank)


def wait_pid(run_dir, rank, timeout=120):
    """The rank's pid once it registered (before its first step)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return pid_of(run_dir, rank)
        except (OSError, ValueError, StopIteration):
            time.sleep(0.02)
    raise RuntimeError(f"{run_dir}: rank {rank} did not register")


def last_step(run_dir):
    """The newest step in metrics.jsonl, from the file's tail (-1 before the first)."""
    try:
        with open(os.path.join(run_dir, "metrics.jsonl"), "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
            lines = [line for line in f.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return -1
    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except (ValueError, KeyError):
            continue  # the first line of the tail cut short, or a line being written
    return -1


def wait_step(run_dir, step, timeout=300):
    """Waits for the job to reach `step`. Polls the file's tail every 20 ms: the machine has as many
    cores as the job has ranks, and a poll parsing the whole file every few milliseconds took 10-20%
    of a rank's core, slowing it before any fault was injected."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        newest = last_step(run_dir)
        if newest >= step:
            return newest
        time.sleep(0.02)
    raise RuntimeError(f"{run_dir} did not reach step {step}")


def show_environment(run_dir):
    if shown:
        return
    shown.append(True)
    with open(os.path.join(run_dir, "runtime.json")) as f:
        env = json.load(f)
    print(f"environment: torch {env['torch_version']}, {env['mpi_library']}, BLAS {env['blas_libraries']}, "
          f"threads intra {env['intra_op_threads']} inter {env['inter_op_threads']}, "
          f"allocator {env['malloc_policy']}, cpu kernels {env['cpu_kernels']}, cores {os.cpu_count()}, "
          f"rank 0 runs on cores {env.get('cpu_affinity', '?')}")
    print("detector settings:", " ".join(EXTRA) or "defaults (faults.* in docs/config.md)")


def rank_step_times(run_dir, rank):
    """step -> the rank's step time, from the coordinator's record of its reports."""
    out = {}
    for r in read_jsonl(os.path.join(run_dir, "timings.jsonl")):
        if r.get("rank", 0) == rank:
            out[int(r["step"])] = r["step_time_s"]
    return out


def duty_cycle(pid, stopped, done):
    """Stops `pid` for `stopped` of every PERIOD_S until `done` is set."""
    while not done.is_set():
        try:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(PERIOD_S * stopped)
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            return
        time.sleep(PERIOD_S * (1 - stopped))


def slow_rank(trials):
    rng = random.Random(int(os.environ.get("SEED", "1")))
    results = []
    for t in range(trials):
        victim = rng.randrange(2)
        start_step = rng.randint(10, 25)
        stopped = rng.uniform(0.1, 0.45)  # share of each period the victim is stopped
        total = start_step + 30
        run_dir, proc = start(f"slow-{t}", [f"training.train_iters={total}"])
        wait_step(run_dir, start_step)
        done = threading.Event()
        started_at = last_step(run_dir)
        th = threading.Thread(target=duty_cycle, args=(pid_of(run_dir, victim), stopped, done))
        th.start()
        proc.wait(timeout=900)
        done.set()
        th.join()
        show_environment(run_dir)
        with open(os.path.join(run_dir, "trial.json"), "w") as f:
            json.dump({"victim": victim, "start": started_at, "stopped": stopped}, f)
        results.append(judge_slow_rank_trial(run_dir, faults(run_dir), victim, started_at, stopped, t))
    summarise_slow_rank(results)


def judge_slow_rank_trial(run_dir, verdicts, victim, started_at, stopped, t):
    times = rank_step_times(run_dir, 1 - victim)
    before = [v for s, v in times.items() if 5 < s <= started_at]
    after = [v for s, v in times.items() if s > started_at + 1]
    if not before or not after:
        sys.exit(f"{run_dir}: no steps recorded on both sides of step {started_at} (did the run fail?)")
    before, after = statistics.median(before), statistics.median(after)
    found = [f for f in verdicts if f["kind"] in ("slow_rank", "slow_link")]
    hit = [f for f in found if f["kind"] == "slow_rank" and f["ranks"] == [victim] and f["step"] > started_at]
    detected_in = hit[0]["step"] - started_at if hit else None
    wrong = [f for f in found if f not in hit]
    r = {"victim": victim, "start": started_at, "stopped": stopped, "slowdown": after / before - 1,
         "detected_in": detected_in, "right": len(hit), "wrong": len(wrong)}
    print(f"trial {t:2d}: victim {victim}, from step {started_at}, stopped {stopped:.0%} -> "
          f"{r['slowdown']:+.0%} step time; detected in {detected_in} steps; wrong verdicts {len(wrong)}"
          + (f" {[(f['kind'], f['ranks'], f.get('link'), f['step']) for f in wrong]}" if wrong else ""),
          flush=True)
    return r


def rejudge(bench_dir, diagnose_args):
    """The slow-rank and slow-stage trials and clean runs a run of this script left in BENCH_DIR,
    judged again by `rondo diagnose --json` with other detector settings (its options: --rank-share
    X, --stage-factor X ...). A slow-rank trial without trial.json (recorded before the script wrote
    it) takes its victim and start from the SEED draws, the start as drawn (the duty cycle started
    at that step or the next); a slow-stage trial without one is skipped."""
    def diagnose(run_dir):
        p = subprocess.run([RONDO, "diagnose", "--json", run_dir] + diagnose_args, capture_output=True, text=True)
        if p.returncode not in (0, 3):  # 3: faults found
            sys.exit(f"rondo diagnose {run_dir} failed ({p.returncode}): {p.stderr.strip()}")
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]

    if not any(os.path.isdir(os.path.join(bench_dir, f"{kind}-0")) for kind in ("slow", "clean", "stage")):
        sys.exit(f"{bench_dir} holds no slow-rank, clean or slow-stage run of this script")

    rng = random.Random(int(os.environ.get("SEED", "1")))
    results, t = [], 0
    while os.path.isdir(os.path.join(bench_dir, f"slow-{t}")):
        run_dir = os.path.join(bench_dir, f"slow-{t}")
        drawn = {"victim": rng.randrange(2), "start": rng.randint(10, 25), "stopped": rng.uniform(0.1, 0.45)}
        trial = read_json(os.path.join(run_dir, "trial.json")) or drawn
        results.append(judge_slow_rank_trial(run_dir, diagnose(run_dir), trial["victim"], trial["start"],
                                             trial["stopped"], t))
        t += 1
    if results:
        summarise_slow_rank(results)
    verdicts, rank_steps, t = 0, 0, 0
    while os.path.isdir(os.path.join(bench_dir, f"clean-{t}")):
        run_dir = os.path.join(bench_dir, f"clean-{t}")
        verdicts += sum(1 for f in diagnose(run_dir) if f["kind"] in ("slow_rank", "slow_link"))
        rank_steps += judged_rank_steps(run_dir)
        t += 1
    if t:
        print(f"--- clean --- {verdicts} verdicts in {rank_steps} judged rank-steps: "
              f"{1000 * verdicts / max(1, rank_steps):.2f} false alarms per 1,000 rank-steps")
    stages, t = [], 0
    while os.path.isdir(os.path.join(bench_dir, f"stage-{t}")):
        run_dir = os.path.join(bench_dir, f"stage-{t}")
        trial = read_json(os.path.join(run_dir, "trial.json"))
        if trial:
            stages.append(judge_stage_trial(diagnose(run_dir), trial["victim"], trial["stopped"], t))
        else:
            print(f"trial {t:2d}: skipped, no trial.json (recorded before the script wrote it)", flush=True)
        t += 1
    if stages:
        summarise_slow_stage(stages)


def judged_rank_steps(run_dir):
    """Two ranks' steps the detector judged in a run: all but the warm-up (FaultDetector::kWarmupSteps)."""
    steps = rank_step_times(run_dir, 0)
    return 2 * max(0, max(steps) - 5) if steps else 0


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def summarise_slow_rank(results):
    def line(name, rs):
        if not rs:
            return
        detected = [r for r in rs if r["detected_in"] is not None and r["detected_in"] <= 10]
        right = sum(r["right"] for r in rs)
        wrong = sum(r["wrong"] for r in rs)
        lat = [r["detected_in"] for r in detected]
        print(f"{name}: {len(rs)} trials, recall {len(detected) / len(rs):.2f} (named within 10 steps), "
              f"precision {right / max(1, right + wrong):.2f} ({right} right, {wrong} wrong verdicts), "
              f"steps to the verdict median {statistics.median(lat) if lat else '-'} max {max(lat) if lat else '-'}")
    print("--- slow rank ---")
    line("all", results)
    line("slow-down >= 20%", [r for r in results if r["slowdown"] >= 0.20])
    line("slow-down 10-20%", [r for r in results if 0.10 <= r["slowdown"] < 0.20])
    line("slow-down < 10%", [r for r in results if r["slowdown"] < 0.10])


def compute_ratio(run_dir, first_step=10):
    """Rank 0's median compute (forward + backward) a step over rank 1's, from timings.jsonl: how much
    slower the machine ran one rank's core than the other's in a run with no fault."""
    compute = {0: [], 1: []}
    for r in read_jsonl(os.path.join(run_dir, "timings.jsonl")):
        if r.get("rank", 0) in compute and int(r.get("step", 0)) > first_step:
            compute[r.get("rank", 0)].append(r.get("forward_s", 0) + r.get("backward_s", 0))
    return statistics.median(compute[0]) / statistics.median(compute[1]) if all(compute.values()) else float("nan")


def clean(runs):
    """Runs with no fault (CLEAN_STEPS steps each, default 80). CLEAN_MODEL=demo runs the default
    config's model (about 30 ms a step here) instead of the trials' (about 100 ms)."""
    steps = int(os.environ.get("CLEAN_STEPS", "80"))
    sets = ([s for s in MODEL if s.startswith(("checkpoint.", "training.log_interval"))]
            if os.environ.get("CLEAN_MODEL") == "demo" else MODEL)
    verdicts, rank_steps = [], 0
    for t in range(runs):
        run_dir, proc = start(f"clean-{t}", [f"training.train_iters={steps}"], model=sets)
        proc.wait(timeout=900)
        show_environment(run_dir)
        found = faults(run_dir)
        verdicts += found
        rank_steps += judged_rank_steps(run_dir)
        print(f"run {t}: {len(found)} verdicts {[(f['kind'], f['ranks'], f.get('link'), f['step']) for f in found]}; "
              f"rank 0's compute over rank 1's {compute_ratio(run_dir):.3f}", flush=True)
    print(f"--- clean --- {len(verdicts)} verdicts in {rank_steps} judged rank-steps: "
          f"{1000 * len(verdicts) / max(1, rank_steps):.2f} false alarms per 1,000 rank-steps")


def slow_stage(trials):
    """A pipeline of two stages (one rank each, no data parallelism: no collective to be late into),
    one stage slowed from before its first step, so that its hops' baselines hold the slowness and
    only its compute against its stage's prediction tells (faults.slow_stage_factor)."""
    rng = random.Random(int(os.environ.get("SEED", "1")))
    low, high = (float(x) for x in os.environ.get("STAGE_STOPPED", "0.3,0.6").split(","))
    results = []
    for t in range(trials):
        victim = rng.randrange(2) if rng.random() < 0.8 else None
        stopped = rng.uniform(low, high)
        run_dir, proc = start(f"stage-{t}", ["training.train_iters=40", "parallel.pipeline_model_parallel_size=2"])
        done = threading.Event()
        th = None
        if victim is not None:
            th = threading.Thread(target=duty_cycle, args=(wait_pid(run_dir, victim), stopped, done))
            th.start()
        proc.wait(timeout=900)
        done.set()
        if th:
            th.join()
        show_environment(run_dir)
        with open(os.path.join(run_dir, "trial.json"), "w") as f:
            json.dump({"victim": victim, "stopped": stopped}, f)
        results.append(judge_stage_trial(faults(run_dir), victim, stopped, t))
    summarise_slow_stage(results)


def judge_stage_trial(verdicts, victim, stopped, t):
    found = [f for f in verdicts if f["kind"] in ("slow_rank", "slow_link")]
    hit = [f for f in found if victim is not None and f["kind"] == "slow_rank" and f["ranks"] == [victim]]
    others = [f for f in found if f not in hit]
    ratio = hit[0]["evidence"].get("compute_over_others") if hit else None
    print(f"trial {t:2d}: victim {victim}, stopped {stopped:.0%}: "
          + (f"named at step {hit[0]['step']} ({ratio:.2f}x the other's compute over prediction)" if hit and ratio
             else f"named at step {hit[0]['step']}" if hit else "not named")
          + (f"; other verdicts {[(f['kind'], f['ranks'], f['step']) for f in others]}" if others else ""),
          flush=True)
    return {"victim": victim, "named_at": hit[0]["step"] if hit else None, "wrong": len(others)}


def summarise_slow_stage(results):
    slowed = [r for r in results if r["victim"] is not None]
    named = sorted(r["named_at"] for r in slowed if r["named_at"] is not None)
    clean = [r for r in results if r["victim"] is None]
    print(f"--- slow stage --- {len(slowed)} slowed: {len(named)} named (steps {named}), "
          f"{len(slowed) - len(named)} missed; {len(clean)} clean: {sum(r['wrong'] for r in clean)} verdicts; "
          f"wrong verdicts in all {sum(r['wrong'] for r in results)}")


def hang(trials):
    rng = random.Random(int(os.environ.get("SEED", "1")))
    heartbeat_timeout = 2.0
    delays = []
    for t in range(trials):
        victim = rng.randrange(2)
        at = rng.randint(6, 20)
        run_dir, proc = start(f"hang-{t}", ["training.train_iters=100000", "comms.timeout_s=120",
                                            "launch.heartbeat_interval_s=0.2",
                                            f"launch.heartbeat_timeout_s={heartbeat_timeout}",
                                            "launch.max_restarts=0"])
        wait_step(run_dir, at)
        time.sleep(rng.uniform(0, 0.1))  # anywhere in the step
        pid = pid_of(run_dir, victim)
        t_stop = time.time()
        os.kill(pid, signal.SIGSTOP)
        proc.wait(timeout=120)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        show_environment(run_dir)
        found = [f for f in faults(run_dir) if f["kind"] == "hang" and f["ranks"] == [victim]]
        delay = found[0]["time"] - t_stop if found else None
        delays.append(delay)
        others = [f for f in faults(run_dir) if f not in found]
        print(f"trial {t:2d}: rank {victim} stopped at step {at}: hang verdict after "
              f"{'-' if delay is None else f'{delay:.2f} s'}; other verdicts {len(others)}", flush=True)
    named = [d for d in delays if d is not None and d <= heartbeat_timeout + 2]
    real = [d for d in delays if d is not None]
    print(f"--- hang --- {len(named)}/{len(delays)} named within heartbeat timeout + 2 s "
          f"({heartbeat_timeout:.0f} + 2 s); delay median {statistics.median(real):.2f} s, max {max(real):.2f} s")


def netns_hosts(*args):
    subprocess.run([os.path.join(ROOT, "scripts", "netns-hosts"), *args], check=True, capture_output=True,
                   text=True, timeout=120)


def slow_link_trial(t, hosts, rng, launch, moe):
    """Trial t: a throttled ring link (t % 5 in 0..2), a slowed rank (3) or nothing (4). With `moe`,
    the job of MOE_LINK_MODEL, its ring routed around a throttled link (comms.avoid_links)."""
    link = victim = None
    if t % 5 < 3:
        src = rng.randrange(3)
        link = ([src, (src + 1) % 3], rng.choice(LINK_RATES))
        netns_hosts("link", hosts, str(link[0][0] + 1), str(link[0][1] + 1), link[1])  # rank r on host r + 1
    around = [f"comms.avoid_links={link[0][0]}>{link[0][1]}"] if moe and link else []
    run_dir, proc = start(f"link-{t}", (MOE_LINK_MODEL if moe else LINK_MODEL) + launch + around)
    done = threading.Event()
    if t % 5 == 3:
        victim = rng.randrange(3)
        wait_step(run_dir, 5)
        th = threading.Thread(target=duty_cycle, args=(pid_of(run_dir, victim), 0.6, done))
        th.start()
    proc.wait(timeout=900)
    done.set()
    if victim is not None:
        th.join()
    netns_hosts("unlink", hosts)
    show_environment(run_dir)
    found = faults(run_dir)
    links = [f for f in found if f["kind"] == "slow_link"]
    ranks = [r for f in found if f["kind"] == "slow_rank" for r in f["ranks"]]
    kind = "link" if link else "rank" if victim is not None else "none"
    if kind == "link":
        first_ok = bool(links) and links[0].get("link") == link[0]
        right = first_ok and not set(ranks) & set(link[0])
    elif kind == "rank":
        first_ok = ranks[:1] == [victim]
        right = first_ok and not links
    else:
        first_ok = right = not found
    ratio = links[0]["evidence"].get("ratio") if links else None
    what = {"link": lambda: f"link {link[0]} at {link[1]}", "rank": lambda: f"rank {victim} stopped 60% of the time",
            "none": lambda: "no fault"}[kind]()
    print(f"trial {t:2d}: {what}: named {[(f['kind'], f['ranks'], f.get('link'), f['step']) for f in found]}"
          + (f", ratio {ratio:.0f}x" if ratio else "") + f" -> {'right' if right else 'WRONG'}", flush=True)
    return {"kind": kind, "first_ok": first_ok, "right": right}


def slow_link(trials, moe=False):
    if os.geteuid() != 0:
        sys.exit("slow-link needs root (network namespaces)")
    rng = random.Random(int(os.environ.get("SEED", "1")))
    hosts = os.path.join(TMP, "hosts")
    netns_hosts("up", hosts, "3")
    try:
        launch = [f"launch.{key}={open(os.path.join(hosts, key)).read().strip()}"
                  for key in ("mpirun_args", "control_address")]
        results = [slow_link_trial(t, hosts, rng, launch, moe) for t in range(trials)]
    finally:
        netns_hosts("down", hosts)
    by = {k: [r for r in results if r["kind"] == k] for k in ("link", "rank", "none")}
    print(f"--- slow link --- throttled link: {sum(r['first_ok'] for r in by['link'])}/{len(by['link'])} named "
          f"first, {sum(r['right'] for r in by['link'])}/{len(by['link'])} right (the link, not its ranks); slowed "
          f"rank: {sum(r['right'] for r in by['rank'])}/{len(by['rank'])} right (the rank, no link); no fault: "
          f"{sum(r['right'] for r in by['none'])}/{len(by['none'])} with nothing named")


# The rates a throttled link is held to (LINK_RATES, space separated, overrides them).
LINK_RATES = os.environ.get("LINK_RATES", "20mbit 50mbit 100mbit 200mbit 400mbit").split()
# system.slow_link's job: gradients of ~1.7 MB a step in one bucket, compute emulated.
LINK_MODEL = ["parallel.world_size=3", "training.global_batch_size=12", "training.train_iters=30",
              "comms.bucket_size_mb=100", "training.emulate_compute=true", "pipeline.device_tflops=0.02",
              "model.hidden_size=128", "model.ffn_hidden_size=512", "model.seq_length=64"]
# moe-link's job: three experts, one a rank (expert parallelism 3), pipelined in 2 chunks each way,
# ~90 KB a pair and chunk; compute is real (an MoE layer cannot emulate it).
MOE_LINK_MODEL = ["parallel.world_size=3", "training.global_batch_size=12", "training.train_iters=30",
                  "model.hidden_size=256", "model.ffn_hidden_size=512", "model.seq_length=128",
                  "model.num_experts=3", "model.moe_router_topk=1", "parallel.expert_model_parallel_size=3",
                  "moe.a2a_overlap_degree=2", "moe.bwd_degree=2"]

if __name__ == "__main__":
    modes = {"slow-rank": (slow_rank, 50), "clean": (clean, 10), "hang": (hang, 20), "slow-link": (slow_link, 20),
             "slow-stage": (slow_stage, 15), "moe-link": (lambda n: slow_link(n, moe=True), 10)}
    if len(sys.argv) >= 3 and sys.argv[1] == "rejudge":
        os.rmdir(TMP)
        sys.exit(rejudge(sys.argv[2], sys.argv[3:]))
    if len(sys.argv) < 2 or sys.argv[1] not in modes:
        sys.exit(__doc__)
    print(f"runs in {TMP}" + (f" (bench/fault_bench.py rejudge {TMP} ... judges them again)"
                               if sys.argv[1] in ("slow-rank", "clean", "slow-stage") else ""), flush=True)
    run, default = modes[sys.argv[1]]
    run(int(sys.argv[2]) if len(sys.argv) > 2 else default)
