#!/usr/bin/env python3
"""RoundPipe's published pipeline-simulator table (5 models x 5 schedules, p=8, m=16) reproduced
by `rondo simulate` with the same inputs, side by side. The inputs and the published figures are
in bench/data/roundpipe_pp_simulate.json (from RoundPipe-artifact's pp-simulate/run.sh and log).
Prints a Markdown table; exits 1 if a row misses the floor (makespan within 1%, bubble and each
of its parts within 0.5 points).

With --host-link it prints instead what RoundPipe's simulator leaves out: the Llama3-8B row of
both dispatches (RoundPipe's rounds, and each task to the earliest free worker) when every task's
stage weights cross a host link (bf16: 436 MB a layer, 1.05 GB the LM head; times in ms, so
1 GB/s = 1e6 bytes per unit), prefetched during the worker's previous task.

  bench/roundpipe_table.py [--rondo PATH] [--host-link]
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RONDO = os.path.join(os.environ.get("RONDO_BUILD_DIR", os.path.join(ROOT, "build")), "orchestrator", "rondo")
PARTS = ("fill", "switch", "drain", "intra")


def simulate(rondo, data, row, extra=()):
    m = data["models"][row["model"]]
    cmd = [rondo, "simulate", "--json", "--scheduler", row["scheduler"], "--num-gpus", str(data["num_gpus"]),
           "--num-microbatches", str(data["num_microbatches"]), "--stage-partition", row["stage_partition"],
           "--num-layers", str(m["num_layers"]), "--fwd-time-per-layer", str(m["fwd"]),
           "--bwd-time-per-layer", str(m["bwd"]), "--lmhead-fwd-time", str(m["head_fwd"]),
           "--lmhead-bwd-time", str(m["head_bwd"]), "--comm-time", str(m["comm"])] + list(extra)
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rondo", default=DEFAULT_RONDO)
    ap.add_argument("--data", default=os.path.join(ROOT, "bench", "data", "roundpipe_pp_simulate.json"))
    ap.add_argument("--host-link", action="store_true", help="the Llama3-8B dispatch comparison over a host link")
    args = ap.parse_args()
    data = json.load(open(args.data))
    if args.host_link:
        return host_link_table(args.rondo, data)
    print("| model | schedule | makespan rondo | makespan RoundPipe | Δ | bubble rondo | bubble RoundPipe | "
          "fill / switch / drain / intra rondo | fill / switch / drain / intra RoundPipe |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    misses = []
    for row in data["rows"]:
        ours, pub = simulate(args.rondo, data, row), row["published"]
        rel = ours["makespan"] / pub["makespan"] - 1
        parts = ours["bubble_parts"]
        worst_points = max([abs(ours["bubble_fraction"] - pub["bubble"])] + [abs(parts[k] - pub[k]) for k in PARTS])
        if abs(rel) > 0.01 or worst_points > 0.005:
            misses.append(f"{row['model']} {row['scheduler']}: makespan {100 * rel:+.2f}%, "
                          f"worst bubble part {100 * worst_points:.2f} points")
        fmt = lambda d, b: " / ".join(f"{100 * d[k]:.2f}" for k in PARTS)
        print(f"| {data['models'][row['model']]['name']} | {row['scheduler']} | {ours['makespan']:.3f} | "
              f"{pub['makespan']:.3f} | {100 * rel:+.3f}% | {100 * ours['bubble_fraction']:.2f}% | "
              f"{100 * pub['bubble']:.2f}% | {fmt(parts, None)} | {fmt(pub, None)} |")
    if misses:
        print("\nrows off the floor:\n  " + "\n  ".join(misses), file=sys.stderr)
        return 1
    print(f"\nall {len(data['rows'])} rows: makespan within 1%, bubble and its parts within 0.5 points")
    return 0


def host_link_table(rondo, data):
    row = next(r for r in data["rows"] if r["model"] == "8b" and r["scheduler"] == "roundpipe")
    print("| host link GB/s | dispatch | makespan | bubble | exposed upload wait (summed over workers) |")
    print("| --- | --- | --- | --- | --- |")
    for gbps in (0, 32, 25, 16, 12, 8):
        for dispatch in ("rounds", "earliest_free"):
            extra = ["--roundpipe-dispatch", dispatch]
            if gbps:
                extra += ["--layer-weight-bytes", "436e6", "--lmhead-weight-bytes", "1.05e9", "--h2d-bandwidth",
                          str(gbps * 1e6)]
            j = simulate(rondo, data, row, extra)
            print(f"| {gbps or 'free'} | {dispatch} | {j['makespan']:.1f} | {100 * j['bubble_fraction']:.2f}% | "
                  f"{j['exposed_host_transfer']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
