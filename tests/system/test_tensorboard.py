"""TensorBoard event files beside metrics.jsonl, read back by a reader written here from the
format's public description (TFRecord framing with masked CRC-32C; Event, Summary and
Summary.Value decoded from the protobuf wire format by hand), not by rondo's writer:

- RUN_DIR/tensorboard/ holds one events.out.tfevents.* file whose first record is the file version
  and then one event per step, every CRC right, each holding every number of that step's
  metrics.jsonl row (loss, lr, grad_norm, tokens_per_s, the step breakdown, memory) as float32;
- a run cut at step 4 and resumed writes a second file holding steps 5-8;
- training.tensorboard=false writes none."""
import glob
import json
import math
import os
import struct

from rondo_testlib import TINY, Context, rows

ctx = Context()


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def fields(buf):
    """Protobuf wire format: [(field number, wire type, value)]."""
    out, i = [], 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 2:
            n, i = varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, wire, value))
    return out


def events(path):
    """[(wall_time, step, file_version, {tag: value})], every record's checksums verified."""
    data, i, out, bad = open(path, "rb").read(), 0, [], 0
    while i < len(data):
        header = data[i:i + 8]
        length = struct.unpack("<Q", header)[0]
        bad += struct.unpack("<I", data[i + 8:i + 12])[0] != masked(crc32c(header))
        body = data[i + 12:i + 12 + length]
        bad += struct.unpack("<I", data[i + 12 + length:i + 16 + length])[0] != masked(crc32c(body))
        i += 16 + length
        wall, step, version, scalars = 0.0, 0, None, {}
        for number, _, value in fields(body):
            if number == 1:
                wall = struct.unpack("<d", value)[0]
            elif number == 2:
                step = value
            elif number == 3:
                version = value.decode()
            elif number == 5:
                for n, _, v in fields(value):
                    if n == 1:
                        tag = val = None
                        for vn, _, vv in fields(v):
                            if vn == 1:
                                tag = vv.decode()
                            elif vn == 2:
                                val = struct.unpack("<f", vv)[0]
                        scalars[tag] = val
        out.append((wall, step, version, scalars))
    return out, bad


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
