#!/usr/bin/env bash
# End-to-end checks of the `lowbit` tool: usage errors, corrupt model files
# (each must give a clear message and exit 1 — never a crash; run with the
# ASan build to also catch leaks), and a short generation.
# usage: tests/cli/run.sh [BUILD_DIR]
set -u
build=${1:-build/release}
lowbit=$build/lowbit
shared=${LB_SHARED:-../shared}
model=$shared/models/techdocs-28M-Q4_K_M.gguf
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { echo "ok   $*"; pass=$((pass+1)); }
bad() { echo "FAIL $*"; fail=$((fail+1)); }

# expect_fail NAME PATTERN CMD...: exit status 1 (not a signal, not 0) and stderr matching PATTERN
expect_fail() {
  local name=$1 pat=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc -eq 1 ] && grep -Eq "$pat" "$tmp/err" && ! grep -q "Sanitizer" "$tmp/err"; then ok "$name"
  else bad "$name (exit $rc)"; sed 's/^/    /' "$tmp/err" | head -5; fi
}

# Usage errors exit 2 with a hint.
"$lowbit" run -m >/dev/null 2>"$tmp/err"; [ $? -eq 2 ] && grep -q "needs a value" "$tmp/err" && ok "missing flag value" || bad "missing flag value"
"$lowbit" run -m x -p y -n abc >/dev/null 2>"$tmp/err"; [ $? -eq 2 ] && grep -q "bad value for -n" "$tmp/err" && ok "bad number" || bad "bad number"
"$lowbit" frobnicate >/dev/null 2>&1; [ $? -eq 2 ] && ok "unknown command" || bad "unknown command"
long_pat=$(printf 'x%.0s' $(seq 120))
"$lowbit" quantize a b --tensor-type "$long_pat=q4_0" >/dev/null 2>"$tmp/err"; [ $? -eq 2 ] && grep -q "at most 1024 rules of at most 95 characters" "$tmp/err" && ok "over-long --tensor-type pattern" || bad "over-long --tensor-type pattern"
# 200 per-layer rules (more than the old limit of 64) reach the input check.
rules=(); for l in $(seq 0 199); do rules+=(--tensor-type "blk.$l.ffn_down.=q4_0"); done
"$lowbit" quantize "$tmp/nope.gguf" "$tmp/out.gguf" "${rules[@]}" >/dev/null 2>"$tmp/err"; [ $? -eq 1 ] && ! grep -q "tensor-type" "$tmp/err" && ok "200 --tensor-type rules" || bad "200 --tensor-type rules"
"$lowbit" quantize a b --bpw 2.5 --max-lbqv 1.5 >/dev/null 2>"$tmp/err"; [ $? -eq 2 ] && grep -q "fraction from 0 to 1" "$tmp/err" && ok "--max-lbqv out of range" || bad "--max-lbqv out of range"
"$lowbit" quantize a b --max-lbqv 0.5 >/dev/null 2>"$tmp/err"; [ $? -eq 2 ] && grep -q "give --bpw too" "$tmp/err" && ok "--max-lbqv without --bpw" || bad "--max-lbqv without --bpw"
for c in run perplexity info tokenize; do
  "$lowbit" $c --help | grep -q "usage: lowbit $c" && ok "$c --help" || bad "$c --help"
done

expect_fail "missing file" "cannot|No such file" "$lowbit" info -m "$tmp/nope.gguf"

# Corrupt files derived from a real model.
size=$(stat -c %s "$model")
for cut in 0 3 4 7 8 15 16 23 24 100 1000 4096 65536 $((size / 2)) $((size - 1)); do
  head -c $cut "$model" >"$tmp/cut.gguf"
  expect_fail "truncated at $cut bytes (info)" "." "$lowbit" info -m "$tmp/cut.gguf"
  expect_fail "truncated at $cut bytes (run)" "." "$lowbit" run -m "$tmp/cut.gguf" -p hi -n 1
done
{ printf 'GGUX'; tail -c +5 "$model"; } >"$tmp/magic.gguf"
expect_fail "bad magic" "magic" "$lowbit" info -m "$tmp/magic.gguf"
{ head -c 4 "$model"; printf '\x09\x00\x00\x00'; tail -c +9 "$model"; } >"$tmp/version.gguf"
expect_fail "bad version" "version" "$lowbit" info -m "$tmp/version.gguf"
{ head -c 8 "$model"; printf '\xff\xff\xff\xff\xff\xff\xff\x7f'; tail -c +17 "$model"; } >"$tmp/ntensors.gguf"
expect_fail "huge tensor count" "tensor" "$lowbit" info -m "$tmp/ntensors.gguf"
{ head -c 16 "$model"; printf '\xff\xff\xff\xff\xff\xff\xff\x7f'; tail -c +25 "$model"; } >"$tmp/nkv.gguf"
expect_fail "huge metadata count" "metadata|key|kv" "$lowbit" info -m "$tmp/nkv.gguf"
# A model whose architecture lowbit does not run: info works, run says why.
sed 's/general.architecture\x08\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00llama/general.architecture\x08\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00llamb/' "$model" >"$tmp/arch.gguf" 2>/dev/null
if cmp -s "$model" "$tmp/arch.gguf"; then bad "arch edit did not apply"; else
  expect_fail "unsupported architecture" "architecture 'llamb'" "$lowbit" run -m "$tmp/arch.gguf" -p hi -n 1
fi

# Generation works and prints the timing line.
"$lowbit" run -m "$model" -p "The kernel scheduler" -n 8 --temp 0 -t 2 >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ] && grep -q "generation 8 tok" "$tmp/err" && [ $(wc -c <"$tmp/out") -gt 21 ]; then ok "run generates 8 tokens"
else bad "run"; cat "$tmp/err"; fi
"$lowbit" info -m "$model" --json | jq -e '.parameters == 28320256' >/dev/null && ok "info --json parameters" || bad "info --json"
"$lowbit" tokenize -m "$model" -p "Hello world" --ids | grep -Eq '^1( [0-9]+)+$' && ok "tokenize adds BOS" || bad "tokenize"

echo "cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
