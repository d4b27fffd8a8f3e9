#!/usr/bin/env bash
# KV cache sweep: for each context and K/V type pair, the peak memory and
# decode speed of `lowbit run` with the context (nearly) full, and the
# perplexity of one chunk of that length; prints a markdown table.
#
#   bench/kv_sweep.sh            short: 1K 2K 4K; f16/f16 q8/q8 q4/q4 q2/q2 (a few minutes)
#   bench/kv_sweep.sh --full     1K 2K 4K 8K 16K; all five same-type pairs (long: ~30+ min on 2 cores)
# Options: -m MODEL, -t THREADS, -b LOWBIT_BINARY, --ctx "1024 4096", --pairs "f16/f16 q4/q4",
#          -n TOKENS (generated per decode run), --window W (also score with --window W --sinks 4),
#          --no-ppl
#
# Decode speed: a prompt of about (ctx - n - 64) tokens of techdocs-valid,
# then n greedy tokens (--ignore-eos), so decoding runs at ~ctx context.
# Memory: peak RSS of that run (weights are mmap'd and count when touched).
# Perplexity: `lowbit perplexity -c ctx --chunks 1` (the second half of the
# first ctx tokens is scored).  Past the model's trained context (1024 for
# techdocs-28M) it is expected to blow up without a window; --window adds a
# column with a sliding window of W and 4 sinks, which does not.
set -euo pipefail
cd "$(dirname "$0")/.."

model=../shared/models/techdocs-28M-f16.gguf
text=../shared/text/techdocs-valid.txt
bin=build/release/lowbit
threads=1   # 2 threads on a loaded machine make wall times erratic
ctxs="1024 2048 4096"
pairs="f16/f16 q8/q8 q4/q4 q2/q2"
n=32
window=0
ppl=1
while [ $# -gt 0 ]; do
  case "$1" in
    --full) ctxs="1024 2048 4096 8192 16384"; pairs="f16/f16 q8/q8 q4/q4 q3/q3 q2/q2"; n=64; window=1024 ;;
    -m) model=$2; shift ;;
    -t) threads=$2; shift ;;
    -b) bin=$2; shift ;;
    -n) n=$2; shift ;;
    --ctx) ctxs=$2; shift ;;
    --pairs) pairs=$2; shift ;;
    --window) window=$2; shift ;;
    --no-ppl) ppl=0 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "kv_sweep.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$bin" ] || { echo "kv_sweep.sh: $bin not built (make, or -b BINARY)" >&2; exit 1; }
tmp=$(mktemp -d)
trap '[ -n "${KV_SWEEP_KEEP:-}" ] || rm -rf "$tmp"' EXIT

# bytes of text per token of this model's vocabulary, measured on the first 20 KB
head -c 20000 "$text" > "$tmp/probe.txt"
ntok=$("$bin" tokenize -m "$model" -f "$tmp/probe.txt" --ids 2>/dev/null | wc -w)
bpt=$(awk -v t="$ntok" 'BEGIN { printf "%.4f", 20000 / t }')

echo "model $model, $threads threads, $n generated tokens per decode run, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
hdr="| ctx | K/V | peak RSS MiB | prompt tok | decode tok/s | ppl (1 chunk) |"
sep="|----:|-----|-------------:|-----------:|-------------:|--------------:|"
if [ "$window" -gt 0 ]; then hdr="$hdr ppl window $window + 4 sinks |"; sep="$sep------:|"; fi
echo "$hdr"; echo "$sep"
for c in $ctxs; do
  bytes=$(awk -v c="$c" -v n="$n" -v b="$bpt" 'BEGIN { printf "%d", (c - n - 64) * b }')
  head -c "$bytes" "$text" > "$tmp/prompt.txt"
  for pair in $pairs; do
    k=${pair%/*}; v=${pair#*/}
    # the text's density varies: shorten the prompt until it fits the context
    for try in 1 2 3 4 5 6; do
      /usr/bin/time -f "%M" -o "$tmp/rss" "$bin" run -m "$model" -f "$tmp/prompt.txt" -n "$n" -c "$c" --temp 0 \
        --no-echo --ignore-eos -t "$threads" --kv-k "$k" --kv-v "$v" > /dev/null 2> "$tmp/run.err" || true
      np=$(sed -n 's/^lowbit: load.*prompt \([0-9]*\) tok.*/\1/p' "$tmp/run.err")
      if ! grep -q "the context holds" "$tmp/run.err" && [ "${np:-0}" -le $((c - n)) ]; then break; fi
      bytes=$((bytes * 95 / 100))
      head -c "$bytes" "$text" > "$tmp/prompt.txt"
    done
    line=$(grep '^lowbit: load' "$tmp/run.err" || echo "")
    rss=$(tail -n 1 "$tmp/rss" | awk '{ printf "%.1f", $1 / 1024 }' 2>/dev/null || echo "?")
    np=$(echo "$line" | sed -n 's/.*prompt \([0-9]*\) tok.*/\1/p')
    tg=$(echo "$line" | sed -n 's/.*generation [0-9]* tok, \([0-9.]*\) tok\/s.*/\1/p')
    p="-"; pw=""
    if [ "$ppl" = 1 ]; then
      p=$("$bin" perplexity -m "$model" -f "$text" -c "$c" --chunks 1 -t "$threads" --kv-k "$k" --kv-v "$v" --json \
            2>/dev/null | sed -n 's/.*"ppl": \([0-9.]*\).*/\1/p')
      if [ "$window" -gt 0 ]; then
        pw=$("$bin" perplexity -m "$model" -f "$text" -c "$c" --chunks 1 -t "$threads" --kv-k "$k" --kv-v "$v" \
               --window "$window" --sinks 4 --json 2>/dev/null | sed -n 's/.*"ppl": \([0-9.]*\).*/\1/p')
        pw=" ${pw:-?} |"
      fi
    elif [ "$window" -gt 0 ]; then pw=" - |"; fi
    echo "| $c | $k/$v | $rss | ${np:-?} | ${tg:-?} | ${p:-?} |$pw"
  done
done
