"""Asynchronous pipelines end to end (pipeline.async: PipeDream-2BW, one-step weight delay;
docs/optimizers.md):
- step 1 equals the synchronous step 1; step 2 computes on the initial weights (it equals a
  synchronous step 2 whose first update was negligible: lr 1e-30) and later steps differ from sync;
- the delayed rule is layout-independent: pp=2 (steps as windows of one 1F1B stream, the next
  step's warm-up forwards run ahead), dp=2 (gradients reduced in buckets during the backward, one
  reducer per weight version) and pp=2 x dp=2 reproduce one rank's async losses and gradient norms
  within 1e-5, for AdamW and Muon, without and with each correction (the rule itself is checked
  against a written-out reference in tests/worker/delayed_update_test.cpp);
- roundpipe's asynchronous mode (stateless workers, RoundPipe's dispatch) reproduces one rank too,
  with AdamW and Muon (each owner orthogonalising the whole matrices of its stages), also at
  pp=2 x dp=2;
- interrupted after step 10 and resumed (both weight versions, optimizer and correction state
  checkpointed; the warm-up recomputed), steps 11-20 equal the uninterrupted run's (1f1b with
  Muon, roundpipe with AdamW);
- metrics.jsonl marks async rows and reports measured and predicted bubbles;
- bad combinations are refused naming the key."""
import json
import os

from rondo_testlib import TINY, Context, rel_diff

ctx = Context()
BASE = TINY + ["training.micro_batch_size=2"]  # 4 microbatches per step at pp=2
PP2 = ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2", "pipeline.schedule=1f1b"]
DP2 = ["parallel.world_size=2"]
PP2DP2 = ["parallel.world_size=4", "parallel.pipeline_model_parallel_size=2", "pipeline.schedule=1f1b"]
ONE = ["parallel.world_size=1"]
ASYNC = ["pipeline.async=true"]


def rows(run_dir):
    out = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            out[row["step"]] = row
    return out


def worst(a, b, steps, key="loss"):
    return max(rel_diff(a[s][key], b[s][key]) if s in b else float("inf") for s in steps)


def run(name, sets):
    return rows(ctx.run(name, BASE + sets)[0])


sync = run("sync", ONE)
negligible = run("sync-lr-1e-30", ONE + ["training.lr=1e-30", "training.min_lr=0", "training.train_iters=2"])
one = run("async", ONE + ASYNC)
ctx.check(rel_diff(one[1]["loss"], sync[1]["loss"]) == 0.0, "step 1 equals the synchronous step 1 exactly")
ctx.check(rel_diff(one[2]["loss"], negligible[2]["loss"]) <= 1e-6,
          f"step 2 computes on W(0): {one[2]['loss']:.6f} vs {negligible[2]['loss']:.6f} after a 1e-30 update")
ctx.check(worst(one, sync, range(2, 21)) > 1e-3, "later steps differ from the synchronous run")
ctx.check(all(r.get("async") is True and r.get("delay_correction") == "none" for r in one.values()),
          "metrics.jsonl marks every row async, correction none")
ctx.check("async" not in sync[1], "synchronous rows carry no async mark")

for opt, correction in (("adamw", "none"), ("muon", "error_feedback"), ("adamw", "weight_prediction"),
                        ("muon", "velocity_prediction")):
    sets = ASYNC + [f"training.optimizer={opt}", f"pipeline.delay_correction={correction}"]
    ref = one if (opt, correction) == ("adamw", "none") else run(f"async-{opt}-{correction}", ONE + sets)
    if ref is not one:
        ctx.check(worst(ref, one, range(3, 21)) > 1e-4, f"{opt} + {correction} has its own trajectory")
    layouts = [("pp2", PP2), ("dp2", DP2)] + ([("pp2xdp2", PP2DP2)] if correction == "none" else [])
    for layout, extra in layouts:
        if layout == "dp2" and correction in ("weight_prediction", "velocity_prediction"):
            continue
        got = run(f"async-{opt}-{correction}-{layout}", extra + sets)
        lw, gw = worst(ref, got, range(1, 21)), worst(ref, got, range(1, 21), "grad_norm")
        ctx.check(lw <= 1e-5 and gw <= 1e-5,
                  f"{opt} + {correction} at {layout} reproduces one rank (loss {lw:.1e}, grad norm {gw:.1e})")
        if layout == "dp2":
            ctx.check(all(r.get("grad_buckets", 0) >= 1 for r in got.values()),
                      f"{layout}: gradients reduced in buckets overlapped with the backward (one reducer per version)")
        if layout == "pp2":
            ok = all("bubble_fraction" in r and "bubble_fraction_predicted" in r for r in got.values())
            ctx.check(ok, f"{layout} reports measured and predicted bubbles "
                          f"(step 10: {got[10].get('bubble_fraction', -1):.3f} measured, "
                          f"{got[10].get('bubble_fraction_predicted', -1):.3f} predicted)")

