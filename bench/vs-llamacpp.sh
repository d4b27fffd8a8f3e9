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
  "$LLAMA_BENCH" -m "$1" -t "$THREADS" -p "$P" -n "$T" -r 1 -o csv 2>/dev/null |
    python3 -c '
import csv, sys
for r in csv.DictReader(sys.stdin):
    test = "pp%s" % r["n_prompt"] if r["n_prompt"] != "0" else "tg%s" % r["n_gen"]
    print("llama.cpp,%s,%s,%s" % (sys.argv[1], test, r["avg_ts"]))' "$1" >>"$samples"
}

for ((i = 1; i <= ROUNDS; i++)); do
  for m in "${models[@]}"; do
    echo "round $i/$ROUNDS: $(basename "$m")" >&2
    if ((i % 2)); then run_lowbit "$m"; run_llama "$m"; else run_llama "$m"; run_lowbit "$m"; fi
  done
done

python3 - "$samples" "$THREADS" "$ROUNDS" <<'PY'
import csv, statistics, sys, os
rows = list(csv.reader(open(sys.argv[1])))
data = {}
for eng, model, test, tps in rows:
    data.setdefault((os.path.basename(model), test), {}).setdefault(eng, []).append(float(tps))
print(f"threads {sys.argv[2]}, median of {sys.argv[3]} interleaved runs, tokens/s")
print(f"| {'model':34} | {'test':6} | {'lowbit':>9} | {'llama.cpp':>9} | {'lowbit/llama.cpp':>16} |")
print(f"| {'-'*34} | {'-'*6} | {'-'*8}: | {'-'*8}: | {'-'*15}: |")
for (model, test), d in sorted(data.items(), key=lambda kv: (kv[0][0], kv[0][1][:2] != "pp")):
    lo = statistics.median(d["lowbit"]) if "lowbit" in d else float("nan")
    ll = statistics.median(d["llama.cpp"]) if "llama.cpp" in d else float("nan")
    ratio = lo / ll if ll == ll and ll > 0 else float("nan")
    print(f"| {model:34} | {test:6} | {lo:9.1f} | {ll:9.1f} | {ratio:16.2f} |")
PY
