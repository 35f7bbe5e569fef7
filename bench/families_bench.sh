#!/usr/bin/env bash
# Model families side by side (bench/RESULTS.md "Model families"): gpt against llama and qwen3 at
# the same width, their SwiGLU MLPs parameter-matched (688 ~ 2/3 of 1024), one rank, alternated twice.
# Usage: bench/families_bench.sh [BUILD_DIR]
set -euo pipefail
build="${1:-build}"
common="--set parallel.world_size=1 --set model.num_layers=4 --set model.hidden_size=256 --set model.num_attention_heads=8 --set model.seq_length=256 --set training.micro_batch_size=4 --set training.global_batch_size=4 --set training.train_iters=30 --set training.lr_warmup_iters=0 --set checkpoint.interval=0 --set training.log_interval=30 --set training.tensorboard=false"
for round in 1 2; do
  for fam in gpt llama qwen3; do
    extra="--set model.ffn_hidden_size=1024"
    [ $fam != gpt ] && extra="--set model.family=$fam --set model.ffn_hidden_size=688 --set model.num_query_groups=2"
    d=/tmp/fam-$fam-$round; rm -rf $d
    "$build/orchestrator/rondo" run --run-dir $d $common $extra >/dev/null 2>&1
    python3 -c "
import json,statistics; r=[json.loads(l) for l in open('$d/metrics.jsonl')][10:]
print('$fam round $round', round(statistics.median(x['tokens_per_s'] for x in r)), 'tokens/s;', json.load(open('$d/plan.json'))['parameters'], 'parameters')"
  done
done
