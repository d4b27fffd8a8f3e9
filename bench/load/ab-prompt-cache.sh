#!/usr/bin/env bash
# The prompt cache's effect on batched throughput, measured the way a drifting machine allows: two servers alive
# at once (techdocs-28M Q4_K_M, -t 2, --parallel 8), one with the prompt cache and one with --no-prompt-cache,
# and `bench/load/load.mjs --scaling` run against each in turn, ROUNDS times (default 5), so each pair of runs is
# seconds apart.  Loopback only; both servers are stopped at the end.
#   usage: bench/load/ab-prompt-cache.sh [ROUNDS] [DURATION_S]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
dur=${2:-10}
bin=${LOWBIT_BIN:-build/release/lowbit}
model=${LB_SHARED:-../shared}/models/techdocs-28M-Q4_K_M.gguf
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
start() {   # start PORT_FILE ARGS...: the server's URL in PORT_FILE once it listens
  local log; log=$(mktemp)
  "$bin" serve -m "$model" --port 0 -t 2 --parallel 8 --queue 64 "${@:2}" 2>"$log" &
  pids+=($!)
  for _ in $(seq 100); do
    grep -o 'http://127\.0\.0\.1:[0-9]*' "$log" >"$1" 2>/dev/null && [ -s "$1" ] && break
    sleep 0.1
  done
  rm -f "$log"
}
a=$(mktemp) b=$(mktemp)
start "$a"
start "$b" --no-prompt-cache
urls=("$(cat "$a")" "$(cat "$b")")
names=("prompt cache" "--no-prompt-cache")
rm -f "$a" "$b"
for r in $(seq "$rounds"); do
  for k in 0 1; do
    ratio=$(node bench/load/load.mjs --scaling --duration "$dur" --url "${urls[$k]}" --json |
            node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);
              console.log(`${j.ratio.toFixed(2)}x (1 stream ${j.one.tok_per_s.toFixed(0)} tok/s, 8 streams ` +
              `${j.many.tok_per_s.toFixed(0)}; prompt tokens reused ${j.one.cached_prompt_tokens}/${j.one.prompt_tokens}, ` +
              `${j.many.cached_prompt_tokens}/${j.many.prompt_tokens}; errors ${j.one.errors + j.many.errors})`)})')
    echo "round $r, ${names[$k]}: $ratio"
  done
done
