#!/usr/bin/env bash
# Compares lowbit-bench with llama.cpp's llama-bench on the same GGUF files: interleaved runs, medians, and the ratio.
# Usage: bench/vs-llamacpp.sh [MODEL.gguf ...]   (default: techdocs-28M f16 and Q4_K_M from ../shared/models)
# Env: LLAMA_BENCH (default /tmp/llama.cpp/build/bin/llama-bench; see bench/README.md to build it),
#      THREADS (2), P (512), T (128), ROUNDS (3: each round runs both engines once, alternating who goes first).
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_BENCH=${LLAMA_BENCH:-/tmp/llama.cpp/build/bin/llama-bench}
LOWBIT_BENCH=${LOWBIT_BENCH:-build/release/lowbit-bench}
THREADS=${THREADS:-2}; P=${P:-512}; T=${T:-128}; ROUNDS=${ROUNDS:-3}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(../shared/models/techdocs-28M-f16.gguf ../shared/models/techdocs-28M-Q4_K_M.gguf)

[ -x "$LLAMA_BENCH" ] || { echo "vs-llamacpp: $LLAMA_BENCH not found; build llama.cpp as bench/README.md says" >&2; exit 1; }
[ -x "$LOWBIT_BENCH" ] || make -j2 bench >/dev/null
samples=$(mktemp)
trap 'rm -f "$samples"' EXIT

run_lowbit() {
  "$LOWBIT_BENCH" -m "$1" -t "$THREADS" -p "$P" -n "$T" -r 1 -o csv |
    awk -F, -v m="$1" 'NR > 1 { printf "lowbit,%s,%s,%s\n", m, $5, $6 }' >>"$samples"
}
run_llama() {
  "$LLAMA_BENCH" -m "$1" -t "$THREADS" -p "$P" -n "$T" -r 1 -o json 2>/dev/null |
    jq -r --arg m "$1" '.[] | "llama.cpp,\($m),\(if .n_prompt > 0 then "pp\(.n_prompt)" else "tg\(.n_gen)" end),\(.avg_ts)"' >>"$samples"
}

for ((i = 1; i <= ROUNDS; i++)); do
  for m in "${models[@]}"; do
    echo "round $i/$ROUNDS: $(basename "$m")" >&2
    if ((i % 2)); then run_lowbit "$m"; run_llama "$m"; else run_llama "$m"; run_lowbit "$m"; fi
  done
done

# median of a column of numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "threads $THREADS, median of $ROUNDS interleaved runs, tokens/s"
printf '| %-34s | %-6s | %9s | %9s | %16s |\n' model test lowbit llama.cpp lowbit/llama.cpp
printf '| %-34s | %-6s | %9s | %9s | %16s |\n' "$(printf '%.0s-' {1..34})" ------ "--------:" "--------:" "---------------:"
cut -d, -f2,3 "$samples" | sort -u | sort -t, -k1,1 -k2,2 | while IFS=, read -r model test; do
  lo=$(awk -F, -v m="$model" -v t="$test" '$1 == "lowbit" && $2 == m && $3 == t { print $4 }' "$samples" | median)
  ll=$(awk -F, -v m="$model" -v t="$test" '$1 == "llama.cpp" && $2 == m && $3 == t { print $4 }' "$samples" | median)
  awk -v m="$(basename "$model")" -v t="$test" -v lo="$lo" -v ll="$ll" \
    'BEGIN { printf "| %-34s | %-6s | %9.1f | %9.1f | %16.2f |\n", m, t, lo, ll, (ll > 0 ? lo / ll : 0) }'
done
