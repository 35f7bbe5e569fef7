"""Hugging Face weights in and out, checked against an independent reader and forward (Debian's
python3-torch, the architectures written out here, the safetensors bytes parsed here):

- a tiny Llama (grouped-query attention, Llama 3 rotary scaling, bf16, sharded over two files with
  model.safetensors.index.json), a tiny Qwen2 (biases on queries, keys and values, float16) and a
  tiny Qwen3 (QK-norm, head_dim apart from hidden / heads, one key/value head, float32, one file) convert to rondo weights and back: every exported tensor
  equals the original bit for bit, in its dtype;
- `rondo run` from the converted weights (checkpoint.load) computes the first step's loss of the
  reference forward on the same document within 1e-5 relative, on one rank, at pp=2 (1f1b) and
  with roundpipe; then trains (the loss falls), while rondo's own initialisation starts elsewhere;
- a pp=2 run's step-8 checkpoint (model shards in safetensors) exported to Hugging Face gives step
  9's loss in the reference forward; one saved after a step at lr 1e-30 and exported from the run
  directory equals the original model bit for bit;
- the loaded model's logits after a prompt (`rondo generate --json --logits`) equal the reference
  forward's within 1e-5;
- `rondo generate` from the converted weights continues a prompt greedily as the reference
  forward's argmax, with and without its key/value cache; sampling (temperature, top-p) is
  reproducible by seed;
- a truncated shard, a tensor whose shape contradicts config.json, an architecture rondo does not
  build, and weights that do not fit model.* are refused naming the file, the tensor or the key."""
import json
import os
import struct
import subprocess
import sys

import torch

from rondo_testlib import Context, losses, read_safetensors, rel_diff

ctx = Context()
DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
TEXT = "rondo converts Hugging Face weights both ways, bit for bit."


def write_safetensors(path, tensors):
    """The format by hand: header length, JSON header, tensors' bytes in order."""
    header, blobs, at = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        raw = t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype != torch.bfloat16 \
            else t.contiguous().view(torch.int16).numpy().tobytes()
        dtype = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}[t.dtype]
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    head = json.dumps(header).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def read_model_dir(d):
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) \
        else ["model.safetensors"]
    out = {}
    for f in files:
        out.update(read_safetensors(os.path.join(d, f)))
    return out


def as_float(entry):
    dtype, shape, raw = entry
    if dtype == "BF16":
        return torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16).float().reshape(shape)
    return torch.frombuffer(bytearray(raw), dtype=DTYPES[dtype]).float().reshape(shape)


def make_model(d, cfg, dtype, shards):
    torch.manual_seed(cfg["num_hidden_layers"] * 7 + cfg["hidden_size"])
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, groups = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", h // heads)
    w = {"model.embed_tokens.weight": torch.randn(v, h) * 0.5, "model.norm.weight": 1 + 0.1 * torch.randn(h),
         "lm_head.weight": torch.randn(v, h) * 0.1}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(h)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(h)
        w[p + "self_attn.q_proj.weight"] = torch.randn(heads * hd, h) * 0.1
        w[p + "self_attn.k_proj.weight"] = torch.randn(groups * hd, h) * 0.1
        w[p + "self_attn.v_proj.weight"] = torch.randn(groups * hd, h) * 0.1
        w[p + "self_attn.o_proj.weight"] = torch.randn(h, heads * hd) * 0.1
        if cfg["model_type"] == "qwen2":
            for name, rows in (("q", heads * hd), ("k", groups * hd), ("v", groups * hd)):
                w[p + f"self_attn.{name}_proj.bias"] = 0.1 * torch.randn(rows)
        if cfg["model_type"] == "qwen3":
            w[p + "self_attn.q_norm.weight"] = 1 + 0.1 * torch.randn(hd)
            w[p + "self_attn.k_norm.weight"] = 1 + 0.1 * torch.randn(hd)
        w[p + "mlp.gate_proj.weight"] = torch.randn(f, h) * 0.1
        w[p + "mlp.up_proj.weight"] = torch.randn(f, h) * 0.1
        w[p + "mlp.down_proj.weight"] = torch.randn(h, f) * 0.1
    w = {k: t.to(dtype) for k, t in w.items()}
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump(cfg, fh)
    names = sorted(w)
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), {k: w[k] for k in names})
    else:
        half = len(names) // 2
        parts = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
        for file, keys in parts.items():
            write_safetensors(os.path.join(d, file), {k: w[k] for k in keys})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as fh:
            json.dump({"metadata": {}, "weight_map": {k: file for file, keys in parts.items() for k in keys}}, fh)
    return {k: t.float() for k, t in w.items()}


