#!/usr/bin/env bash
# Carries a quantized model's per-tensor types (a --bpw plan, say of techdocs-28M) over to a deeper model of the
# same roles (the synthetic TinyLlama-1.1B of bench/), so the plan's decode speed can be measured at a realistic
# size: layer l of the big model takes the types of layer floor(l * SMALL / BIG) of the small one; output.weight and
# token_embd.weight keep theirs. Prints `lowbit quantize` arguments.
# Usage: bench/mirror-plan.sh SMALL.gguf [BIG_LAYERS (22)]
#   lowbit quantize tinyllama-synth-f16.gguf big-2bit.gguf --type lbqv $(bench/mirror-plan.sh m25.gguf) -t 2
set -euo pipefail
cd "$(dirname "$0")/.."
small=${1:?usage: bench/mirror-plan.sh SMALL.gguf [BIG_LAYERS]}; big=${2:-22}
lowbit=${LOWBIT:-build/release/lowbit}
[ -x "$lowbit" ] || make -j2 >/dev/null
plan=$("$lowbit" info -m "$small" 2>&1 | awk '$1 ~ /\.weight$/ && NF >= 3 {print $1, $2}')
n=$(awk '$1 ~ /^blk\./ {split($1, p, "."); if (p[2] + 1 > n) n = p[2] + 1} END {print n + 0}' <<<"$plan")
[ "$n" -gt 0 ] || { echo "mirror-plan: no blk.N tensors in $small" >&2; exit 1; }
out=()
for ((l = 0; l < big; l++)); do
  s=$((l * n / big))
  while read -r name type; do
    role=${name#blk.$s.}; role=${role%.weight}
    out+=(--tensor-type "blk.$l.$role.=$type")
  done < <(awk -v p="blk.$s." 'index($1, p) == 1 && $1 !~ /_norm\./' <<<"$plan")
done
while read -r name type; do out+=(--tensor-type "=$name=$type"); done < <(awk '$1 == "output.weight" || $1 == "token_embd.weight"' <<<"$plan")
echo "${out[@]}"
