"""A real slow link: three ranks on three "hosts" (network namespaces on a bridge,
scripts/netns-hosts), Open MPI over TCP, and one direction of one link -- host 1 towards host 2,
rank 0's sends to rank 1 -- held to 50 Mbit/s (an htb class, `netns-hosts link`). The ring allreduce crosses
it every step. The detector names that link, from rank 0 to rank 1, and neither of its endpoints
as a slow rank; `rondo diagnose` replays the run to the same verdict. Then the same job with the
verdict's link in comms.avoid_links: the plan orders the ring the other way round (0 -> 2 -> 1),
the throttled link carries next to nothing and is not named again, and every step trains. The allreduce times of the three runs
(one before the link was throttled) are printed for bench/RESULTS.md. Last, faults.policy replan
does the same by itself while the job runs: the verdict re-plans the ring around the link, every
rank sends round the new ring from the same step (no relaunch), the job finishes, every step
trained once. (The ring order's effect
on the losses -- the same sums added in another order -- is checked in the unit tests.) Needs root; CTest's cleanup
fixture (system.netns_hosts_down) removes the namespaces however this test ends."""
import json
import os
import re
import subprocess
import tempfile

import statistics

from rondo_testlib import Context, events, losses, rows

ctx = Context()
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "netns-hosts")
hosts = os.environ.get("RONDO_NETNS_DIR") or tempfile.mkdtemp(prefix="rondo-netns-")
# Gradients of ~1.7 MB: a ring block of ~0.3 MB takes ~50 ms on the 50 Mbit/s link, well under a
# millisecond on the others.
# Compute is emulated (each forward and backward sleeps for its predicted time, ~35 ms a step):
# three ranks computing for real on two cores keep each other off the cores, and a rank taking in
# its transfers late makes the link into it look slow (docs/faults.md). The reductions are real.
SETS = ["model.num_layers=2", "model.hidden_size=128", "model.num_attention_heads=4",
        "model.ffn_hidden_size=512", "model.seq_length=64", "training.micro_batch_size=4",
        "training.global_batch_size=12", "training.train_iters=40", "training.lr_warmup_iters=0",
        "checkpoint.interval=0", "parallel.world_size=3", "comms.bucket_size_mb=100",
        "training.emulate_compute=true", "pipeline.device_tflops=0.02"]


def netns_hosts(*args):
    p = subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"scripts/netns-hosts {' '.join(args)} failed: {p.stdout}{p.stderr}")


