"""faults.policy restart, end to end, with real faults.

A hang: three ranks train, rank 2 is stopped with SIGSTOP past the checkpoint of step 10. The
coordinator names the hang, tears the attempt down and relaunches from the latest checkpoint
without the faulty rank: two ranks, the global batch unchanged (micro-batches of 2, twelve a step: two
per rank before, three after). Every step's loss equals an uninterrupted three-rank run's.

A slow rank: two ranks, rank 1 slowed for real by a SIGSTOP/SIGCONT duty cycle from step 10 (as in
system.fault_localisation). The verdict stops the job with a checkpoint at once, and the job
resumes from it on one rank; its losses equal an uninterrupted two-rank run's."""
import json
import os

from rondo_testlib import Context, check_same_losses, events, losses, rows, wait_for, wait_slowed, wait_stopped, worker_pid

ctx = Context()
WATCHED = ["launch.heartbeat_interval_s=0.2", "launch.heartbeat_timeout_s=3", "comms.timeout_s=120",
           "launch.max_restarts=2", "launch.dashboard_port=0"]


def final_world(run_dir):
    with open(os.path.join(run_dir, "state.json")) as f:
        state = json.load(f)
    return state["phase"], state["world_size"]


# --- a hang: the run goes on without the hung rank ----------------------------------------------
# Steps of a tenth of a second or more (the model of system.fault_localisation), so that three
# ranks on two cores and a neighbour's burst of CPU slow a rank by well under half a step; slow-rank
# verdicts are kept to half a step: this part is about the hang.
MODEL = ["model.num_layers=2", "model.hidden_size=256", "model.num_attention_heads=4", "model.ffn_hidden_size=1024",
         "model.seq_length=256", "training.lr=1e-3", "training.lr_warmup_iters=0",
         "training.lr_decay_style=constant"]
HANG = MODEL + WATCHED + ["parallel.world_size=3", "training.micro_batch_size=2", "training.global_batch_size=12",
                          "training.train_iters=60", "checkpoint.interval=10", "faults.slow_rank_share=0.5"]
full, _ = ctx.run("hang_reference", HANG)
run_dir, proc = ctx.start("hang", HANG + ["faults.policy=restart"])
wait_for(lambda: any(r["step"] >= 12 for r in rows(run_dir)), 300, "step 12")
t_stop = wait_stopped(proc, worker_pid(run_dir, 2), timeout=600)
ctx.check(proc.returncode == 0, f"the job finished (exit {proc.returncode})")
ev = events(run_dir)
hangs = [e for e in ev if e.get("event") == "fault" and e["kind"] == "hang"]
ctx.check(len(hangs) == 1 and hangs[0]["ranks"] == [2], f"rank 2 is named hung: {[e['ranks'] for e in hangs]}")
if hangs:
    ctx.check(hangs[0]["time"] - t_stop <= 3 + 2, f"within the heartbeat timeout + 2 s ({hangs[0]['time'] - t_stop:.2f} s)")
without = [e for e in ev if e["event"] == "restart_without"]
print("restart_without:", json.dumps(without))
ctx.check(len(without) == 1 and without[0]["ranks"] == [2] and without[0]["world_size"] == 2
          and without[0]["from_step"] % 10 == 0 and without[0]["from_step"] >= 10,
          "the job restarts from its latest checkpoint without rank 2, on two ranks")
launches = [e for e in ev if e["event"] == "launch"]
ctx.check([e["ranks"] for e in launches] == [3, 2], f"launched 3 ranks, then 2: {[e['ranks'] for e in launches]}")
with open(os.path.join(run_dir, "plan.json")) as f:
    ctx.check(json.load(f)["mesh"]["dp"] == 2, "the saved plan is the two-rank one")
ctx.check(final_world(run_dir) == ("finished", 2), f"state.json: finished on two ranks ({final_world(run_dir)})")
check_same_losses(ctx, run_dir, losses(full), "after the restart on two ranks")


# --- a slow rank: stopped with a checkpoint, resumed without it ----------------------------------
# Steps of several duty-cycle periods; the victim, stopped 60% of the time, keeps the other rank
# waiting far longer than this machine's noise does (system.fault_localisation).
SLOW = MODEL + WATCHED + ["training.micro_batch_size=4", "training.global_batch_size=8", "checkpoint.interval=0",
                          "parallel.world_size=2", "training.train_iters=60", "faults.slow_rank_share=0.35"]
clean, _ = ctx.run("slow_reference", SLOW)
run_dir, proc = ctx.start("slow", SLOW + ["faults.policy=restart"])
wait_for(lambda: any(r["step"] >= 10 for r in rows(run_dir)), 300, "step 10")
victim = worker_pid(run_dir, 1)
wait_slowed(proc, victim, 0.024, 0.04, timeout=600)
ctx.check(proc.returncode == 0, f"the job finished (exit {proc.returncode})")
ev = events(run_dir)
named = [e["ranks"] for e in ev if e.get("event") == "fault" and e["kind"] == "slow_rank"]
without = [e for e in ev if e["event"] == "restart_without"]
print("slow_rank verdicts:", named, "restart_without:", json.dumps(without))
ctx.check(named[:1] == [[1]], f"rank 1 is named a slow rank first: {named}")
ctx.check(any(e["event"] == "restart_requested" and e["ranks"] == [1] for e in ev), "the verdict stopped the job")
ctx.check(len(without) == 1 and without[0]["ranks"] == [1] and without[0]["world_size"] == 1
          and 10 < without[0]["from_step"] < 60,
          "it resumed at once from the stop's checkpoint without rank 1, on one rank")
ctx.check(final_world(run_dir) == ("finished", 1), f"state.json: finished on one rank ({final_world(run_dir)})")
check_same_losses(ctx, run_dir, losses(clean), "after the restart on one rank")
ctx.finish()
