#!/usr/bin/env python3
"""The coordinator as a service, measured.

  bench/coordinator_bench.py load     # one coordinator's control plane under N simulated workers, each
                                      # sending a step report (8 flight records) per second, its heartbeat too:
                                      # report latency p50/p99, the coordinator's CPU and memory
  bench/coordinator_bench.py restart  # a worker killed with SIGKILL: time until the restarted job's first step,
                                      # split into detection, relaunch and start-up

`load` runs the coordinator (`rondo_control_load serve`) and the simulated workers (`... load`) on
the same machine: on 2 cores they compete for it, so the figures are a floor for a coordinator
with a host of its own. Latency is measured from when a report was due, so a coordinator that
falls behind shows in it. RANKS (default "1000 2000 5000 10000") and SECONDS (default 20) set the
sizes.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("RONDO_BUILD_DIR", os.path.join(ROOT, "build"))
RONDO = os.path.join(BUILD, "orchestrator", "rondo")
WORKER = os.path.join(BUILD, "worker", "rondo-worker")
LOAD = os.path.join(BUILD, "bench", "rondo_control_load")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def memory_mb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def environment():
    print(f"environment: {os.cpu_count()} cores, "
          f"grpc {subprocess.run(['dpkg-query', '-W', '-f', '${Version}', 'libgrpc++-dev'], capture_output=True, text=True).stdout}, "
          f"load average {os.getloadavg()[0]:.2f}")


def load():
    seconds = float(os.environ.get("SECONDS_PER_SIZE", os.environ.get("SECONDS", "20")))
    print("| ranks | reports/s | p50 ms | p99 ms | max ms | failed calls | coordinator CPU % | RSS MB (peak) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for ranks in map(int, os.environ.get("RANKS", "1000 2000 5000 10000").split()):
        server = subprocess.Popen([LOAD, "serve", "--world", str(ranks)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        info = json.loads(server.stdout.readline())
        threads = max(8, min(64, ranks // 100))
        client = subprocess.Popen([LOAD, "load", "--address", info["address"], "--token", info["token"],
                                   "--ranks", str(ranks), "--seconds", str(seconds), "--threads", str(threads)],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(2)  # registrations; the reports start at 2 s
        c0, t0 = cpu_seconds(server.pid), time.time()
        result = json.loads(client.communicate()[0])
        c1, t1 = cpu_seconds(server.pid), time.time()
        mem = memory_mb(server.pid)
        server.communicate("")
        print(f"| {ranks} | {result['reports_per_s']:.0f} | {result['p50_s'] * 1e3:.1f} | {result['p99_s'] * 1e3:.1f} | "
              f"{result['max_s'] * 1e3:.0f} | {result['failures']} | {100 * (c1 - c0) / (t1 - t0):.0f} | "
              f"{mem['VmRSS']:.0f} ({mem['VmHWM']:.0f}) |", flush=True)


def restart():
    tiny = ["model.num_layers=2", "model.hidden_size=64", "model.num_attention_heads=4", "model.ffn_hidden_size=256",
            "model.seq_length=64", "training.micro_batch_size=4", "training.global_batch_size=8",
            "training.train_iters=300", "checkpoint.interval=10", "parallel.world_size=2",
            "training.log_interval=1000"]
    print("| round | detected s | relaunched s | first step s | death -> first step s |")
    print("| --- | --- | --- | --- | --- |")
    totals = []
    for rnd in range(int(os.environ.get("ROUNDS", "3"))):
        run_dir = tempfile.mkdtemp(prefix="rondo-restart-bench-")
        cmd = [RONDO, "run", "--run-dir", run_dir, "--worker", WORKER]
        for s in tiny:
            cmd += ["--set", s]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        metrics = os.path.join(run_dir, "metrics.jsonl")

        def rows():
            try:
                with open(metrics) as f:
                    return [json.loads(l) for l in f if l.endswith("\n")]
            except OSError:
                return []
        while not any(r["step"] >= 15 for r in rows()):
            time.sleep(0.01)
        with open(os.path.join(run_dir, "workers.json")) as f:
            victim = next(w["pid"] for w in json.load(f) if w["rank"] == 1)
        t_kill = time.time()
        os.kill(victim, 9)
        while not any(r.get("attempt") == 1 for r in rows()):
            time.sleep(0.005)
        t_first = time.time()
        proc.wait()
        with open(os.path.join(run_dir, "events.jsonl")) as f:
            ev = [json.loads(l) for l in f]
        failed = next(e["time"] for e in ev if e["event"] == "attempt_failed")
        launched = next(e["time"] for e in ev if e["event"] == "launch" and e["attempt"] == 1)
        totals.append(t_first - t_kill)
        print(f"| {rnd + 1} | {failed - t_kill:.2f} | {launched - t_kill:.2f} | {t_first - launched:.2f} | "
              f"{t_first - t_kill:.2f} |", flush=True)
    print(f"median death -> first step: {statistics.median(totals):.2f} s")


if __name__ == "__main__":
    environment()
    {"load": load, "restart": restart}[sys.argv[1] if len(sys.argv) > 1 else "load"]()