def inv_freq(cfg, hd):
    f = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    r = cfg.get("rope_scaling")
    if not r:
        return f
    ctx_len, lo, hi, factor = r["original_max_position_embeddings"], r["low_freq_factor"], r["high_freq_factor"], r["factor"]
    wl = 2 * torch.pi / f
    out = torch.where(wl > ctx_len / lo, f / factor, f)
    smooth = (ctx_len / wl - lo) / (hi - lo)
    blended = (1 - smooth) * out / factor + smooth * out
    medium = ~(wl < ctx_len / hi) & ~(wl > ctx_len / lo)
    return torch.where(medium, blended, out)


def reference_loss(w, cfg, tokens):
    """Mean cross-entropy of next tokens under the forward below."""
    return torch.nn.functional.cross_entropy(reference_logits(w, cfg, tokens[:-1]), torch.tensor(tokens[1:])).item()


def reference_greedy(w, cfg, prompt, n):
    """n tokens after the prompt, each the argmax of the whole sequence's forward (no cache)."""
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(reference_logits(w, cfg, seq)[-1].argmax()))
    return seq[len(prompt):]


def reference_logits(w, cfg, tokens):
    """Hugging Face's Llama/Qwen2/Qwen3 forward, written out: logits [len(tokens), vocab]."""
    eps, heads, groups = cfg["rms_norm_eps"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    h = cfg["hidden_size"]
    hd = cfg.get("head_dim", h // heads)
    ids = torch.tensor(tokens)
    t = len(ids)

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    def rotate(x, cos, sin):  # x [heads, t, hd]
        x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    freqs = torch.outer(torch.arange(t).float(), inv_freq(cfg, hd))
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((t, t), float("-inf")).triu(1)
    x = w["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        n = rms(x, w[p + "input_layernorm.weight"])
        def proj(name):  # with Qwen2's bias
            y = n @ w[p + f"self_attn.{name}_proj.weight"].T
            return y + w[p + f"self_attn.{name}_proj.bias"] if p + f"self_attn.{name}_proj.bias" in w else y
        q = proj("q").view(t, heads, hd).transpose(0, 1)
        k = proj("k").view(t, groups, hd).transpose(0, 1)
        v = proj("v").view(t, groups, hd).transpose(0, 1)
        if cfg["model_type"] == "qwen3":
            q, k = rms(q, w[p + "self_attn.q_norm.weight"]), rms(k, w[p + "self_attn.k_norm.weight"])
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        k, v = k.repeat_interleave(heads // groups, 0), v.repeat_interleave(heads // groups, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / hd ** 0.5 + mask, -1) @ v
        x = x + att.transpose(0, 1).reshape(t, heads * hd) @ w[p + "self_attn.o_proj.weight"].T
        n = rms(x, w[p + "post_attention_layernorm.weight"])
        x = x + (torch.nn.functional.silu(n @ w[p + "mlp.gate_proj.weight"].T) * (n @ w[p + "mlp.up_proj.weight"].T)) \
            @ w[p + "mlp.down_proj.weight"].T
    return rms(x, w["model.norm.weight"]) @ w["lm_head.weight"].T


def model_keys(weights):
    """The model section of a converted directory's config.yaml (flat `key: value` lines)."""
    keys, inside = {}, False
    for line in open(os.path.join(weights, "config.yaml")):
        if not line.startswith(" "):
            inside = line.startswith("model:")
        elif inside:
            k, v = line.strip().split(": ", 1)
            keys[k] = v
    keys.pop("family", None)
    return keys


def run_converted(weights, name, sets):
    """`rondo run WEIGHTS/config.yaml`: a run from converted weights; its run directory."""
    run_dir = os.path.join(ctx.tmp, name)
    cmd = [ctx.rondo, "run", os.path.join(weights, "config.yaml"), "--run-dir", run_dir, "--worker", ctx.worker]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise AssertionError(f"{name}: rondo run exited {proc.returncode}")
    return run_dir


rondo = ctx.cli


corpus = os.path.join(ctx.tmp, "one-document.jsonl")
with open(corpus, "w") as fh:
    fh.write(json.dumps({"text": TEXT}) + "\n")
SEQ = 32
tokens = list(TEXT.encode())[:SEQ + 1]
MODELS = {
    "llama": ({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 48,
               "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "vocab_size": 300, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
               "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 16},
               "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "bfloat16"}, torch.bfloat16, 2),
    "qwen2": ({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 32,
               "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "vocab_size": 300, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
               "hidden_act": "silu", "tie_word_embeddings": False, "use_sliding_window": False,
               "sliding_window": 64, "torch_dtype": "float16"}, torch.float16, 1),
    "qwen3": ({"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "hidden_size": 32,
               "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
               "head_dim": 16, "vocab_size": 300, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
               "rope_theta": 1000000.0, "hidden_act": "silu", "tie_word_embeddings": False,
               "use_sliding_window": False, "torch_dtype": "float32"}, torch.float32, 1),
}
for family, (cfg, dtype, shards) in MODELS.items():
    hf_dir, weights, back = (os.path.join(ctx.tmp, f"{family}-{k}") for k in ("hf", "rondo", "exported"))
    w = make_model(hf_dir, cfg, dtype, shards)
    rondo("convert", "--from-hf", hf_dir, "--to", weights)
    rondo("convert", "--from", weights, "--to-hf", back)
    original, exported = read_model_dir(hf_dir), read_model_dir(back)
    same = original.keys() == exported.keys() and all(original[k] == exported[k] for k in original)
    ctx.check(same, f"{family}: {len(original)} tensors exported equal the imported ones bit for bit "
                    f"({original['model.norm.weight'][0]})")
    want = reference_loss(w, cfg, tokens)
    run_sets = ["data.path=" + corpus, "data.pad=true", f"model.seq_length={SEQ}", "training.micro_batch_size=1",
                "training.global_batch_size=1", "training.train_iters=8", "training.lr=3e-3",
                "training.lr_warmup_iters=0", "checkpoint.interval=0"]
    for name, lay in (("pp1", ["parallel.world_size=1"]),
                      ("pp2", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2"]),
                      ("roundpipe", ["parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                                     "pipeline.schedule=roundpipe"])):
        got = losses(run_converted(weights, f"{family}-{name}", run_sets + lay))
        ctx.check(1 in got and rel_diff(want, got[1]) <= 1e-5,
                  f"{family} {name}: the first step's loss from the converted weights {got.get(1, float('nan')):.6f} "
                  f"equals the reference forward's {want:.6f} (1e-5)")
        ctx.check(got.get(8, 99) < got.get(1, 0), f"{family} {name}: and trains ({got.get(1)} -> {got.get(8)})")
    # Trained at pp=2, saved at step 8, exported: the reference forward on the exported weights
    # gives step 9's loss (the step computed from those weights).
    run_dir = run_converted(weights, f"{family}-trained", run_sets + [
        "parallel.world_size=2", "parallel.pipeline_model_parallel_size=2", "training.train_iters=9",
        "checkpoint.interval=8"])
    trained = os.path.join(ctx.tmp, f"{family}-trained-hf")
    rondo("convert", "--from", os.path.join(run_dir, "checkpoints", "step-8"), "--to-hf", trained, "--dtype", "fp32")
    exported = {k: as_float(v) for k, v in read_model_dir(trained).items()}
    from_step = json.loads(rondo("generate", os.path.join(run_dir, "checkpoints", "step-8"), "--prompt", "rondo ",
                                 "--max-tokens", "8", "--json"))["ids"]
    ctx.check(from_step == reference_greedy(exported, cfg, list(b"rondo "), 8),
              f"{family}: rondo generate from the pp=2 step-8 checkpoint (two shards) continues as the "
              f"reference forward on its export: {from_step}")
    step9 = losses(run_dir)[9]
    again = reference_loss(exported, json.load(open(os.path.join(trained, "config.json"))), tokens)
    ctx.check(rel_diff(step9, again) <= 1e-5 and exported.keys() == w.keys(),
              f"{family}: a pp=2 run's step-8 checkpoint exported gives step 9's loss {step9:.6f} "
              f"in the reference forward ({again:.6f})")
    # Saved after a step too small to move a float32 weight, exported from the run directory in
    # the source's dtype: the original bit for bit.
    run_dir = run_converted(weights, f"{family}-still", run_sets + [
        "parallel.world_size=1", "training.train_iters=1", "training.lr=1e-30", "training.weight_decay=0",
        "checkpoint.interval=1"])
    still = os.path.join(ctx.tmp, f"{family}-still-hf")
    rondo("convert", "--from", run_dir, "--to-hf", still)
    ctx.check(read_model_dir(still) == original,
              f"{family}: loaded, trained a step at lr 1e-30, saved and exported: the original tensors bit for bit")
    # rondo generate: greedy continuations with and without the key/value cache equal the argmax of
    # the reference forward over the whole sequence, token by token.
    prompt = list(b"rondo ")
    want_ids = reference_greedy(w, cfg, prompt, 12)
    got = json.loads(rondo("generate", weights, "--prompt", "rondo ", "--max-tokens", "12", "--json", "--logits"))
    got_ids, want_logits = got["ids"], reference_logits(w, cfg, prompt)[-1]
    err = (torch.tensor(got["prompt_logits"]) - want_logits).abs().max().item() / want_logits.abs().max().item()
    ctx.check(err <= 1e-5, f"{family}: the loaded model's logits after the prompt equal the reference forward's "
                           f"within 1e-5 (relative {err:.1e})")
    plain = json.loads(rondo("generate", weights, "--prompt", "rondo ", "--max-tokens", "12", "--json",
                             "--no-kv-cache"))["ids"]
    ctx.check(got_ids == want_ids == plain, f"{family}: rondo generate (greedy, with and without the cache) "
                                            f"continues as the reference forward: {got_ids}")
    sampled = [json.loads(rondo("generate", weights, "--prompt", "rondo ", "--max-tokens", "12", "--json",
                                "--temperature", "1.0", "--top-p", "0.9", "--seed", str(seed)))["ids"]
               for seed in (1, 1, 2)]
    ctx.check(sampled[0] == sampled[1] != sampled[2], f"{family}: sampling is reproducible by seed ({sampled})")
    # The control: the same run from rondo's own initialisation starts elsewhere.
    run_dir, _ = ctx.run(f"{family}-seeded", [f"model.family={family}"] +
                         [f"model.{k}={v}" for k, v in model_keys(weights).items()] + run_sets +
                         ["parallel.world_size=1"])
    seeded = losses(run_dir)[1]
    ctx.check(rel_diff(want, seeded) > 1e-3, f"{family}: seeded weights start elsewhere ({seeded:.6f})")

# Damage and misfits, each refused naming what is wrong.
llama_hf = os.path.join(ctx.tmp, "llama-hf")
shard = os.path.join(llama_hf, "model-00002-of-00002.safetensors")
with open(shard, "rb") as fh:
    data = fh.read()
with open(shard, "wb") as fh:
    fh.write(data[:-10])
out = rondo("convert", "--from-hf", llama_hf, "--to", os.path.join(ctx.tmp, "cut"), expect=1)
ctx.check("model-00002-of-00002.safetensors" in out and "truncated" in out and "tensor '" in out,
          f"a truncated shard is refused naming it and its last tensor: {out.strip().splitlines()[-1]}")
with open(shard, "wb") as fh:
    fh.write(data)
qwen_hf = os.path.join(ctx.tmp, "qwen3-hf")
cfg = json.load(open(os.path.join(qwen_hf, "config.json")))
json.dump(dict(cfg, intermediate_size=72), open(os.path.join(qwen_hf, "config.json"), "w"))
out = rondo("convert", "--from-hf", qwen_hf, "--to", os.path.join(ctx.tmp, "bad"), expect=1)
ctx.check("model.layers.0.mlp.gate_proj.weight" in out and "[64,32]" in out and "[72,32]" in out,
          f"a tensor whose shape contradicts config.json is refused naming both: {out.strip().splitlines()[-1]}")
json.dump(dict(cfg, model_type="gemma"), open(os.path.join(qwen_hf, "config.json"), "w"))
out = rondo("convert", "--from-hf", qwen_hf, "--to", os.path.join(ctx.tmp, "bad"), expect=2)
ctx.check("model_type 'gemma'" in out and "config.json" in out, f"another architecture is refused: {out.strip()}")
out = rondo("plan", os.path.join(ctx.tmp, "llama-rondo", "config.yaml"), "--set", "model.hidden_size=64", expect=2)
ctx.check("checkpoint.load" in out and "token_embedding.weight" in out and "[300,48]" in out,
          f"weights that do not fit model.* are refused naming the key and the tensor: {out.strip()}")
ctx.finish()
