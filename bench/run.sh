#!/usr/bin/env bash
# Builds lowbit-bench and runs it on each model given (default: the techdocs-28M files), pp512 + tg128 with 2 threads.
# Usage: bench/run.sh [MODEL.gguf ...]; THREADS, P, T, R override -t -p -n -r.
set -euo pipefail
cd "$(dirname "$0")/.."
make -j2 bench >/dev/null
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(../shared/models/techdocs-28M-f16.gguf ../shared/models/techdocs-28M-Q8_0.gguf
                                   ../shared/models/techdocs-28M-Q4_K_M.gguf ../shared/models/techdocs-28M-Q2_K.gguf)
for m in "${models[@]}"; do
  build/release/lowbit-bench -m "$m" -t "${THREADS:-2}" -p "${P:-512}" -n "${T:-128}" -r "${R:-3}"
  echo
done
