"""dp=2 (micro 4, global 8) reproduces dp=1 (micro 4, global 8: two accumulation steps); so do dp=4,
and dp=4 with its ring ordered by the fabric (topology.*)."""
import json

from rondo_testlib import TINY, Context, losses, rel_diff

ctx = Context()
dp1, _ = ctx.run("dp1", TINY + ["parallel.world_size=1"])
dp2, _ = ctx.run("dp2", TINY + ["parallel.world_size=2"])
a, b = losses(dp1), losses(dp2)
ctx.check(sorted(a) == list(range(1, 21)) and sorted(b) == list(range(1, 21)), "both runs logged steps 1..20")
worst = max(rel_diff(a[s], b[s]) for s in a)
print(f"largest relative loss difference over 20 steps: {worst:.3e}")
ctx.check(worst <= 1e-5, f"every step's loss agrees within 1e-5 relative (worst {worst:.3e})")
ctx.check(a[20] < a[1] - 0.5, f"loss decreases ({a[1]:.3f} -> {a[20]:.3f})")

# Four ranks with microbatches of 2 sum four gradients in a different order than one rank does.
mb2 = TINY + ["training.micro_batch_size=2"]
dp1m2, _ = ctx.run("dp1-micro2", mb2 + ["parallel.world_size=1"])
dp4m2, _ = ctx.run("dp4-micro2", mb2 + ["parallel.world_size=4"])
c, d = losses(dp1m2), losses(dp4m2)
worst4 = max(rel_diff(c[s], d[s]) for s in c)
print(f"dp=4 vs dp=1 (micro 2): largest relative loss difference {worst4:.3e}")
ctx.check(worst4 <= 1e-5, f"dp=4 agrees with dp=1 within 1e-5 relative (worst {worst4:.3e})")

# The same four ranks placed in turn on two leaves of a fabric (topology.*): the plan's ring goes
# 0 -> 2 -> 1 -> 3, leaving each leaf once, and the workers' allreduce follows it.
fabric = ["topology.leaves=2", "topology.hosts_per_leaf=4", "topology.spines=2", "topology.rank_hosts=0,4,1,5"]
ring4, _ = ctx.run("dp4-fabric", mb2 + ["parallel.world_size=4"] + fabric)
with open(ring4 + "/plan.json") as f:
    rings = [g["ring"] for g in json.load(f)["rings"]]
ctx.check(rings == [[0, 2, 1, 3]], f"the plan's ring leaves each leaf once: {rings}")
e = losses(ring4)
worst_ring = max(rel_diff(c[s], e[s]) for s in c) if sorted(e) == sorted(c) else float("inf")
ctx.check(worst_ring <= 1e-5, f"it agrees with dp=1 within 1e-5 relative (worst {worst_ring:.3e})")
ctx.finish()
