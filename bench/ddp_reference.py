#!/usr/bin/python3
"""The PyTorch reference for rondo's throughput: the same GPT (by default 4 layers, hidden 128,
4 heads, ffn 512, vocab 256, seq 128; pre-LN, causal attention, GELU MLP, untied head) or, with
--family llama, the same Llama (RMSNorm, rotary positions in the rotate-half layout, base 10000,
grouped-query attention with --groups key/value heads, SwiGLU MLP of --ffn, no biases), the same
batch (micro 4, global 8, gradient accumulation when one rank), AdamW, trained with
DistributedDataParallel over gloo, one thread per process. Debian's python3-torch.

  /usr/bin/python3 bench/ddp_reference.py --ranks 2 --steps 60 [--layers 8 --hidden 512 --heads 8 --seq 256]
      [--family llama --groups 2 --ffn 688]
Prints one JSON line: {"ranks", "tokens_per_s", "step_time_s", "runtime"} (medians after
warm-up; runtime: what decides the speed besides the model, as rondo's runtime.json has it).
"""
import argparse
import ctypes
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
FAMILY, GROUPS, NORM_EPS, ROTARY_BASE = "gpt", 4, 1e-5, 10000.0
MICRO, GLOBAL = 4, 8


def openblas_core(libraries):
    """The kernel family OpenBLAS chose when it loaded ("" when the BLAS is not OpenBLAS)."""
    for path in libraries:
        try:
            fn = ctypes.CDLL(path).openblas_get_corename
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_char_p
        return fn().decode()
    return ""


def runtime_environment():
    """The BLAS and allocator libraries mapped into this process, threads and tuning variables."""
    blas, allocators = set(), set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if "/" in line else ""
            name = os.path.basename(path)
            if any(k in name for k in ("blas", "lapack", "mkl_", "libgomp", "libomp", "libiomp")):
                blas.add(path)
            if any(k in name for k in ("jemalloc", "tcmalloc", "mimalloc")):
                allocators.add(path)
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "MKL_NUM_THREADS", "LD_PRELOAD", "MALLOC_TOP_PAD_",
             "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX", "MALLOC_CONF")
    return {"torch_version": torch.__version__, "blas_libraries": sorted(blas),
            "preloaded_allocators": sorted(allocators), "malloc_policy": "glibc defaults (Python)",
            "cpu_kernels": "aten",
            "openblas_core": openblas_core(blas),
            "intra_op_threads": torch.get_num_threads(), "inter_op_threads": torch.get_num_interop_threads(),
            "environment": {k: os.environ[k] for k in names if k in os.environ}}


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


class RmsNorm(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS) * self.weight


def rotate(x, cos, sin):  # x [b, heads, t, hd]: dimension i pairs with i + hd / 2
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


class LlamaBlock(nn.Module):
    def __init__(self):
        super().__init__()
        hd = HIDDEN // HEADS
        self.norm1, self.norm2 = RmsNorm(HIDDEN), RmsNorm(HIDDEN)
        self.qkv = nn.Linear(HIDDEN, (HEADS + 2 * GROUPS) * hd, bias=False)
        self.proj = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.gate, self.up = nn.Linear(HIDDEN, FFN, bias=False), nn.Linear(HIDDEN, FFN, bias=False)
        self.down = nn.Linear(FFN, HIDDEN, bias=False)
        self.mask = torch.ones(SEQ, SEQ, dtype=torch.bool).triu(1)

    def attention(self, x, cos, sin):
        b, t, h = x.shape
        hd = h // HEADS
        qkv = self.qkv(x)
        q = qkv[..., :HEADS * hd].view(b, t, HEADS, hd).transpose(1, 2)
        k = qkv[..., HEADS * hd:(HEADS + GROUPS) * hd].view(b, t, GROUPS, hd).transpose(1, 2)
        v = qkv[..., (HEADS + GROUPS) * hd:].view(b, t, GROUPS, hd).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        k, v = k.repeat_interleave(HEADS // GROUPS, 1), v.repeat_interleave(HEADS // GROUPS, 1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        scores = scores.masked_fill(self.mask[:t, :t], float("-inf"))
        return self.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, h))

    def forward(self, x, cos, sin):
        x = x + self.attention(self.norm1(x), cos, sin)
        n = self.norm2(x)
        return x + self.down(F.silu(self.gate(n)) * self.up(n))


class Llama(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, HIDDEN)
        self.blocks = nn.ModuleList(LlamaBlock() for _ in range(LAYERS))
        self.norm, self.head = RmsNorm(HIDDEN), nn.Linear(HIDDEN, VOCAB, bias=False)

    def forward(self, tokens):
        hd = HIDDEN // HEADS
        inv = 1.0 / ROTARY_BASE ** (torch.arange(0, hd, 2).float() / hd)
        freqs = torch.outer(torch.arange(tokens.shape[1]).float(), inv)
        angles = torch.cat([freqs, freqs], -1)
        cos, sin = angles.cos(), angles.sin()
        x = self.tok(tokens)
        for block in self.blocks:
            x = block(x, cos, sin)
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
    model = nn.parallel.DistributedDataParallel(Llama() if FAMILY == "llama" else Gpt())
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
        print(json.dumps({"ranks": world, "tokens_per_s": GLOBAL * SEQ / step, "step_time_s": step,
                          "runtime": runtime_environment()}))
    dist.destroy_process_group()


def main():
    global LAYERS, HIDDEN, HEADS, FFN, SEQ, FAMILY, GROUPS
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--layers", type=int, default=LAYERS)
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--heads", type=int, default=HEADS)
    parser.add_argument("--seq", type=int, default=SEQ)
    parser.add_argument("--family", choices=["gpt", "llama"], default=FAMILY)
    parser.add_argument("--groups", type=int, default=0, help="llama: key/value heads (0: one per head)")
    parser.add_argument("--ffn", type=int, default=0, help="MLP width (0: 4 x hidden)")
    args = parser.parse_args()
    LAYERS, HIDDEN, HEADS, SEQ = args.layers, args.hidden, args.heads, args.seq
    FFN, FAMILY, GROUPS = args.ffn or 4 * args.hidden, args.family, args.groups or args.heads
    if args.worker:
        return worker(args)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29500 + os.getpid() % 1000),
               WORLD_SIZE=str(args.ranks), OMP_NUM_THREADS="1")
    shape = ["--layers", str(LAYERS), "--hidden", str(HIDDEN), "--heads", str(HEADS), "--seq", str(SEQ),
             "--family", FAMILY, "--groups", str(GROUPS), "--ffn", str(FFN)]
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--steps", str(args.steps),
                               "--warmup", str(args.warmup)] + shape, env=dict(env, RANK=str(r)))
             for r in range(args.ranks)]
    codes = [p.wait(timeout=600) for p in procs]
    sys.exit(max(codes))


if __name__ == "__main__":
    main()
