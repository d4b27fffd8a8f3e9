#!/usr/bin/env bash
# Decode roofline: measured read bandwidth / weight bytes read per token, and lowbit's and llama.cpp's tg as fractions of it.
# Usage: bench/roofline.sh [MODEL.gguf ...]   (default: techdocs-28M f16 and Q4_K_M from ../shared/models)
# Env: THREADS (2), T (128: tokens generated per tg run), ROUNDS (3: interleaved runs per engine, medians),
#      BW_GBS (skip the probe and use this many GB/s), BW_MIB (1024: probe buffer), LLAMA_BENCH, LOWBIT_BENCH,
#      NO_LLAMA=1 (lowbit only).
# Bytes per token = every tensor's bytes except token_embd.weight, which decode only gathers one row of -- unless
# the model has no output.weight, in which case token_embd is also the output matrix and is read whole.
# The KV cache read (at most T positions here) and activations are left out: a few MiB at most, against GiBs.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}; T=${T:-128}; ROUNDS=${ROUNDS:-3}; BW_MIB=${BW_MIB:-1024}
LLAMA_BENCH=${LLAMA_BENCH:-/tmp/llama.cpp/build/bin/llama-bench}
LOWBIT_BENCH=${LOWBIT_BENCH:-build/release/lowbit-bench}
LOWBIT=${LOWBIT:-build/release/lowbit}
BANDWIDTH=${BANDWIDTH:-build/release/lowbit-bandwidth}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(../shared/models/techdocs-28M-f16.gguf ../shared/models/techdocs-28M-Q4_K_M.gguf)

for b in "$LOWBIT_BENCH" "$LOWBIT" "$BANDWIDTH"; do
  [ -x "$b" ] || make -j2 "$b" >/dev/null
done
use_llama=1
if [ "${NO_LLAMA:-0}" = 1 ] || [ ! -x "$LLAMA_BENCH" ]; then
  use_llama=0
  [ "${NO_LLAMA:-0}" = 1 ] || echo "roofline: $LLAMA_BENCH not found (bench/README.md says how to build it); lowbit only" >&2
fi

echo "load: $(uptime | sed 's/.*load average: //')"
if [ -n "${BW_GBS:-}" ]; then
  bw=$BW_GBS
  echo "bandwidth: $bw GB/s (from BW_GBS)"
else
  probe=$("$BANDWIDTH" -s "$BW_MIB" -t "$THREADS" -o csv)
  echo "$probe" | awk -F, 'NR > 1 { printf "bandwidth: %s thread(s) %s GB/s (min %s, max %s, %s loads)\n", $1, $2, $3, $4, $5 }'
  bw=$(echo "$probe" | awk -F, -v t="$THREADS" 'NR > 1 && $1 == t { print $2 }')
fi

samples=$(mktemp)
trap 'rm -f "$samples"' EXIT

# "model,bytes_per_token,total_tensor_bytes" from lowbit info's tensor table.
weight_bytes() {
  "$LOWBIT" info -m "$1" | awk -v m="$1" '
    /^tensors:/ { in_t = 1; next }
    in_t && $NF == "bytes" {
      b = $(NF - 1); total += b
      if ($1 == "token_embd.weight") embd = b
      if ($1 == "output.weight") has_out = 1
    }
    END { printf "%s,%.0f,%.0f\n", m, has_out ? total - embd : total, total }'
}
run_lowbit() {
  "$LOWBIT_BENCH" -m "$1" -t "$THREADS" -p 0 -n "$T" -r 1 -o csv |
    awk -F, -v m="$1" 'NR > 1 { printf "tg,lowbit,%s,%s\n", m, $6 }' >>"$samples"
}
run_llama() {
  "$LLAMA_BENCH" -m "$1" -t "$THREADS" -p 0 -n "$T" -r 1 -o json 2>/dev/null |
    jq -r --arg m "$1" '.[] | "tg,llama.cpp,\($m),\(.avg_ts)"' >>"$samples"
}

for m in "${models[@]}"; do
  echo "size,$(weight_bytes "$m")" >>"$samples"
done
for ((i = 1; i <= ROUNDS; i++)); do
  for m in "${models[@]}"; do
    echo "round $i/$ROUNDS: $(basename "$m")" >&2
    if ((use_llama == 0)); then run_lowbit "$m"
    elif ((i % 2)); then run_lowbit "$m"; run_llama "$m"
    else run_llama "$m"; run_lowbit "$m"; fi
  done
done

# median of a column of numbers on stdin ("-" when empty)
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "decode roofline at $bw GB/s ($THREADS threads); tg$T, median of $ROUNDS interleaved runs, tokens/s"
echo "| model | MiB read/token | roofline t/s | lowbit tg | lowbit/roof | llama.cpp tg | llama.cpp/roof |"
echo "|---|---:|---:|---:|---:|---:|---:|"
grep '^size,' "$samples" | while IFS=, read -r _ m per_tok _; do
  lo=$(awk -F, -v m="$m" '$1 == "tg" && $2 == "lowbit" && $3 == m { print $4 }' "$samples" | median)
  ll=$(awk -F, -v m="$m" '$1 == "tg" && $2 == "llama.cpp" && $3 == m { print $4 }' "$samples" | median)
  awk -v m="$(basename "$m")" -v pt="$per_tok" -v bw="$bw" -v lo="$lo" -v ll="$ll" 'BEGIN {
    roof = bw * 1e9 / pt
    lof = (lo == "-") ? "-" : sprintf("%.2f", lo / roof); llf = (ll == "-") ? "-" : sprintf("%.2f", ll / roof)
    los = (lo == "-") ? "-" : sprintf("%.1f", lo);        lls = (ll == "-") ? "-" : sprintf("%.1f", ll)
    printf "| %s | %.1f | %.1f | %s | %s | %s | %s |\n", m, pt / 1048576, roof, los, lof, lls, llf }'
done
