"""TensorBoard event files beside metrics.jsonl, read back by a reader written here from the
format's public description (TFRecord framing with masked CRC-32C; Event, Summary and
Summary.Value decoded from the protobuf wire format by hand), not by rondo's writer:

- RUN_DIR/tensorboard/ holds one events.out.tfevents.* file whose first record is the file version
  and then one event per step, every CRC right, each holding every number of that step's
  metrics.jsonl row (loss, lr, grad_norm, tokens_per_s, the step breakdown, memory) as float32;
- a run cut at step 4 and resumed writes a second file holding steps 5-8;
- training.tensorboard=false writes none."""
import glob
import math
import os
import struct

from rondo_testlib import TINY, Context, rows
from tfevents import events

ctx = Context()


def float32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


base = TINY + ["parallel.world_size=2", "training.train_iters=8"]
run_dir, _ = ctx.run("tb", base)
files = sorted(glob.glob(os.path.join(run_dir, "tensorboard", "events.out.tfevents.*")))
ctx.check(len(files) == 1, f"one event file: {[os.path.basename(f) for f in files]}")
evs, bad = events(files[0])
ctx.check(bad == 0 and evs[0][2] == "brain.Event:2", f"{len(evs)} records, every CRC-32C right, the first the file version")
by_step = {e[1]: e[3] for e in evs[1:]}
metrics = {r["step"]: r for r in rows(run_dir)}
ctx.check(sorted(by_step) == list(range(1, 9)), f"one event per step: {sorted(by_step)}")
wanted = ["loss", "lr", "grad_norm", "tokens_per_s", "step_time_s", "forward_s", "backward_s", "allreduce_s",
          "max_rss_mb"]
missing = [t for t in wanted if t not in by_step.get(1, {})]
ctx.check(not missing, f"each holds loss, lr, grad norm, tokens/s, the step breakdown, memory (missing {missing})")
mismatch = [(s, tag) for s, row in metrics.items() for tag, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and tag not in ("step", "attempt")
            and not math.isclose(by_step.get(s, {}).get(tag, float("nan")), float32(v), rel_tol=1e-7, abs_tol=1e-30)]
ctx.check(not mismatch, f"every number of metrics.jsonl is there as float32 ({len(metrics)} rows; "
                        f"mismatches {mismatch[:3]})")

cut, resumed = ctx.run_interrupted("tb-resume", base + ["checkpoint.interval=4"], 4)
files = sorted(glob.glob(os.path.join(cut, "tensorboard", "events.out.tfevents.*")), key=os.path.getmtime)
steps = [sorted(e[1] for e in events(f)[0][1:]) for f in files]
ctx.check(resumed and steps == [[1, 2, 3, 4], [5, 6, 7, 8]], f"a resumed run adds a file of its steps: {steps}")

off, _ = ctx.run("tb-off", base + ["training.tensorboard=false"])
ctx.check(not os.path.exists(os.path.join(off, "tensorboard")), "training.tensorboard=false writes none")
ctx.finish()
