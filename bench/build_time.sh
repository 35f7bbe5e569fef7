#!/usr/bin/env bash
# Build times on this machine: cold (ccache off) and warm (ccache populated) builds of the whole
# project and of the coordinator (`rondo`) alone, each in a fresh build directory, plus
# incremental rebuilds after touching one coordinator and one worker source.
#   bench/build_time.sh            (uses $(nproc) jobs; takes ~15 minutes on 2 cores)
# It builds the tree it lives in: run it from a clean checkout (git worktree add /tmp/bt HEAD).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d /tmp/rondo-build-time.XXXXXX)"
export CCACHE_DIR="$tmp/ccache"
export CCACHE_BASEDIR=/tmp  # source and build directories both live under /tmp here
jobs="$(nproc)"

timed() {  # label, then the command
  local label="$1"; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > "$tmp/last.log" 2>&1 || { cat "$tmp/last.log"; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" -v l="$label" 'BEGIN { printf "%-44s %7.1f s\n", l, b - a }'
}

configure() { cmake -S "$root" -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null; }

for what in all rondo; do
  target=$([ "$what" = all ] && echo all || echo rondo)
  label=$([ "$what" = all ] && echo "whole project" || echo "coordinator (rondo)")
  configure "$tmp/cold-$what"
  CCACHE_DISABLE=1 timed "cold build, $label" cmake --build "$tmp/cold-$what" -j "$jobs" --target "$target"
  configure "$tmp/prime-$what"
  cmake --build "$tmp/prime-$what" -j "$jobs" --target "$target" > /dev/null  # fill ccache
  configure "$tmp/warm-$what"
  timed "warm build (ccache hot), $label" cmake --build "$tmp/warm-$what" -j "$jobs" --target "$target"
done
# Incremental rebuilds of a real edit (ccache off, so nothing is served from the cache).
echo "// edited" >> "$root/orchestrator/config.cpp"
CCACHE_DISABLE=1 timed "incremental: edit orchestrator/config.cpp" cmake --build "$tmp/cold-all" -j "$jobs"
echo "// edited" >> "$root/worker/trainer.cpp"
CCACHE_DISABLE=1 timed "incremental: edit worker/trainer.cpp" cmake --build "$tmp/cold-all" -j "$jobs"
git -C "$root" checkout -- orchestrator/config.cpp worker/trainer.cpp
rm -rf "$tmp"