# RoundPipe's asynchronous mode (its own dispatch, rounds): stateless workers over two shared
# weight versions, no barrier between steps, the owners updating their stages off the critical path.
RP = ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2", "pipeline.schedule=roundpipe",
      "model.num_layers=4"]
for opt, correction in (("adamw", "none"), ("adamw", "error_feedback"), ("muon", "error_feedback")):
    sets = ASYNC + [f"pipeline.delay_correction={correction}", "model.num_layers=4", f"training.optimizer={opt}"]
    ref = run(f"rp-ref-{opt}-{correction}", ONE + sets)
    for dispatch in ("rounds",):
        got = run(f"rp-{opt}-{correction}-{dispatch}", RP + sets + [f"pipeline.roundpipe_dispatch={dispatch}"])
        # Gradient norms within 1e-4: stateless workers sum the gradients in another association
        # (each owner its stages, in shared memory), and synchronous roundpipe's already differ from
        # one rank's by about 1e-5 after 8 steps.
        lw, gw = worst(ref, got, range(1, 21)), worst(ref, got, range(1, 21), "grad_norm")
        ctx.check(lw <= 1e-5 and gw <= 1e-4,
                  f"roundpipe ({dispatch}) async {opt} + {correction} reproduces one rank "
                  f"(loss {lw:.1e}, grad norm {gw:.1e}; bubble step 10: {got[10].get('bubble_fraction', -1):.3f} "
                  f"measured, {got[10].get('bubble_fraction_predicted', -1):.3f} predicted)")
got = run("rp-none-pp2xdp2", RP + ASYNC + ["parallel.world_size=4", "model.num_layers=4"])
ref = run("rp-ref-none-4", ONE + ASYNC + ["pipeline.delay_correction=none", "model.num_layers=4"])
ctx.check(worst(ref, got, range(1, 21)) <= 1e-5,
          f"roundpipe async at pp=2 x dp=2 reproduces one rank (loss {worst(ref, got, range(1, 21)):.1e})")
rp_whole = run("rp-resume-whole", RP + ASYNC + ["pipeline.delay_correction=error_feedback"])
rp_cut, resumed_at_10 = ctx.run_interrupted("rp-resume-cut", BASE + RP + ASYNC + ["pipeline.delay_correction=error_feedback"],
                                            10)
rp_resumed = rows(rp_cut)
ctx.check(resumed_at_10 and worst(rp_whole, rp_resumed, range(11, 21)) == 0.0,
          f"roundpipe async resumed at step 10: steps 11-20 equal the uninterrupted run "
          f"(worst {worst(rp_whole, rp_resumed, range(11, 21)):.1e})")

# Resume: Muon + error feedback at pp=2, cut after step 10.
sets = PP2 + ASYNC + ["training.optimizer=muon", "pipeline.delay_correction=error_feedback"]
whole = run("resume-whole", sets)
cut, resumed_at_10 = ctx.run_interrupted("resume-cut", BASE + sets, 10)
resumed = rows(cut)
ctx.check(resumed_at_10 and worst(whole, resumed, range(11, 21)) == 0.0,
          f"resumed at step 10: steps 11-20 equal the uninterrupted run "
          f"(worst {worst(whole, resumed, range(11, 21)):.1e})")

for name, sets, key in (("gpipe", PP2 + ASYNC + ["pipeline.schedule=gpipe"], "pipeline.async"),
                        ("no-async", PP2 + ["pipeline.delay_correction=error_feedback"], "pipeline.delay_correction"),
                        ("chunked", ONE + ASYNC + ["data.chunk_size=32"], "pipeline.async"),
                        ("roundpipe-earliest-free", RP + ASYNC + ["pipeline.roundpipe_dispatch=earliest_free"],
                         "pipeline.roundpipe_dispatch"),
                        ("bad-correction", ONE + ASYNC + ["pipeline.delay_correction=magic"],
                         "pipeline.delay_correction")):
    _, proc = ctx.run("refused-" + name, BASE + sets, expect_status=2)
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    ctx.check(key in proc.stderr, f"{name} refused naming {key}: {last}")
ctx.finish()
