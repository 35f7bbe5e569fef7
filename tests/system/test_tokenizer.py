"""A Hugging Face tokenizer from data preparation to generation, with GPT-2's real tokenizer.json
(scripts/fetch-tokenizers):

- `rondo data prepare --tokenizer --append-eod` writes each document's ids (what `rondo data
  tokenize` gives for its text) followed by <|endoftext|>, as uint16;
- a Llama-family model trains on that dataset (the loss falls), is exported to Hugging Face's
  layout and converted back with the tokenizer beside it (`rondo convert` carries tokenizer.json
  and tokenizer_config.json along);
- `rondo generate` then finds the tokenizer by itself: the prompt's ids are the tokenizer's, the
  text is the decoding of the generated ids, and generation stops at <|endoftext|>, which the
  model learnt ends every document;
- a tokenizer with more ids than the model's vocabulary is refused naming --tokenizer."""
import json
import os
import shutil
import sys

from rondo_testlib import Context, losses

ctx = Context()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCABS = os.path.join(ROOT, ".cache", "tokenizers")
GPT2 = os.path.join(VOCABS, "gpt2", "tokenizer.json")
if not os.path.exists(GPT2):
    sys.exit(f"{GPT2} is missing: run scripts/fetch-tokenizers (scripts/build runs it)")

rondo = ctx.cli


def tokenize(text):
    return json.loads(rondo("data", "tokenize", "--json", "--tokenizer", GPT2, "--text", text))["ids"]


EOT = 50256
DOCS = ["Hello world.", "The quick brown fox jumps over the lazy dog.", "Numbers 1234 and naïve café."]

# 1. Prepare: every document's ids, then the end-of-text token.
corpus = os.path.join(ctx.tmp, "docs.jsonl")
with open(corpus, "w") as fh:
    for d in DOCS * 40:
        fh.write(json.dumps({"text": d}) + "\n")
prefix = os.path.join(ctx.tmp, "gpt2-docs")
out = rondo("data", "prepare", corpus, "--out", prefix, "--tokenizer", GPT2, "--append-eod")
stats = json.loads(rondo("data", "stats", prefix, "--json"))
want = [tokenize(d) + [EOT] for d in DOCS]
ctx.check(stats["dtype"] == "uint16" and stats["documents"] == 120 and
          stats["tokens"] == 40 * sum(len(w) for w in want),
          f"data prepare wrote 120 documents of the tokenizer's ids plus <|endoftext|> as uint16 ({stats}; {out.strip()})")
with open(prefix + ".bin", "rb") as fh:
    raw = fh.read()
first = [int.from_bytes(raw[2 * i:2 * i + 2], "little") for i in range(sum(len(w) for w in want))]
ctx.check(first == [t for w in want for t in w], f"the first documents' ids are the tokenizer's: {first[:12]}...")

# 2. Train a small Llama-family model on it; export with the tokenizer; convert back.
run_dir, _ = ctx.run("llama-gpt2", [
    "data.path=" + prefix, "model.family=llama", "model.vocab_size=50304", "model.num_layers=2",
    "model.hidden_size=32", "model.num_attention_heads=4", "model.num_query_groups=2", "model.ffn_hidden_size=64",
    "model.seq_length=32", "training.micro_batch_size=4", "training.global_batch_size=4", "training.train_iters=60",
    "training.lr=1e-2", "training.lr_warmup_iters=0", "training.lr_decay_style=constant", "checkpoint.interval=60",
    "parallel.world_size=1"])
loss = losses(run_dir)
ctx.check(loss[60] < 0.5 * loss[1], f"the model trains on the tokenized dataset ({loss[1]:.3f} -> {loss[60]:.3f})")
hf = os.path.join(ctx.tmp, "exported")
rondo("convert", "--from", run_dir, "--to-hf", hf)
for name in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(os.path.join(VOCABS, "gpt2", name), hf)
weights = os.path.join(ctx.tmp, "weights")
rondo("convert", "--from-hf", hf, "--to", weights)
ctx.check(open(os.path.join(weights, "tokenizer.json"), "rb").read() == open(GPT2, "rb").read(),
          "rondo convert --from-hf keeps the tokenizer beside the weights")
again = os.path.join(ctx.tmp, "exported-again")
rondo("convert", "--from", weights, "--to-hf", again)
ctx.check(os.path.exists(os.path.join(again, "tokenizer_config.json")), "and --to-hf writes it out again")

# 3. Generate: the tokenizer found by itself; stops at the end of a document.
got = json.loads(rondo("generate", weights, "--prompt", "The quick brown fox", "--max-tokens", "30", "--json"))
ctx.check(got["tokenizer"].endswith("weights/tokenizer.json") and got["prompt_ids"] == tokenize("The quick brown fox"),
          f"rondo generate encodes the prompt with the weights' tokenizer: {got['prompt_ids']}")
ids = got["ids"]
ctx.check(ids and ids[-1] == EOT and len(ids) < 30,
          f"generation stops at <|endoftext|>, which ends every training document: {ids}")
decoded = json.loads(rondo("data", "tokenize", "--json", "--tokenizer", GPT2, "--decode",
                           ",".join(map(str, ids[:-1]))))["text"]
ctx.check(got["text"] == decoded and got["text"] == " jumps over the lazy dog.",
          f"the text is the generated ids decoded: {got['text']!r}")

# 4. A tokenizer with more ids than the model has.
llama3 = os.path.join(VOCABS, "llama3", "tokenizer.json")
out = rondo("generate", weights, "--prompt", "hi", "--tokenizer", llama3, expect=2)
ctx.check("--tokenizer" in out and "128256" in out and "50304" in out,
          f"a tokenizer larger than the model's vocabulary is refused: {out.strip()}")
ctx.finish()
