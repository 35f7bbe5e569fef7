"""Mixture of experts trains for real (model.num_experts): 4 experts behind a router, the
load-balancing loss on. Routed to all 4 experts (no discrete choice left), one rank's loss trajectory
is reproduced within 1e-5 by 4 ranks with the experts shared by 2 and by 4 of them (expert
parallelism: tokens travel by all-to-all, the experts' gradients are summed over their replicas
only), pipelined as FSMoE does in chunks with forward and backward degrees of their own, by 2
pipeline stages, by 2 stages whose data-parallel pair shares the experts, and by a run
cut at step 4 and resumed from its per-expert-group checkpoint shards. Top-2 routing with a
capacity that drops tokens learns, reports the router's load, and agrees with one rank step for
step while their routing is the same: a routing decision is discrete, so once float-level
differences in the summation order flip one (it happens without expert parallelism too), the
trajectories part. With the degrees on auto each expert group profiles itself and writes
moe_costs.json, which `rondo plan --json` reads back (moe.cost_file) to print moe_layers. Layouts the
worker cannot run are refused naming the key."""
import json
import os
import subprocess

from rondo_testlib import TINY, Context, by_step, rel_diff

ctx = Context()

MOE = TINY + ["training.train_iters=10", "training.micro_batch_size=2", "training.global_batch_size=8",
              "model.num_experts=4", "model.moe_capacity_factor=1.0", "model.moe_aux_loss_coeff=0.01"]
ALL4 = MOE + ["model.moe_router_topk=4"]
TOP2 = MOE + ["model.moe_router_topk=2"]


def agrees(name, ref, sets):
    run, _ = ctx.run(name, sets)
    got = by_step(run)
    same = sorted(got) == sorted(ref)
    worst = max(rel_diff(ref[s]["loss"], got[s]["loss"]) for s in ref) if same else float("inf")
    print(f"{name}: largest relative loss difference over {len(ref)} steps {worst:.3e}")
    ctx.check(worst <= 1e-5, f"{name} reproduces one rank's losses within 1e-5 relative (worst {worst:.3e})")
    ctx.check(same and all(got[s]["moe_routed"] == ref[s]["moe_routed"] for s in ref),
              f"{name}: the router's load summed over the ranks equals one rank's")
    return got


one, _ = ctx.run("moe1-all4", ALL4 + ["parallel.world_size=1"])
ref = by_step(one)
ctx.check(sorted(ref) == list(range(1, 11)) and ref[10]["loss"] < ref[1]["loss"] - 0.3,
          f"one rank learns ({ref[1]['loss']:.3f} -> {ref[10]['loss']:.3f})")
ctx.check(all(r["moe_dropped"] == 0 for r in ref.values()), "routed to every expert, nothing is dropped")
agrees("moe4-ep2", ref, ALL4 + ["parallel.world_size=4", "parallel.expert_model_parallel_size=2"])
# moe.a2a_overlap_degree and moe.bwd_degree auto (the default): the expert groups profiled themselves.
DEGREES = list(range(1, 17))  # the degrees the choice considers
with open(os.path.join(ctx.tmp, "moe4-ep2", "moe_costs.json")) as f:
    costs = json.load(f)
ctx.check([layer["layer"] for layer in costs["layers"]] == [0, 1] and
          all(1 <= layer["chosen_degree"] <= 16 and 1 <= layer["chosen_bwd_degree"] <= 16 and
              sorted(map(int, layer["forward_s"])) == DEGREES for layer in costs["layers"]) and
          costs["alltoall"]["alpha_s"] + costs["alltoall"]["beta_s_per_byte"] > 0 and
          costs["expert"]["beta_s_per_flop"] > 0,
          f"auto: moe_costs.json holds the fitted costs and each layer's degrees "
          f"({costs['layers'][0]['chosen_degree']}/{costs['layers'][0]['chosen_bwd_degree']})")
plan = subprocess.run([ctx.rondo, "plan", "--json"] + [a for s in ALL4 + ["parallel.world_size=4",
                       "parallel.expert_model_parallel_size=2", "moe.bwd_degree=2", "moe.cost_file=" +
                       os.path.join(ctx.tmp, "moe4-ep2", "moe_costs.json")] for a in ("--set", s)],
                      capture_output=True, text=True)
layers = json.loads(plan.stdout)["moe_layers"] if plan.returncode == 0 else []
ctx.check(len(layers) == 2 and layers[0]["chosen_bwd_degree"] == 2 and
          sorted(map(int, layers[0]["degree_predictions"])) == DEGREES,
          f"rondo plan --json prints moe_layers from the profiled costs (exit {plan.returncode})")
agrees("moe4-ep4", ref, ALL4 + ["parallel.world_size=4", "parallel.expert_model_parallel_size=4"])
# FSMoE's pipeline: the exchanges in chunks overlapping the experts' compute.
agrees("moe4-ep2-degrees-4-2", ref, ALL4 + ["parallel.world_size=4", "parallel.expert_model_parallel_size=2",
                                            "moe.a2a_overlap_degree=4", "moe.bwd_degree=2"])
