"""dp=2 (micro 4, global 8) reproduces dp=1 (micro 4, global 8: two accumulation steps)."""
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
ctx.finish()
