#!/usr/bin/env bash
# Runs every unit-test program in a directory (native binaries, or .mjs/.js
# files under node for the WebAssembly build) and adds up their counts.
set -u
dir=$1
runner=${2:-}
total_pass=0; total_fail=0; bad=()
for t in "$dir"/test_*; do
  case "$t" in *.wasm|*.d|*.o|*.worker.js) continue;; esac
  [ -f "$t" ] || continue
  name=$(basename "$t")
  out=$(mktemp)
  # A hung test must fail (exit 124) rather than stall the whole run.
  lim=${LB_TEST_TIMEOUT:-300}
  if [ -n "$runner" ]; then timeout -k 5 "$lim" $runner "$t" >"$out" 2>&1; rc=$?; else timeout -k 5 "$lim" "$t" >"$out" 2>&1; rc=$?; fi
  [ $rc = 124 ] && echo "$name: timed out after ${lim}s" >>"$out"
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
  p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}')
  p=${p:-0}; f=${f:-0}
  if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi   # a crash counts as a failure
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
  if [ $rc -ne 0 ]; then bad+=("$name"); echo "== $name FAILED (exit $rc)"; cat "$out"; else echo "== $name: $line"; fi
  rm -f "$out"
done
echo "unit: $total_pass passed, $total_fail failed"
[ ${#bad[@]} -eq 0 ]
