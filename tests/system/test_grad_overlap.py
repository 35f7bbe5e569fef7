"""Overlapped gradient reduction (comms.overlap_grad_reduce): the same losses as one allreduce
after the backward and as one rank; buckets really start during the backward; over a slow
(emulated) link the exposed allreduce wait per step drops; every step reports its breakdown."""
import json
import os
import statistics

from rondo_testlib import TINY, Context, losses, rel_diff

ctx = Context()


def rows(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


# Small buckets, so that the tiny model's gradients travel in several pieces.
BUCKETS = ["comms.bucket_size_mb=0.05"]
one, _ = ctx.run("dp1", TINY + ["parallel.world_size=1"])
on, _ = ctx.run("on", TINY + BUCKETS + ["parallel.world_size=2", "comms.overlap_grad_reduce=true"])
off, _ = ctx.run("off", TINY + ["parallel.world_size=2", "comms.overlap_grad_reduce=false"])
a, b, c = losses(one), losses(on), losses(off)
worst_on_off = max(rel_diff(b[s], c[s]) for s in b)
worst_on_one = max(rel_diff(b[s], a[s]) for s in b)
print(f"overlap on vs off: {worst_on_off:.3e}; overlap on (dp=2) vs dp=1: {worst_on_one:.3e}")
ctx.check(sorted(b) == list(range(1, 21)), "the overlapped run logged steps 1..20")
ctx.check(worst_on_off <= 1e-5, f"overlap on reproduces overlap off within 1e-5 (worst {worst_on_off:.3e})")
ctx.check(worst_on_one <= 1e-5, f"overlap on at dp=2 reproduces dp=1 within 1e-5 (worst {worst_on_one:.3e})")

r_on = rows(on)
ctx.check(all(r["grad_buckets"] >= 3 for r in r_on), f"several buckets ({r_on[0]['grad_buckets']})")
ctx.check(all(r["grad_buckets_started_in_backward"] >= 1 for r in r_on),
          "every step started buckets while its backward was still running")
keys = ["data_s", "forward_s", "backward_s", "allreduce_s", "optimizer_s", "max_rss_mb", "page_faults"]
ctx.check(all(all(k in r for k in keys) for r in r_on + rows(off)), f"every row has {', '.join(keys)}")
ctx.check(all(r["data_s"] + r["forward_s"] + r["backward_s"] + r["allreduce_s"] + r["optimizer_s"]
              <= r["step_time_s"] * 1.0001 for r in r_on), "the breakdown fits inside the step time")
ctx.check(all(r["max_rss_mb"] > 10 for r in r_on), f"max_rss_mb is the resident set ({r_on[-1]['max_rss_mb']:.0f} MB)")

# A slow link (0.2 GB/s: the 3.5 MB of gradients take about 20 ms per step) with a model whose
# backward lasts long enough to hide part of it.
SLOW = TINY + ["parallel.world_size=2", "comms.emulated_link_gbps=0.2", "model.num_layers=4",
               "model.hidden_size=128", "model.ffn_hidden_size=512", "comms.bucket_size_mb=0.25"]
slow_on, _ = ctx.run("slow-on", SLOW + ["comms.overlap_grad_reduce=true"])
slow_off, _ = ctx.run("slow-off", SLOW + ["comms.overlap_grad_reduce=false"])
exposed_on = statistics.median(r["allreduce_s"] for r in rows(slow_on)[3:])
exposed_off = statistics.median(r["allreduce_s"] for r in rows(slow_off)[3:])
print(f"emulated slow link: exposed allreduce per step {exposed_on * 1e3:.1f} ms with overlap, "
      f"{exposed_off * 1e3:.1f} ms without")
ctx.check(exposed_on < exposed_off, "overlap lowers the exposed allreduce time over a slow link")
done = sum(r["grad_buckets_done_in_backward"] for r in rows(slow_on))
ctx.check(done > 0, f"buckets completed while the backward ran ({done} over the run)")
d, e = losses(slow_on), losses(slow_off)
worst_slow = max(rel_diff(d[s], e[s]) for s in d)
ctx.check(worst_slow <= 1e-5, f"and the slow runs agree with each other (worst {worst_slow:.3e})")
ctx.finish()
