#!/usr/bin/env bash
# Builds the fuzzers, seeds their corpora and runs them for SECONDS in all (default 60):
# half to the GGUF reader, a quarter each to the tokenizers and the server's request parser.
# Exits non-zero if libFuzzer finds a crash, leak or sanitizer report; the
# failing input is saved as build/fuzz/<target>-crash-*.
set -u
cd "$(dirname "$0")/../.."
secs=${1:-60}
make --no-print-directory fuzz >/dev/null || { echo "run.sh: build failed (run 'make fuzz')"; exit 2; }
c=build/fuzz/corpus
mkdir -p "$c/gguf" "$c/tokenizer" "$c/oai" "$c/hessian"
build/fuzz/gguf_seeds "$c/gguf" || { echo "run.sh: seed generation failed"; exit 2; }
# Seeds are written here, not committed: the first byte is the target's mode byte (see each target).
printf '\000Hello world, the kernel\n  tabs\tand spaces' >"$c/tokenizer/seed-plain"
printf '\003<s>x</s> caf\303\251 \342\202\254 \360\237\230\200 \377\376' >"$c/tokenizer/seed-special"
printf '\001{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":5,"stop":["a","b"]}' >"$c/oai/seed-chat"
printf '\000{"prompt":"The kernel","max_tokens":1000,"temperature":0.2,"top_p":0.5,"stream_options":{"include_usage":true}}' >"$c/oai/seed-completion"
printf '\003{"messages":[{"role":"system","content":[{"type":"text","text":"x"}]},{"role":"developer","content":"y"}],"n":1}' >"$c/oai/seed-parts"

rc=0
run() {   # target seconds extra-args...
  local t=$1 s=$2
  shift 2
  build/fuzz/"$t" -max_total_time="$s" -timeout=10 -rss_limit_mb=1024 -artifact_prefix=build/fuzz/"$t"- \
    -print_final_stats=1 "$@" >build/fuzz/"$t".log 2>&1
  local r=$?
  if [ "$r" -ne 0 ]; then
    tail -n 80 build/fuzz/"$t".log; echo "run.sh: $t FAILED (exit $r; whole log in build/fuzz/$t.log)"; rc=1
  else
    grep -E '^(stat::number_of_executed_units|Done)' build/fuzz/"$t".log; echo "run.sh: $t ran ${s}s clean"
  fi
}
run fuzz_gguf $((secs / 2)) -max_len=16384 -dict=tests/fuzz/gguf.dict "$c/gguf"
run fuzz_tokenizer $((secs / 4 > 0 ? secs / 4 : 1)) -max_len=1024 "$c/tokenizer"
run fuzz_oai $((secs / 4 > 0 ? secs / 4 : 1)) -max_len=4096 "$c/oai"
# The Hessian loader starts from the GGUF seeds (read-only second corpus); an extra eighth of the time.
run fuzz_hessian $((secs / 8 > 0 ? secs / 8 : 1)) -max_len=16384 -dict=tests/fuzz/gguf.dict "$c/hessian" "$c/gguf"
exit $rc
