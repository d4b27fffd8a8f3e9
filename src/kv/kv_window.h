/* Sliding window with attention sinks: the shared pieces of both stores
 * (kv_cache.c, kv_quant.c) — the position limit, the ring slack and the
 * RoPE shift that rebases a query for the sinks (docs/kv-cache.md). */
#ifndef LB_KV_KV_WINDOW_H
#define LB_KV_KV_WINDOW_H

#include "model/model.h"

/* Positions of a windowed cache are absolute and unbounded up to this: RoPE
 * angles are computed from the position in float, exact for integers below
 * 2^24. */
#define LB_KV_MAX_POS (1 << 24)

/* Extra token slots of the F16 ring beyond the window: a batch is stored
 * and attended in stretches of at most this many tokens, so no token of a
 * stretch loses a key of its window to a later token of the same stretch. */
#define LB_KV_RING_SLACK 64

/* The RoPE parameters the forward pass used (model/forward.c), kept so a
 * query rotated at one position can be moved to another. */
typedef struct lb_kv_rope {
    lb_rope_kind kind;
    int n_rot;
    float scale, theta_scale;
} lb_kv_rope;

void lb__kv_rope_init(lb_kv_rope *r, const lb_hparams *hp);

/* x: [n_heads][head_dim], already rotated by RoPE at position from; on
 * return it is as if rotated at position to.  The angle of each pair at a
 * position is computed exactly as the forward pass computes it (float), and
 * the difference is applied in double, so the result differs from a query
 * rotated at `to` in the first place only by rounding of the rotation. */
void lb__kv_rope_shift(const lb_kv_rope *r, float *x, int n_heads, int head_dim, int from, int to);

#endif
