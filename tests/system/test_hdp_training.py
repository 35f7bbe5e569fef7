"""Hybrid data/context parallelism trains for real (parallel.hdp): every step a batch of whole
documents of mixed lengths (data.tokens_per_step), planned afresh on every rank, each sequence alone
or split over a group of ranks with ring attention, the gradients summed over the world. On 4 ranks
each policy (rondo, static, megatron) reproduces the same batches run on one rank within 1e-5 per
step; so do a run on two hosts (groups placed on one host where they can), a run cut at step 4 and
resumed, and batches so small that the plan leaves ranks idle.
With pipeline parallelism the plan's groups are of pipelines (each sequence split over the same
stage of several pipelines, its sub-batch the same microbatch of each one's 1F1B or GPipe schedule):
2 and 3 pipelines of 2 stages reproduce one rank too. A sequence no group can hold is refused
naming the cap's key. With emulated compute the run reports the measured busy max/mean beside the
planner's, with and without pipelines."""
from rondo_testlib import TINY, Context, by_step, rel_diff

ctx = Context()

# Documents of median 20 tokens cut at 64: short ones packed alone, long ones over 2-4 ranks of 16.
HDP = TINY + ["training.train_iters=12", "data.path=lognormal", "data.lognormal_mu=3", "data.lognormal_sigma=1",
              "data.lognormal_documents=2000", "parallel.hdp=true", "data.tokens_per_step=512"]
FOUR = ["parallel.world_size=4", "parallel.max_tokens_per_rank=16"]


def agrees(name, ref, sets):
    run, _ = ctx.run(name, sets)
    got = by_step(run)
    same = sorted(got) == sorted(ref)
    worst = max(rel_diff(ref[s]["loss"], got[s]["loss"]) for s in ref) if same else float("inf")
    print(f"{name}: largest relative loss difference over {len(ref)} steps {worst:.3e}")
    ctx.check(worst <= 1e-5, f"{name} agrees with one rank within 1e-5 relative (worst {worst:.3e})")
    ctx.check(same and all(got[s]["tokens"] == ref[s]["tokens"] and got[s]["targets"] == ref[s]["targets"]
                           for s in ref), f"{name} trains the same tokens and counts the same targets")
    return got


one, _ = ctx.run("hdp1", HDP + ["parallel.world_size=1"])
ref = by_step(one)
ctx.check(sorted(ref) == list(range(1, 13)) and ref[12]["loss"] < ref[1]["loss"] - 0.3,
          f"one rank logs steps 1..12 and learns ({ref[1]['loss']:.3f} -> {ref[12]['loss']:.3f})")
ctx.check(len({ref[s]["tokens"] for s in ref}) > 1 and all(ref[s]["tokens"] <= 512 for s in ref),
          "each step's tokens are its own batch's, within data.tokens_per_step")

degrees = {}
for policy in ("rondo", "static", "megatron"):
    got = agrees(f"hdp4-{policy}", ref, HDP + FOUR + [f"parallel.hdp_policy={policy}"])
    degrees[policy] = {int(d) for r in got.values() for d in r["hdp_degrees"]}
    ctx.check(all(r["hdp_policy"] == policy and sum(r["hdp_degrees"].values()) == r["hdp_sequences"]
                  for r in got.values()), f"{policy}: every step's sequences by degree, e.g. {got[1]['hdp_degrees']}")
ctx.check(degrees["static"] == {4}, f"static puts every sequence on the mesh's 4-rank group: {degrees['static']}")
ctx.check(degrees["megatron"] <= {1, 2, 4} and len(degrees["megatron"]) > 1,
          f"megatron uses power-of-two groups: {degrees['megatron']}")
ctx.check(1 in degrees["rondo"] and max(degrees["rondo"]) > 1, f"rondo mixes single ranks and groups: {degrees['rondo']}")

# Two hosts of two ranks joined by a slow link: every rank plans with the hosts (the plan's
# HdpSpec), groups land on one host where they can, and the losses stay one rank's.
HOSTS = ["topology.leaves=1", "topology.hosts_per_leaf=2", "topology.ranks_per_host=2", "topology.host_gbps=0.001"]
got = agrees("hdp4-rondo-hosts", ref, HDP + FOUR + HOSTS)
pairs = sum(r["hdp_degrees"].get("2", 0) for r in got.values())
across = sum(r["hdp_groups_across_hosts"] for r in got.values())
wide = sum(r["hdp_degrees"].get("3", 0) + r["hdp_degrees"].get("4", 0) for r in got.values())
ctx.check(pairs > 0 and across == wide, f"groups of 2 stay on a host, only groups of 3-4 span both "
          f"({pairs} pairs, {wide} wider groups, {across} across hosts)")