def throttled_bytes():
    out = subprocess.run(["ip", "netns", "exec", "rondo-ns1", "tc", "-s", "class", "show", "dev", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"class htb 1:10 .*?Sent (\d+) bytes", out, re.S)
    return int(m.group(1)) if m else 0


def allreduce_ms(run_dir):
    return 1e3 * statistics.median(r["allreduce_s"] for r in rows(run_dir) if r["step"] > 5)


try:
    netns_hosts("up", hosts, "3")
    launch = [f"launch.{key}={open(os.path.join(hosts, key)).read().strip()}"
              for key in ("mpirun_args", "control_address")]
    healthy, _ = ctx.run("healthy", SETS + launch)
    netns_hosts("link", hosts, "2", "50mbit")
    run_dir, proc = ctx.run("slow_link", SETS + launch)
    sent = throttled_bytes()
    print(f"the throttled link carried {sent} bytes")
    ctx.check(sent > 4 << 20, f"rank 0's sends to rank 1 went through the throttled link ({sent} bytes)")
    found = [e for e in events(run_dir) if e.get("event") == "fault"]
    print("verdicts:", json.dumps(found))
    links = [f for f in found if f["kind"] == "slow_link"]
    ctx.check(len(links) >= 1 and links[0].get("link") == [0, 1],
              f"the link from rank 0 to rank 1 is named: {[f.get('link') for f in links]}")
    if links:
        ctx.check(links[0]["evidence"]["ratio"] > 8,
                  f"its transfers took {links[0]['evidence']['ratio']:.0f}x as long per byte as the others'")
    ctx.check(all(f.get("link") == [0, 1] for f in links), "no other link is named")
    ctx.check(not any(f["kind"] == "slow_rank" and set(f["ranks"]) & {0, 1} for f in found),
              f"neither endpoint is named a slow rank: {[(f['kind'], f['ranks']) for f in found]}")
    p = subprocess.run([ctx.rondo, "diagnose", run_dir, "--json"], capture_output=True, text=True, timeout=120)
    replayed = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    ctx.check(p.returncode == 3 and [v.get("link") for v in replayed if v["kind"] == "slow_link"][:1] == [[0, 1]],
              f"rondo diagnose replays it to the same link (exit {p.returncode})")

    # Re-planned around the verdict's link.
    before = throttled_bytes()
    around, proc = ctx.run("around", SETS + launch + ["comms.avoid_links=0>1"])
    with open(os.path.join(around, "plan.json")) as f:
        rings = [g["ring"] for g in json.load(f)["rings"]]
    ctx.check(rings == [[0, 2, 1]], f"the plan's ring goes the other way round: {rings}")
    crossed = throttled_bytes() - before
    ctx.check(crossed < 1 << 20, f"the throttled link carried next to nothing ({crossed} bytes)")
    named = [e.get("link") for e in events(around) if e.get("event") == "fault" and e["kind"] == "slow_link"]
    ctx.check(named == [], f"no link is named (links named: {named})")
    ctx.check(sorted(losses(around)) == list(range(1, 41)), "the re-planned run trained every step")
    # faults.policy replan: the same by itself in one `rondo run`, the ring changed while it runs.
    auto, proc = ctx.run("replan", SETS + launch + ["faults.policy=replan"])
    evs = events(auto)
    kinds = [e["event"] for e in evs]
    replanned = [e for e in evs if e["event"] == "rings_replanned"]
    applied = [e for e in evs if e["event"] == "rings_applied"]
    ctx.check(len(replanned) == 1 and replanned[0]["link"] == [0, 1] and replanned[0]["rings"] == [[0, 2, 1]],
              f"the verdict re-planned the ring around 0>1 while the job ran: {replanned}")
    ctx.check(len(applied) == 1 and applied[0]["rings"] == [[0, 2, 1]] and kinds.count("launch") == 1
              and "replan_requested" not in kinds,
              f"every rank went round the new ring from step {applied[0]['from_step'] if applied else '?'}, "
              f"without a relaunch ({kinds.count('launch')} launch(es))")
    with open(os.path.join(auto, "plan.json")) as f:
        ctx.check([g["ring"] for g in json.load(f)["rings"]] == [[0, 2, 1]], "its plan.json's ring avoids the link")
    with open(os.path.join(auto, "state.json")) as f:
        phase = json.load(f)["phase"]
    steps = [r["step"] for r in rows(auto)]
    ctx.check(phase == "finished" and sorted(set(steps)) == list(range(1, 41)) and len(steps) == 40,
              f"it finished, every step trained once (phase {phase}, {len(steps)} rows)")
    if applied:
        switched = applied[0]["from_step"]
        after = [r["allreduce_s"] for r in rows(auto) if r["step"] >= switched + 2]
        before_switch = [r["allreduce_s"] for r in rows(auto) if 5 < r["step"] < switched]
        if after and before_switch:
            print(f"live re-ring at step {switched}: allreduce {1e3 * statistics.median(before_switch):.1f} ms "
                  f"before, {1e3 * statistics.median(after):.1f} ms after")
    print(f"allreduce per step (median of steps 6-40): healthy {allreduce_ms(healthy):.1f} ms, "
          f"throttled link {allreduce_ms(run_dir):.1f} ms, ring around it {allreduce_ms(around):.1f} ms")
finally:
    netns_hosts("down", hosts)
ctx.finish()
