#!/usr/bin/env python3
"""Bubble and peak activations of every schedule at p in {4, 8, 16}, m in {p, 2p, 4p}, simulated by
`rondo simulate` (uniform F=1, B=2, W=1 per rank's share of layers, no communication), with the
closed form beside it where one exists. Prints a Markdown table.

  bench/schedule_table.py
"""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RONDO = os.path.join(os.environ.get("RONDO_BUILD_DIR", os.path.join(ROOT, "build")), "orchestrator", "rondo")
CASES = [("gpipe", None), ("1f1b", None), ("interleaved_1f1b", 2), ("interleaved_1f1b", 4), ("looped_bfs", 2),
         ("zb_h1", None), ("zbv", None), ("roundpipe", None)]


def simulate(schedule, p, m, v):
    cmd = [RONDO, "simulate", "--json", "--schedule", schedule, "--pp", str(p), "--microbatches", str(m)]
    if v:
        cmd += ["--virtual", str(v)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


print("| schedule | p | m | bubble (simulated) | bubble (closed form) | peak activations rank 0 / max / rank p-1 |")
print("| --- | --- | --- | --- | --- | --- |")
for p in (4, 8, 16):
    for m in (p, 2 * p, 4 * p):
        for schedule, v in CASES:
            j = simulate(schedule, p, m, v)
            name = schedule + (f" v={v}" if v else "")
            closed = f"{100 * j['analytic_bubble']:.1f}%" if "analytic_bubble" in j else "—"
            peaks = j["peak_activations"]
            print(f"| {name} | {p} | {m} | {100 * j['bubble_fraction']:.1f}% | {closed} | "
                  f"{peaks[0]:g} / {max(peaks):g} / {peaks[-1]:g} |")

# Uneven model, Llama3-8B-like in layer-forward units: embedding 0.05, 32 transformer layers of
# 1.0, LM head 2.4 (2*h*V = 1.05 GFLOP/token against 0.44 GFLOP/token per layer at h=4096,
# V=128256, SwiGLU ffn 14336, GQA 8 KV heads). The partitioner groups the 34 layers into stages.
LLAMA = ",".join(["0.05"] + ["1.0"] * 32 + ["2.4"])
print()
print("Uneven model (embedding 0.05, 32 layers of 1.0, LM head 2.4), p=8, m=16, balanced partition:")
print()
print("| schedule | mode | bubble (steady state when async) | step time (layer-forward units) | peak activations max |")
print("| --- | --- | --- | --- | --- |")
for schedule, v, mode, dispatch in [("1f1b", None, "sync", None), ("1f1b", None, "async", None),
                                    ("interleaved_1f1b", 2, "sync", None), ("looped_bfs", 2, "sync", None),
                                    ("zb_h1", None, "sync", None), ("zbv", None, "sync", None),
                                    ("roundpipe", None, "sync", "rounds"), ("roundpipe", None, "sync", "earliest_free"),
                                    ("roundpipe", None, "async", "earliest_free")]:
    cmd = [RONDO, "simulate", "--json", "--schedule", schedule, "--pp", "8", "--microbatches", "16",
           "--layer-costs", LLAMA]
    if v:
        cmd += ["--virtual", str(v)]
    if mode == "async":
        cmd += ["--async"]
    if dispatch:
        cmd += ["--roundpipe-dispatch", dispatch]
    j = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    name = schedule + (f" v={v}" if v else "") + (f" ({dispatch})" if dispatch else "")
    # One iteration's time: the whole run divided by its iterations (steady state dominates).
    step = j["makespan"] / j["iterations"]
    print(f"| {name} | {mode} | {100 * j['bubble_fraction']:.1f}% | {step:.1f} | {max(j['peak_activations']):g} |")