# Stopped after step 4 and resumed: the same batches are drawn again from the seed.
cut, resumed = ctx.run_interrupted("hdp4-resume", HDP + FOUR + ["checkpoint.interval=4"], 4)
ctx.check(resumed, "the second launch resumed from checkpoint step-4")
got = by_step(cut)
worst = max(rel_diff(ref[s]["loss"], got[s]["loss"]) for s in ref) if sorted(got) == sorted(ref) else float("inf")
ctx.check(worst <= 1e-5, f"cut at step 4 and resumed, HDP agrees with one rank within 1e-5 (worst {worst:.3e})")

# Batches of a few sequences: the plan leaves ranks without work, which still join the reduction.
SMALL = HDP + ["data.tokens_per_step=96"]
small_one, _ = ctx.run("hdp1-small", SMALL + ["parallel.world_size=1"])
got = agrees("hdp4-small", by_step(small_one), SMALL + ["parallel.world_size=4", "parallel.max_tokens_per_rank=32"])
idle = sum(r["hdp_idle_ranks"] for r in got.values())
ctx.check(idle > 0, f"ranks left idle by the plan ({idle} rank-steps) take part in the step")

# Pipelines of 2 stages: groups of 2 and 3 pipelines, the schedules HDP runs on them.
PP2 = ["parallel.pipeline_model_parallel_size=2"]
for name, sets in (("hdp4-pp2-rondo", ["parallel.world_size=4", "parallel.max_tokens_per_rank=32"]),
                   ("hdp4-pp2-megatron-gpipe", ["parallel.world_size=4", "parallel.max_tokens_per_rank=32",
                                                "parallel.hdp_policy=megatron", "pipeline.schedule=gpipe"]),
                   ("hdp6-pp2-rondo", ["parallel.world_size=6", "parallel.max_tokens_per_rank=22"])):
    got = agrees(name, ref, HDP + PP2 + sets)
    degrees = {int(d) for r in got.values() for d in r["hdp_degrees"]}
    ctx.check(max(degrees) > 1, f"{name}: sequences split over groups of pipelines: {degrees}")
_, proc = ctx.run("hdp-pp-cap", HDP + PP2 + ["parallel.world_size=4", "parallel.max_tokens_per_rank=16"],
                  expect_status=None)
ctx.check(proc.returncode != 0 and "parallel.max_tokens_per_rank" in proc.stderr + proc.stdout,
          f"2 pipelines cannot hold a 64-token sequence at 16 tokens per rank: refused naming the key")

# No group of 4 ranks holds a 64-token sequence at 8 tokens per rank: refused before launch.
_, proc = ctx.run("hdp-cap", HDP + ["parallel.world_size=4", "parallel.max_tokens_per_rank=8"], expect_status=None)
ctx.check(proc.returncode != 0 and "parallel.max_tokens_per_rank" in proc.stderr + proc.stdout,
          f"a sequence no group holds is refused naming the key (exit {proc.returncode})")

# Emulated compute: each sub-batch sleeps for the planner's seconds, groups meet for real.
emulated, _ = ctx.run("hdp4-emulated", HDP + FOUR + ["training.emulate_compute=true", "pipeline.device_tflops=0.005"])
got = by_step(emulated)
ctx.check(all("hdp_busy_max_over_mean" in r and r["hdp_busy_max_over_mean_predicted"] >= 1.0 for r in got.values()),
          "every step reports the measured busy max/mean beside the planner's")
emulated, _ = ctx.run("hdp4-pp2-emulated", HDP + PP2 + ["parallel.world_size=4", "parallel.max_tokens_per_rank=32",
                                                        "training.emulate_compute=true", "pipeline.device_tflops=0.005"])
got = by_step(emulated)
ctx.check(sorted(got) == list(range(1, 13)) and all("hdp_busy_max_over_mean" in r for r in got.values()),
          "with pipelines too (the emulated stages hand on each sub-batch's own size)")
ctx.finish()
