#!/usr/bin/env bash
# THE test command: setup, native unit tests (-Werror), ASan+UBSan, wasm under node, the web SDK in Chromium, Firefox and WebKit, NEON kernel tests under qemu, golden, fuzz smoke.
# Prints a header and the time of each section, then one last line "N passed, N failed"
# (unit sections add up their checks; every other section counts as one) and exits non-zero if anything failed.
# Environment: LB_TEST_ONLY="native server asan wasm browser neon golden fuzz" (cli runs with native, cli-asan with asan) runs a subset; LB_FUZZ_SECONDS (default 60).
set -u
cd "$(dirname "$0")/.."
export CI=${CI:-true}
export NODE_PATH=${NODE_PATH:-/usr/share/nodejs}

total_pass=0
total_fail=0
summary=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT

want() { [ -z "${LB_TEST_ONLY:-}" ] || [[ " $LB_TEST_ONLY " == *" $1 "* ]]; }

# section NAME KIND TIMEOUT_S CMD...   KIND is "unit" (parse run_unit.sh's totals) or "one".
section() {
  local name=$1 kind=$2 limit=$3
  shift 3
  echo
  echo "=================== $name: $*"
  local t0=$SECONDS rc
  # Without a TTY, timeout runs the command in its own process group and can kill all of it.
  local fg=()
  [ -t 0 ] && fg=(--foreground)
  timeout "${fg[@]}" -k 10 "$limit" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  local dt=$((SECONDS - t0)) p=0 f=0
  if [ "$kind" = unit ]; then
    # A section may run several unit suites (wasm: the plain and the relaxed-SIMD build), each with its own totals line.
    read -r p f < <(grep -E '^unit: [0-9]+ passed, [0-9]+ failed$' "$log" | awk '{p += $2; f += $4} END {print p + 0, f + 0}')
    # A build error, a crash outside the counts or a timeout is one more failure.
    if [ "$rc" -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
  else
    if [ "$rc" -eq 0 ]; then p=1; else f=1; fi
  fi
  [ "$rc" = 124 ] && echo "!! $name timed out after ${limit}s"
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  local verdict=ok
  [ "$f" != 0 ] && verdict=FAILED
  echo "=================== $name: $verdict ($p passed, $f failed, exit $rc, ${dt}s)"
  summary+=("$(printf '%-8s %-6s %6s passed %4s failed %5ss' "$name" "$verdict" "$p" "$f" "$dt")")
}

skip() {
  echo
  echo "=================== $1: skipped ($2)"
  summary+=("$(printf '%-8s skipped (%s)' "$1" "$2")")
}

start=$SECONDS
section setup one 1200 scripts/setup.sh </dev/null
want native && section native unit 900 make -j2 WERROR=1 test
want native && section cli one 600 tests/cli/run.sh build/release
want server && section server one 600 tests/server/run.sh
want asan && section asan unit 900 make -j2 asan
want asan && section cli-asan one 600 tests/cli/run.sh build/asan
want wasm && section wasm unit 900 make -j2 wasm-test
want browser && section browser one 2400 tests/browser/run.sh
want neon && section neon unit 900 make -j2 WERROR=1 neon-test
if want golden; then
  if [ -x tests/golden/run.sh ]; then section golden one 600 tests/golden/run.sh
  else skip golden "tests/golden/run.sh not present"; fi
fi
if want fuzz; then
  if [ -x tests/fuzz/run.sh ]; then section fuzz one 600 tests/fuzz/run.sh "${LB_FUZZ_SECONDS:-60}"
  else skip fuzz "tests/fuzz/run.sh not present"; fi
fi

echo
echo "=================== summary ($((SECONDS - start))s)"
for s in "${summary[@]}"; do echo "  $s"; done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
