#!/usr/bin/env bash
# Compares lowbit-bench with llama.cpp's llama-bench on the same GGUF files: interleaved runs, medians, and the ratio.
# Usage: bench/vs-llamacpp.sh [MODEL.gguf ...]   (default: techdocs-28M f16 and Q4_K_M from ../shared/models)
# Env: LLAMA_BENCH (default /tmp/llama.cpp/build/bin/llama-bench; see bench/README.md to build it),
#      THREADS (2), P (512), T (128), ROUNDS (3: each round runs both engines once, alternating who goes first),
#      ISAS ("": lowbit's own choice; e.g. "avx2 avx512" runs lowbit once per kernel set via LB_ISA, each its own
#      column, all interleaved with llama.cpp -- a before/after comparison in one run), SAMPLES (see below),
#      BASE_BENCH (another lowbit-bench binary, e.g. one built from the previous commit: run in every round as
#      its own column "lowbit base", interleaved with the others -- a before/after comparison of code).
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_BENCH=${LLAMA_BENCH:-/tmp/llama.cpp/build/bin/llama-bench}
LOWBIT_BENCH=${LOWBIT_BENCH:-build/release/lowbit-bench}
THREADS=${THREADS:-2}; P=${P:-512}; T=${T:-128}; ROUNDS=${ROUNDS:-3}
read -r -a isas <<<"${ISAS:-}"
[ ${#isas[@]} -gt 0 ] || isas=(default)
if [ -n "${BASE_BENCH:-}" ]; then
  [ -x "$BASE_BENCH" ] || { echo "vs-llamacpp: BASE_BENCH=$BASE_BENCH is not an executable" >&2; exit 1; }
  isas+=(base)
fi
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(../shared/models/techdocs-28M-f16.gguf ../shared/models/techdocs-28M-Q4_K_M.gguf)

[ -x "$LLAMA_BENCH" ] || { echo "vs-llamacpp: $LLAMA_BENCH not found; build llama.cpp as bench/README.md says" >&2; exit 1; }
[ -x "$LOWBIT_BENCH" ] || make -j2 bench >/dev/null
# SAMPLES=FILE keeps the raw samples (engine,model,test,tok/s) there, e.g. to read a long run's medians so far.
if [ -n "${SAMPLES:-}" ]; then
  samples=$SAMPLES; : >"$samples"
else
  samples=$(mktemp)
  trap 'rm -f "$samples"' EXIT
fi

# One lowbit-bench run per kernel set; "default" leaves LB_ISA unset.
run_lowbit() {
  local isa
  for isa in "${isas[@]}"; do
    if [ "$isa" = default ]; then env -u LB_ISA "$LOWBIT_BENCH" -m "$1" -t "$THREADS" -p "$P" -n "$T" -r 1 -o csv
    elif [ "$isa" = base ]; then env -u LB_ISA "$BASE_BENCH" -m "$1" -t "$THREADS" -p "$P" -n "$T" -r 1 -o csv
    else LB_ISA=$isa "$LOWBIT_BENCH" -m "$1" -t "$THREADS" -p "$P" -n "$T" -r 1 -o csv; fi |
      awk -F, -v m="$1" -v e="lowbit:$isa" 'NR > 1 { printf "%s,%s,%s,%s\n", e, m, $5, $6 }' >>"$samples"
  done
}
# llama.cpp cannot load lowbit's own types (lbq*): such a file gets lowbit's columns only.
run_llama() {
  local out
  out=$("$LLAMA_BENCH" -m "$1" -t "$THREADS" -p "$P" -n "$T" -r 1 -o json 2>/dev/null) || return 0
  jq -r --arg m "$1" '.[] | "llama.cpp,\($m),\(if .n_prompt > 0 then "pp\(.n_prompt)" else "tg\(.n_gen)" end),\(.avg_ts)"' \
    <<<"$out" >>"$samples"
}

for ((i = 1; i <= ROUNDS; i++)); do
  for m in "${models[@]}"; do
    echo "round $i/$ROUNDS: $(basename "$m")" >&2
    if ((i % 2)); then run_lowbit "$m"; run_llama "$m"; else run_llama "$m"; run_lowbit "$m"; fi
  done
done

# median of a column of numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "threads $THREADS, median of $ROUNDS interleaved runs, tokens/s; load average at the end: $(uptime | sed 's/.*load average: //')"
hdr="| model | test |"; sep="|---|---|"
for isa in "${isas[@]}"; do
  if [ "$isa" = default ]; then hdr+=" lowbit |"; else hdr+=" lowbit $isa |"; fi; sep+="---:|"
done
hdr+=" llama.cpp |"; sep+="---:|"
for isa in "${isas[@]}"; do
  if [ "$isa" = default ]; then hdr+=" lowbit/llama.cpp |"; else hdr+=" $isa/llama.cpp |"; fi; sep+="---:|"
done
echo "$hdr"; echo "$sep"
cut -d, -f2,3 "$samples" | sort -u | sort -t, -k1,1 -k2,2 | while IFS=, read -r model test; do
  ll=$(awk -F, -v m="$model" -v t="$test" '$1 == "llama.cpp" && $2 == m && $3 == t { print $4 }' "$samples" | median)
  los=(); row="| $(basename "$model") | $test |"
  for isa in "${isas[@]}"; do
    lo=$(awk -F, -v e="lowbit:$isa" -v m="$model" -v t="$test" '$1 == e && $2 == m && $3 == t { print $4 }' "$samples" | median)
    los+=("$lo"); row+=" $(awk -v v="$lo" 'BEGIN { if (v == "nan") print "-"; else printf "%.1f", v }') |"
  done
  row+=" $(awk -v v="$ll" 'BEGIN { if (v == "nan") print "-"; else printf "%.1f", v }') |"
  for lo in "${los[@]}"; do
    row+=" $(awk -v lo="$lo" -v ll="$ll" 'BEGIN { if (lo == "nan" || ll == "nan" || ll == 0) print "-"; else printf "%.2f", lo / ll }') |"
  done
  echo "$row"
done
