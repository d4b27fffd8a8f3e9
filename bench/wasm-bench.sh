#!/bin/sh
# Builds lowbit-bench for node from the browser's single-thread SIMD objects (make web, variants "simd" and
# "simd-relaxed") and runs them next to the native build, interleaved: wasm-bench.sh [MODEL] [ROUNDS] [extra bench args].
# Native runs with the kernel set lb_kernels() picks (LB_ISA in the environment, where supported, overrides it).
# CPU=1 in the environment measures tokens per CPU-second (see below) instead of tokens per second.
set -eu
cd "$(dirname "$0")/.."
MODEL=${1:-../shared/models/techdocs-28M-Q4_K_M.gguf}
ROUNDS=${2:-5}
[ $# -ge 2 ] && shift 2 || shift $#
EXTRA=$*   # extra lowbit-bench arguments (word-split: plain options only)
CPU_UNIT=s; [ "${CPU:-0}" = 1 ] && CPU_UNIT=CPU-s
WEB_BUILD=${WEB_BUILD:-build/web-bench}
BUILD=${BUILD:-build/release}
export NODE_PATH=${NODE_PATH:-/usr/share/nodejs}
make -s -j2 WEB_BUILD="$WEB_BUILD" "$WEB_BUILD/lowbit-simd.mjs" "$WEB_BUILD/lowbit-simd-relaxed.mjs" >&2
make -s -j2 BUILD="$BUILD" "$BUILD/lowbit-bench" >&2
# the same objects the browser runs, plus bench.c; --profiling-funcs keeps names for node --cpu-prof
link() {   # link VARIANT [extra emcc args]
  v=$1; shift
  OBJ=$(find "$WEB_BUILD/simd" -name '*.o' ! -path '*/web/c/*' ! -path '*/src/kernels/wasm/*')
  OBJ="$OBJ $(find "$WEB_BUILD/$v/src/kernels/wasm" -name '*.o')"
  emcc -O3 -msimd128 --profiling-funcs -Iinclude -std=c11 -D_GNU_SOURCE -sENVIRONMENT=node -sNODERAWFS=1 \
    -sALLOW_MEMORY_GROWTH=1 -sMAXIMUM_MEMORY=4GB -sINITIAL_MEMORY=32MB -sEXIT_RUNTIME=1 \
    --pre-js scripts/wasm/node-pre.js -o "$WEB_BUILD/bench-$v.js" bench/bench.c $OBJ \
    "$WEB_BUILD/pcre2-st/lib/libpcre2-8.a" -lm "$@"
}
link simd
link simd-relaxed --js-library scripts/wasm/relaxed-stubs.js
node scripts/wasm/relaxed.mjs "$WEB_BUILD/bench-simd-relaxed.wasm" "$WEB_BUILD/bench-simd-relaxed.js" --names
tg() { awk -F, '$5 ~ /^tg/ {print $6}'; }
# CPU=1: tokens per CPU-second instead of per wall second, from the user+sys time of a 288-token and a 32-token
# decode (the difference leaves out loading and compiling): on a machine others are loading, a process's CPU time
# is far steadier than its wall time (it still pays for shared caches).
if [ "${CPU:-0}" = 1 ]; then
  cpu() { /usr/bin/time -f "%U %S" "$@" -m "$MODEL" -t 1 -p 0 -r 1 -o csv $EXTRA >/dev/null 2>"$WEB_BUILD/time.txt"; tail -1 "$WEB_BUILD/time.txt" | awk '{print $1 + $2}'; }
  per() { a=$(cpu "$@" -n 32); b=$(cpu "$@" -n 288); echo "$a $b" | awk '{printf "%.1f", 256 / ($2 - $1)}'; }
  tg() { cat >/dev/null; }
fi
run() {   # run CMD... -> tok/s (wall, from lowbit-bench) or tok per CPU-second (CPU=1)
  if [ "${CPU:-0}" = 1 ]; then per "$@"; else "$@" -m "$MODEL" -t 1 -p 0 -r 1 -o csv $EXTRA | tg; fi
}
# One tg run of each per round (-r 1), interleaved; at the end the median and the best of the rounds per series (on a
# loaded machine the best is the steadier estimate of what the code can do; both are printed).
: >"$WEB_BUILD/wasm-bench.txt"
for r in $(seq "$ROUNDS"); do
  n=$(run "$BUILD/lowbit-bench")
  a=$(run env LB_ISA=avx2 "$BUILD/lowbit-bench")
  w=$(run node "$WEB_BUILD/bench-simd.js")
  x=$(run node --experimental-wasm-relaxed-simd "$WEB_BUILD/bench-simd-relaxed.js")
  echo "$n $a $w $x" >>"$WEB_BUILD/wasm-bench.txt"
  echo "round $r  native $n (LB_ISA=avx2 $a)  simd $w  simd-relaxed $x tok/${CPU_UNIT}  (load $(cut -d' ' -f1 /proc/loadavg))"
done
for col in 1 2 3 4; do
  sort -g -k$col,$col "$WEB_BUILD/wasm-bench.txt" | awk -v c=$col '{v[NR]=$c} END {printf "%s %s\n", v[int((NR+1)/2)], v[NR]}'
done | paste -s -d' ' | awk '{printf "median/best tok/s: native %s/%s  avx2 %s/%s  simd %s/%s  simd-relaxed %s/%s\n", $1,$2,$3,$4,$5,$6,$7,$8;
  printf "simd/native %.2f/%.2f (avx2 %.2f/%.2f)  simd-relaxed/native %.2f/%.2f (avx2 %.2f/%.2f)\n", $5/$1,$6/$2,$5/$3,$6/$4,$7/$1,$8/$2,$7/$3,$8/$4}'