agrees("moe4-ep4-degrees-2-4", ref, ALL4 + ["parallel.world_size=4", "parallel.expert_model_parallel_size=4",
                                            "moe.a2a_overlap_degree=2", "moe.bwd_degree=4"])
agrees("moe2-pp2", ref, ALL4 + ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2"])
agrees("moe4-pp2-ep2", ref, ALL4 + ["parallel.world_size=4", "parallel.pipeline_model_parallel_size=2",
                                    "parallel.expert_model_parallel_size=2"])

# Cut after step 4 and resumed: each expert group's first replica wrote its shard.
cut, resumed = ctx.run_interrupted("moe4-ep2-resume", ALL4 + ["parallel.world_size=4",
                                                              "parallel.expert_model_parallel_size=2",
                                                              "checkpoint.interval=4"], 4)
ctx.check(resumed, "the second launch resumed from checkpoint step-4")
got = by_step(cut)
worst = max(rel_diff(ref[s]["loss"], got[s]["loss"]) for s in ref) if sorted(got) == sorted(ref) else float("inf")
ctx.check(worst <= 1e-5, f"cut at step 4 and resumed with ep 2, one rank's losses within 1e-5 (worst {worst:.3e})")
shards = sorted(os.listdir(os.path.join(cut, "checkpoints", "step-8")))
ctx.check("model-pp0-tp0-ep0.safetensors" in shards and "model-pp0-tp0-ep1.safetensors" in shards,
          f"one model shard per expert group position: {[f for f in shards if f.startswith('model')]}")

# Top-2 routing, assignments dropped by the capacity.
top2, _ = ctx.run("moe1-top2", TOP2 + ["parallel.world_size=1"])
ref = by_step(top2)
first = ref[1]
ctx.check(ref[10]["loss"] < ref[1]["loss"] - 0.3, f"top-2 learns ({ref[1]['loss']:.3f} -> {ref[10]['loss']:.3f})")
ctx.check(sorted(first["moe_routed"]) == ["0", "1"] and
          all(sum(first["moe_routed"][layer]) == 8 * 64 * 2 for layer in ("0", "1")),
          f"every layer routes each token to 2 experts: {first['moe_routed']}")
ctx.check(all(k <= r for layer in ("0", "1") for k, r in zip(first["moe_kept"][layer], first["moe_routed"][layer])),
          "no expert keeps more than was routed to it")
dropped = [r["moe_dropped"] for r in ref.values()]
ctx.check(max(dropped) > 0, f"capacity factor 1.0 drops assignments (share per step up to {max(dropped):.3f})")
ctx.check(all(r["moe_aux_loss"] >= 0.01 * 2 * 0.999 for r in ref.values()),
          "the load-balancing loss (2 layers x 0.01 x >= 1) is reported every step")
ep2, _ = ctx.run("moe4-top2-ep2", TOP2 + ["parallel.world_size=4", "parallel.expert_model_parallel_size=2"])
got = by_step(ep2)
same_routing = [s for s in sorted(ref) if all(got[t]["moe_routed"] == ref[t]["moe_routed"] for t in range(1, s + 1))]
worst = max(rel_diff(ref[s]["loss"], got[s]["loss"]) for s in same_routing) if same_routing else float("inf")
print(f"top-2 at ep 2: the same routing as one rank through step {max(same_routing, default=0)}, "
      f"losses within {worst:.3e} there; after it, within "
      f"{max(rel_diff(ref[s]['loss'], got[s]['loss']) for s in ref):.3e}")
ctx.check(len(same_routing) >= 2 and worst <= 1e-5,
          f"top-2 at ep 2 agrees with one rank within 1e-5 while routing alike ({len(same_routing)} steps)")
ctx.check(got[10]["loss"] < got[1]["loss"] - 0.3, "top-2 at ep 2 learns")

for name, sets, key in [
    ("experts-not-divisible", ["model.num_experts=3", "parallel.world_size=4", "parallel.expert_model_parallel_size=2"],
     "parallel.expert_model_parallel_size"),
    ("ep-not-dividing-dp", ["parallel.world_size=4", "parallel.expert_model_parallel_size=3"],
     "parallel.expert_model_parallel_size"),
    ("topk-above-experts", ["model.moe_router_topk=5"], "model.moe_router_topk"),
    ("capacity-zero", ["model.moe_capacity_factor=0"], "model.moe_capacity_factor"),
    ("dense-with-ep", ["model.num_experts=0", "parallel.world_size=2", "parallel.expert_model_parallel_size=2"],
     "parallel.expert_model_parallel_size"),
    ("chunked", ["data.chunk_size=32"], "data.chunk_size"),
    ("degree-zero", ["moe.a2a_overlap_degree=0"], "moe.a2a_overlap_degree"),
]:
    _, proc = ctx.run(f"refused-{name}", TOP2 + sets, expect_status=None)
    out = proc.stdout + proc.stderr
    ctx.check(proc.returncode != 0 and key in out, f"{name}: refused naming {key} (exit {proc.returncode})")
ctx.finish()
