#!/usr/bin/env bash
# Builds the GGUF fuzzer, seeds its corpus and runs it for SECONDS (default 60).
# Exits non-zero if libFuzzer finds a crash, leak or sanitizer report; the
# failing input is saved as build/fuzz/crash-*.
set -u
cd "$(dirname "$0")/../.."
secs=${1:-60}
make --no-print-directory fuzz >/dev/null || { echo "run.sh: build failed (run 'make fuzz')"; exit 2; }
corpus=build/fuzz/corpus/gguf
mkdir -p "$corpus"
build/fuzz/gguf_seeds "$corpus" || { echo "run.sh: seed generation failed"; exit 2; }
build/fuzz/fuzz_gguf -max_total_time="$secs" -timeout=10 -max_len=16384 -rss_limit_mb=1024 \
  -dict=tests/fuzz/gguf.dict -artifact_prefix=build/fuzz/ -print_final_stats=1 "$corpus"
rc=$?
if [ $rc -ne 0 ]; then echo "run.sh: fuzz_gguf FAILED (exit $rc)"; else echo "run.sh: fuzz_gguf ran ${secs}s clean"; fi
exit $rc
