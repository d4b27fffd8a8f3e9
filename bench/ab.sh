#!/bin/bash
# Paired A/B of two lowbit-bench binaries on one test: runs alternate A, B,
# A, B ... one repetition each, and the result is the median of the per-pair
# ratios B/A with its quartiles.  On a shared machine whose speed drifts by
# tens of percent from minute to minute, a pair sees the same drift twice,
# so its ratio keeps what the medians of separate runs lose (docs/server.md,
# 27 Nov).
#
#   bench/ab.sh OLD_BENCH NEW_BENCH [N] -- [lowbit-bench args]
#   bench/ab.sh /tmp/old/lowbit-bench build/release/lowbit-bench 20 -- \
#       -m ../shared/models/techdocs-28M-Q4_K_M.gguf -t 2 -p 0 -n 128 -b 8
#
# The test measured is the last row lowbit-bench prints (with -b, the last
# batch size); -r 1 and -o csv are added.
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
A=$1 B=$2
shift 2
N=20
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    N=$1
    shift
fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
for bin in "$A" "$B"; do
    [ -x "$bin" ] || { echo "ab.sh: $bin is not an executable" >&2; exit 2; }
done

# tokens/s of the last row (median_tps is the 6th CSV field)
one() { "$1" "${@:2}" -r 1 -o csv 2>/dev/null | awk -F, 'NR > 1 { t = $6; name = $5 } END { print name "," t }'; }

for i in $(seq "$N"); do
    a=$(one "$A" "$@")
    b=$(one "$B" "$@")
    printf '%s %s\n' "${a#*,}" "${b#*,}"
    printf 'pair %d/%d (%s): %s %s\n' "$i" "$N" "${a%,*}" "${a#*,}" "${b#*,}" >&2
done | awk '
    function median(v, n,    i, j, t) {   # v[1..n], sorted in place
        for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    $1 > 0 && $2 > 0 { n++; a[n] = $1; b[n] = $2; r[n] = $2 / $1 }
    END {
        if (!n) { print "ab.sh: no run gave a figure" > "/dev/stderr"; exit 1 }
        ma = median(a, n); mb = median(b, n); mr = median(r, n)
        q1 = r[int((n + 3) / 4)]; q3 = r[int((3 * n + 3) / 4)]
        printf "%d pairs: A median %.1f tok/s, B median %.1f tok/s; B/A median %.3f (quartiles %.3f, %.3f)\n", n, ma, mb, mr, q1, q3
    }'
