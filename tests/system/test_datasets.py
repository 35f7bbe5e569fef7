"""Datasets end to end: the same text as a text file, a directory, a JSONL file and an indexed
dataset written by `rondo data prepare` trains to bitwise the same losses (the token stream is
the same, so every sample is); the indexed one on 2 ranks reads it memory-mapped; a corrupt index
is refused by `rondo run` before any worker starts, naming data.path and the file."""
import json
import os
import shutil
import subprocess

from rondo_testlib import TINY, Context, losses

ctx = Context()
TEXT = "/usr/share/common-licenses/GPL-3"  # base-files (Essential): on every Debian system
SETS = TINY + ["training.train_iters=6", "parallel.world_size=2"]

work = os.path.join(ctx.tmp, "data")
os.makedirs(os.path.join(work, "dir"))
shutil.copy(TEXT, os.path.join(work, "dir", "gpl3.txt"))
with open(TEXT, encoding="utf-8") as f:
    text = f.read()
with open(os.path.join(work, "gpl3.jsonl"), "w", encoding="utf-8") as f:
    f.write(json.dumps({"text": text}) + "\n")
prefix = os.path.join(work, "gpl3")
prep = subprocess.run([ctx.rondo, "data", "prepare", TEXT, "--out", prefix], capture_output=True, text=True)
ctx.check(prep.returncode == 0 and os.path.exists(prefix + ".idx"), "rondo data prepare wrote the indexed dataset")

runs = {"text file": TEXT, "text directory": os.path.join(work, "dir"), "jsonl": os.path.join(work, "gpl3.jsonl"),
        "indexed": prefix}
got = {}
for name, path in runs.items():
    run_dir, _ = ctx.run(name.replace(" ", "-"), SETS + [f"data.path={path}"])
    got[name] = losses(run_dir)
    if name == "indexed":
        with open(os.path.join(run_dir, "logs", "rank-0.log")) as f:
            ctx.check("(indexed: 1 documents, uint16)" in f.read(), "the worker read the indexed dataset")
ref = got["text file"]
ctx.check(sorted(ref) == list(range(1, 7)), "the text-file run logged 6 steps")
for name in ("text directory", "jsonl", "indexed"):
    ctx.check(got[name] == ref, f"{name}: bitwise the same losses as the text file")

# A corrupt index: refused by the coordinator, naming the key and the file.
with open(prefix + ".idx", "r+b") as f:
    f.seek(18)
    f.write((10**6).to_bytes(8, "little"))  # a million sequences
_, proc = ctx.run("corrupt", SETS + [f"data.path={prefix}"], expect_status=2)
ctx.check("data.path" in proc.stderr and "gpl3.idx" in proc.stderr, "a corrupt index is refused: "
          + proc.stderr.strip().splitlines()[-1])
ctx.finish()
