#!/bin/sh
# Builds scripts/wasm/kbench.c natively and for node from the web build's SIMD objects (simd, simd-relaxed) and
# runs each ROUNDS times interleaved: ns per block of the Q4_K and Q6_K decode dots.  kbench.sh [ROUNDS [ROWS COLS]]
set -eu
export NODE_PATH=${NODE_PATH:-/usr/share/nodejs}
cd "$(dirname "$0")/../.."
ROUNDS=${1:-1}
SHAPE="${2:-} ${3:-}"   # ROWS COLS of the matrix (default 1536 512)
WEB_BUILD=${WEB_BUILD:-build/web-bench}
BUILD=${BUILD:-build/release}
make -s -j2 WEB_BUILD="$WEB_BUILD" "$WEB_BUILD/lowbit-simd.mjs" "$WEB_BUILD/lowbit-simd-relaxed.mjs" >&2
make -s -j2 BUILD="$BUILD" "$BUILD/liblowbit.a" >&2
cc -O2 -std=c11 -Iinclude -Isrc -D_GNU_SOURCE -o "$BUILD/kbench" scripts/wasm/kbench.c "$BUILD/liblowbit.a" -lm -pthread
link() {   # link VARIANT [extra emcc args]
  v=$1; shift
  OBJ=$(find "$WEB_BUILD/simd" -name '*.o' ! -path '*/web/c/*' ! -path '*/src/kernels/wasm/*' ! -path '*/src/server/*' ! -path '*/src/tokenizer/*' ! -path '*/src/model/*')
  OBJ="$OBJ $(find "$WEB_BUILD/$v/src/kernels/wasm" -name '*.o')"
  emcc -O3 -msimd128 --profiling-funcs -Iinclude -Isrc -std=c11 -D_GNU_SOURCE -sENVIRONMENT=node \
    -sALLOW_MEMORY_GROWTH=1 -sEXIT_RUNTIME=1 --pre-js scripts/wasm/node-pre.js -o "$WEB_BUILD/kbench-$v.js" scripts/wasm/kbench.c $OBJ \
    "$WEB_BUILD/pcre2-st/lib/libpcre2-8.a" -lm "$@"
}
link simd
link simd-relaxed --js-library scripts/wasm/relaxed-stubs.js
node scripts/wasm/relaxed.mjs "$WEB_BUILD/kbench-simd-relaxed.wasm" "$WEB_BUILD/kbench-simd-relaxed.js" --names >/dev/null
for r in $(seq "$ROUNDS"); do
  echo "round $r (load $(cut -d' ' -f1 /proc/loadavg))"
  "$BUILD/kbench" $SHAPE
  LB_ISA=avx2 "$BUILD/kbench" $SHAPE
  node "$WEB_BUILD/kbench-simd.js" $SHAPE | sed 's/^wasm  /simd  /'
  node --experimental-wasm-relaxed-simd "$WEB_BUILD/kbench-simd-relaxed.js" $SHAPE | sed 's/^wasm  /relax /'
done
