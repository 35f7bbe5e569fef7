"""A truncated or checksum-broken checkpoint is refused with a clear error; earlier ones stay."""
import os

from rondo_testlib import TINY, Context, losses

ctx = Context()
base = TINY + ["parallel.world_size=2", "checkpoint.interval=5"]
run_dir, _ = ctx.run("ckpt", base + ["training.train_iters=10"])
ckpts = os.path.join(run_dir, "checkpoints")
model10 = os.path.join(ckpts, "step-10", "model-pp0-tp0.safetensors")
size = os.path.getsize(model10)
with open(model10, "r+b") as f:
    f.truncate(size // 2)

_, proc = ctx.run("ckpt", base + ["training.train_iters=15"], expect_status=None)
err = proc.stderr
ctx.check(proc.returncode != 0, f"a truncated checkpoint fails the run (status {proc.returncode})")
ctx.check("model-pp0-tp0.safetensors" in err and "truncated" in err, "the error names the truncated file")
ctx.check("step-5" in err and "checkpoint.resume_step=5" in err, "the error points to the valid step-5")
ctx.check(max(losses(run_dir)) == 10, "no step ran on a corrupt checkpoint")
ctx.check(os.path.exists(os.path.join(ckpts, "step-5", "manifest.json")), "step-5 is still there")

_, proc = ctx.run("ckpt", base + ["training.train_iters=15", "checkpoint.resume_step=5"])
ctx.check("resumed from checkpoint step-5" in proc.stderr, "resuming from step-5 works")
ctx.check(os.path.getsize(model10) == size, "step-10 was rewritten whole by the resumed run")

model15 = os.path.join(ckpts, "step-15", "model-pp0-tp0.safetensors")
with open(model15, "r+b") as f:
    f.seek(os.path.getsize(model15) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))
_, proc = ctx.run("ckpt", base + ["training.train_iters=20"], expect_status=None)
ctx.check(proc.returncode != 0 and "CRC-32 mismatch" in proc.stderr, "a flipped byte is refused by its checksum")
ctx.check("step-10" in proc.stderr, "and the newest valid earlier checkpoint (step-10) is named")
ctx.finish()
