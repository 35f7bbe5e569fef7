"""Helpers for rondo's system tests: run `rondo run` for real and read what it leaves behind."""
import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

# A model small enough that 20 steps take seconds on two cores.
TINY = [
    "model.num_layers=2", "model.hidden_size=64", "model.num_attention_heads=4",
    "model.ffn_hidden_size=256", "model.seq_length=64",
    "training.micro_batch_size=4", "training.global_batch_size=8", "training.train_iters=20",
    "training.lr=1e-3", "training.lr_warmup_iters=0", "training.lr_decay_style=constant",
    "checkpoint.interval=0",
]


class Context:
    def __init__(self):
        parser = argparse.ArgumentParser()
        parser.add_argument("--rondo", required=True)
        parser.add_argument("--worker", required=True)
        parser.add_argument("--control-load", help="bench/control_load (calls the control plane must refuse)")
        parser.add_argument("--artifacts", help="where a test keeps what people look at (screenshots)")
        args = parser.parse_args()
        self.rondo = args.rondo
        self.worker = args.worker
        self.control_load = args.control_load
        self.artifacts = args.artifacts
        self.tmp = tempfile.mkdtemp(prefix="rondo-system-")
        self.failures = 0
        self.checks = 0

    def cli(self, *args, expect=0):
        """`rondo ARGS...` (not a run): its stdout and stderr together; fails unless it exits `expect`."""
        proc = subprocess.run([self.rondo, *args], capture_output=True, text=True, timeout=600)
        if proc.returncode != expect:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise AssertionError(f"rondo {' '.join(args)} exited {proc.returncode}, expected {expect}")
        return proc.stdout + proc.stderr

    def run(self, run_name, sets, expect_status=0):
        run_dir = os.path.join(self.tmp, run_name)
        cmd = [self.rondo, "run", "--run-dir", run_dir, "--worker", self.worker]
        for s in sets:
            cmd += ["--set", s]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=800)
        if expect_status is not None and proc.returncode != expect_status:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}, expected {expect_status}")
        return run_dir, proc

    def run_interrupted(self, run_name, sets, at):
        """The run stopped after step `at` (training.exit_interval), then the same command again:
        (run_dir, whether the second launch resumed from checkpoint step-`at`)."""
        run_dir, _ = self.run(run_name, sets + [f"training.exit_interval={at}"])
        _, proc = self.run(run_name, sets)
        return run_dir, f"resumed from checkpoint step-{at}" in proc.stderr

    def start(self, run_name, sets, extra=()):
        """`rondo run` in the background: (run_dir, Popen with stdout+stderr in run_dir + '.out')."""
        run_dir = os.path.join(self.tmp, run_name)
        cmd = [self.rondo, "run", "--run-dir", run_dir, "--worker", self.worker, *extra]
        for s in sets:
            cmd += ["--set", s]
        out = open(run_dir + ".out", "w")
        return run_dir, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)

    def check(self, ok, message):
        self.checks += 1
        if not ok:
            self.failures += 1
            print("FAIL:", message)
        else:
            print("ok:", message)

    def finish(self):
        print(f"{self.checks - self.failures} passed, {self.failures} failed")
        if self.failures == 0:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print("run directories kept in", self.tmp)
        sys.exit(1 if self.failures else 0)


def losses(run_dir):
    """step -> loss, the last row of each step winning (a resumed run appends)."""
    out = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "loss" in row:  # not an evaluation's row
                out[row["step"]] = row["loss"]
    return out


def rows(run_dir):
    """Every metrics row, in the order written."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def by_step(run_dir):
    """The training steps' metrics rows by step (a re-run step's last row)."""
    return {r["step"]: r for r in rows(run_dir) if "loss" in r}


def validations(run_dir):
    """The evaluations' rows (training.eval_interval) by the step evaluated (a re-run's last)."""
    return {r["step"]: r for r in rows(run_dir) if "val_loss" in r}


def events(run_dir):
    with open(os.path.join(run_dir, "events.jsonl")) as f:
        return [json.loads(line) for line in f]


def wait_for(predicate, timeout, what):
    """Polls predicate() every 20 ms until it returns a true value; raises naming `what` on timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def worker_pid(run_dir, rank):
    with open(os.path.join(run_dir, "workers.json")) as f:
        return next(w["pid"] for w in json.load(f) if w["rank"] == rank)


def wait_stopped(proc, pid, timeout):
    """Stops `pid` with SIGSTOP (a hung rank) and waits for `proc` to end; kills `pid` then, if it is
    still there. Returns the time of the stop."""
    t_stop = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        proc.wait(timeout=timeout)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return t_stop


def wait_slowed(proc, pid, stopped_s, period_s, timeout):
    """Waits for `proc` to end while `pid` is slowed for real: stopped for stopped_s of every
    period_s (a SIGSTOP/SIGCONT duty cycle, as a competing process or a throttled CPU would slow
    it). Leaves `pid` running, if it still is."""
    done = threading.Event()

    def duty_cycle():
        while not done.is_set():
            try:
                os.kill(pid, signal.SIGSTOP)
                time.sleep(stopped_s)
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                return
            time.sleep(period_s - stopped_s)

    slower = threading.Thread(target=duty_cycle)
    slower.start()
    try:
        proc.wait(timeout=timeout)
    finally:
        done.set()
        slower.join()
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def read_safetensors(path):
    """A safetensors file parsed here (rondo's reader not involved): name -> (dtype, shape, bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    return {k: (v["dtype"], v["shape"], data[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
            for k, v in header.items()}


def rel_diff(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def check_same_losses(ctx, run_dir, reference, what, tolerance=1e-5):
    """Checks that the run trained exactly the reference's steps, each loss within `tolerance`."""
    got = losses(run_dir)
    worst = max((rel_diff(reference[s], got[s]) for s in reference), default=float("inf")) \
        if sorted(got) == sorted(reference) else float("inf")
    ctx.check(worst < tolerance, f"{what}: every step's loss equals the uninterrupted run's (worst {worst:.1e})")
