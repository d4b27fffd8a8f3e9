#!/usr/bin/env bash
# Golden tests against llama.cpp's outputs in ../shared/oracles:
#  - greedy 48-token continuations (tests/golden/test_greedy.c);
#  - perplexity over the first 8 chunks at ctx 512 within 0.2% of the oracle
#    for every model file (`lowbit perplexity --json`).
# usage: tests/golden/run.sh [BUILD_DIR]    (default build/release)
# LB_PPL_CHUNKS=80 checks the full oracle protocol (first 80 chunks) instead of
# the quick 8-chunk one: a few minutes on 2 cores, so not in the default run.
set -u
build=${1:-build/release}
shared=${LB_SHARED:-../shared}
oracle=$shared/oracles/llamacpp-techdocs.json
models=$shared/models
text=$shared/text/techdocs-valid.txt
pass=0; fail=0

cc -O2 -std=c11 -Wall -Wextra -Iinclude -o "$build/test_greedy" tests/golden/test_greedy.c \
   "$build/liblowbit.a" -ljansson -lpcre2-8 -lm -lpthread || { echo "golden: 0 passed, 1 failed"; exit 1; }

echo "== greedy continuations"
if "$build/test_greedy" "$oracle" "$models" techdocs-28M-f16.gguf techdocs-28M-Q4_K_M.gguf \
      techdocs-qwen-22M-f16.gguf techdocs-qwen-22M-Q4_K_M.gguf; then pass=$((pass+1)); else fail=$((fail+1)); fi

chunks=${LB_PPL_CHUNKS:-8}
key=ppl_first_8_chunks
[ "$chunks" = 80 ] && key=ppl
[ "$chunks" = 8 ] || [ "$chunks" = 80 ] || { echo "LB_PPL_CHUNKS must be 8 or 80 (the oracle's protocols)"; exit 2; }
echo "== perplexity, first $chunks chunks of 512, tolerance 0.2%"
for f in $(jq -r ".perplexity.$key | keys[]" "$oracle") \
         $(jq -r ".qwen2_model.$key | keys[]" "$oracle"); do
  [ -f "$models/$f" ] || { echo "skip $f (not shipped)"; continue; }
  want=$(jq -r --arg f "$f" "(.perplexity.$key[\$f] // .qwen2_model.$key[\$f])" "$oracle")
  got=$("$build/lowbit" perplexity -m "$models/$f" -f "$text" -c 512 --chunks "$chunks" --json | jq -r .ppl)
  if [ -z "$got" ] || [ "$got" = null ]; then echo "FAIL $f: no result"; fail=$((fail+1)); continue; fi
  rel=$(awk -v a="$got" -v b="$want" 'BEGIN { d = (a - b) / b; printf "%.4f", (d < 0 ? -d : d) * 100 }')
  if awk -v r="$rel" 'BEGIN { exit !(r <= 0.2) }'; then
    echo "ok   $f: $got vs llama.cpp $want ($rel%)"; pass=$((pass+1))
  else
    echo "FAIL $f: $got vs llama.cpp $want ($rel% > 0.2%)"; fail=$((fail+1))
  fi
done
echo "golden: $pass passed, $fail failed"
[ $fail -eq 0 ]
