#!/usr/bin/env bash
# Tokenizer throughput (bench/RESULTS.md "Tokenizers"): rondo's byte-level BPE against Hugging
# Face's own (npm `tokenizers` 0.23.2, single-threaded) on the Debian copyright corpus
# (/usr/share/doc/*/copyright, the files that are valid UTF-8, one document each), GPT-2, Llama 3
# and Qwen3 vocabularies (scripts/fetch-tokenizers), alternated over ROUNDS rounds (default 3).
# Also says whether both gave the same ids (token count and an FNV-1a digest of every id).
# Usage: bench/tokenizer_bench.sh [BUILD_DIR]
set -euo pipefail
export LC_ALL=C RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
rounds="${ROUNDS:-3}"
work="${TMPDIR:-/tmp}/rondo-tokenizer-bench"
mkdir -p "$work/corpus"
"$root/scripts/fetch-tokenizers"
[ -d "$work/hf/node_modules/tokenizers" ] || npm install --silent --prefix "$work/hf" tokenizers@0.23.2
python3 - "$work/corpus" <<'PY'
import glob, os, shutil, sys
out = sys.argv[1]; kept = skipped = 0
for f in sorted(glob.glob('/usr/share/doc/*/copyright')):
    data = open(f, 'rb').read()
    try:
        data.decode('utf-8')
    except UnicodeDecodeError:
        skipped += 1; continue
    open(os.path.join(out, f.split('/')[-2] + '.txt'), 'wb').write(data); kept += 1
print(f'corpus: {kept} copyright files ({skipped} not UTF-8 left out)', file=sys.stderr)
PY
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); node $(node --version); RAYON_NUM_THREADS=1" >&2
du -sb "$work/corpus" | awk '{printf "corpus bytes: %d\n", $1}' >&2
for round in $(seq "$rounds"); do
  for name in gpt2 llama3 qwen3; do
    tok="$root/.cache/tokenizers/$name/tokenizer.json"
    ours=$("$build/orchestrator/rondo" data tokenize --json --tokenizer "$tok" "$work"/corpus/*.txt)
    theirs=$(NODE_PATH="$work/hf/node_modules" node "$root/bench/tokenizer_reference.js" "$tok" "$work"/corpus/*.txt)
    python3 - "$name" "$round" "$ours" "$theirs" <<'PY'
import json, sys
name, rnd, a, b = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
same = a['tokens'] == b['tokens'] and a['ids_fnv1a64'] == b['ids_fnv1a64']
print(f"{name:7s} round {rnd}: rondo {a['mb_per_s']:6.2f} MB/s  HF {b['mb_per_s']:6.2f} MB/s  "
      f"ratio {a['mb_per_s'] / b['mb_per_s']:.2f}x  tokens {a['tokens']} vs {b['tokens']}  "
      f"ids {'identical' if same else 'DIFFERENT'}  (load {a['load_seconds']:.2f} s vs {b['load_seconds']:.2f} s)")
PY
  done
done
