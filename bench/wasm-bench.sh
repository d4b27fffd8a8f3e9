#!/bin/sh
# Builds lowbit-bench for node from the browser's single-thread SIMD objects (make web, variant "simd")
# and runs it next to the native build, interleaved: wasm-bench.sh [MODEL] [ROUNDS] [extra bench args].
set -eu
cd "$(dirname "$0")/.."
MODEL=${1:-../shared/models/techdocs-28M-Q4_K_M.gguf}
ROUNDS=${2:-3}
[ $# -ge 2 ] && shift 2 || shift $#
WEB_BUILD=${WEB_BUILD:-build/web-bench}
BUILD=${BUILD:-build/release}
export NODE_PATH=${NODE_PATH:-/usr/share/nodejs}
make -s -j2 WEB_BUILD="$WEB_BUILD" "$WEB_BUILD/lowbit-simd.mjs" >&2
make -s -j2 BUILD="$BUILD" "$BUILD/lowbit-bench" >&2
# the same objects the browser runs, plus bench.c; --profiling-funcs keeps names for node --cpu-prof
OBJ=$(find "$WEB_BUILD/simd" -name '*.o' ! -path '*/web/c/*')
emcc -O3 -msimd128 --profiling-funcs -Iinclude -std=c11 -D_GNU_SOURCE -sENVIRONMENT=node -sNODERAWFS=1 \
  -sALLOW_MEMORY_GROWTH=1 -sMAXIMUM_MEMORY=4GB -sINITIAL_MEMORY=32MB -sEXIT_RUNTIME=1 \
  --pre-js scripts/wasm/node-pre.js -o "$WEB_BUILD/bench-simd.js" bench/bench.c $OBJ \
  "$WEB_BUILD/pcre2-st/lib/libpcre2-8.a" -lm
for r in $(seq "$ROUNDS"); do
  n=$("$BUILD/lowbit-bench" -m "$MODEL" -t 1 -p 0 -r 3 -o csv "$@" | awk -F, '$5 ~ /^tg/ {print $6}')
  w=$(node "$WEB_BUILD/bench-simd.js" -m "$MODEL" -t 1 -p 0 -r 3 -o csv "$@" | awk -F, '$5 ~ /^tg/ {print $6}')
  echo "round $r  native $n tok/s  wasm $w tok/s  wasm/native $(echo "$w $n" | awk '{printf "%.2f", $1 / $2}')"
done
