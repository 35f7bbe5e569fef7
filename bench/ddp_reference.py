#!/usr/bin/python3
"""The PyTorch reference for rondo's throughput: the same GPT (4 layers, hidden 128, 4 heads,
ffn 512, vocab 256, seq 128; pre-LN, causal attention, GELU MLP, untied head), the same batch
(micro 4, global 8, gradient accumulation when one rank), AdamW, trained with
DistributedDataParallel over gloo, one thread per process. Debian's python3-torch.

  /usr/bin/python3 bench/ddp_reference.py --ranks 2 --steps 60
Prints one JSON line: {"ranks", "tokens_per_s", "step_time_s"} (medians after warm-up).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

LAYERS, HIDDEN, HEADS, FFN, VOCAB, SEQ = 4, 128, 4, 512, 256, 128
MICRO, GLOBAL = 4, 8


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)
        self.qkv, self.proj = nn.Linear(HIDDEN, 3 * HIDDEN), nn.Linear(HIDDEN, HIDDEN)
        self.fc, self.fc_out = nn.Linear(HIDDEN, FFN), nn.Linear(FFN, HIDDEN)
        self.mask = torch.ones(SEQ, SEQ, dtype=torch.bool).triu(1)  # not a buffer: gloo cannot broadcast bool

    def attention(self, x):
        b, t, h = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, HEADS, h // HEADS).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(h // HEADS)
        scores = scores.masked_fill(self.mask[:t, :t], float("-inf"))
        return self.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, h))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.fc_out(F.gelu(self.fc(self.ln2(x))))


class Gpt(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, HIDDEN), nn.Embedding(SEQ, HIDDEN)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm, self.head = nn.LayerNorm(HIDDEN), nn.Linear(HIDDEN, VOCAB, bias=False)

    def forward(self, tokens):
        x = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def corpus():
    root = "/usr/share/common-licenses"
    names = sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n))
                   and not os.path.islink(os.path.join(root, n)))
    data = b"".join(open(os.path.join(root, n), "rb").read() for n in names)
    return torch.tensor(list(data), dtype=torch.long)


def worker(args):
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(1234)
    model = nn.parallel.DistributedDataParallel(Gpt())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01)
    data = corpus()
    gen = torch.Generator().manual_seed(1234 + rank)
    accumulation = GLOBAL // (MICRO * world)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        for i in range(accumulation):
            starts = torch.randint(0, len(data) - SEQ - 1, (MICRO,), generator=gen)
            batch = torch.stack([data[s:s + SEQ + 1] for s in starts.tolist()])
            ctx = model.no_sync() if i < accumulation - 1 else torch.enable_grad()
            with ctx:
                logits = model(batch[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1)) / accumulation
                loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=False)
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[args.warmup:])
    if rank == 0:
        print(json.dumps({"ranks": world, "tokens_per_s": GLOBAL * SEQ / step, "step_time_s": step}))
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29500 + os.getpid() % 1000),
               WORLD_SIZE=str(args.ranks), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--steps", str(args.steps),
                               "--warmup", str(args.warmup)], env=dict(env, RANK=str(r)))
             for r in range(args.ranks)]
    codes = [p.wait(timeout=600) for p in procs]
    sys.exit(max(codes))


if __name__ == "__main__":
    main()
