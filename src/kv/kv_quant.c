/* The quantized KV store and attention computed on it, block by block.
 *
 * Layout (per layer and KV head; D = head_dim, G = LB_KV_GROUP = 128 tokens,
 * S = sinks, b = bits of the type; docs/kv-cache.md has the byte counts):
 *  - Every head vector of a quantized side is first rotated by a fixed
 *    randomized Hadamard transform (sign flips, then a fast Walsh-Hadamard
 *    transform, scaled to be orthonormal).  Outlier channels are spread over
 *    all channels, so a group's range is set by typical values.  The query is
 *    rotated the same way, so q.k is unchanged; values are summed in the
 *    rotated basis and the attention output is rotated back once.
 *  - Keys: positions S + g*G .. S + g*G + G-1 form group g, stored channel by
 *    channel (KIVI: key outliers live in fixed channels, so a channel's
 *    values over G tokens share a range): codes [D][G/64][8b bytes], then
 *    f16 scale [D] and min [D].
 *  - Values: per token, D/64 rows of 64 channels, each 8b code bytes + f16
 *    scale + f16 min (KIVI: value errors are mixed by the attention weights
 *    per token, so per-token groups are the natural unit).
 *  - The first S positions (sinks) and the newest group (the residual
 *    window, 1..G tokens) stay F16, rotated.  A group is quantized from its
 *    F16 rows when the first token of the next group is stored; until then
 *    attention reads the F16 rows.  A batch is stored and attended one group
 *    at a time, so a batch gives the same result as tokens one by one.
 *  - A side whose type is F16 (K=F16 with V=Q4, say) keeps all positions as
 *    plain F16 rows and is not rotated.
 *
 * Attention for one query token and KV head: the query heads sharing the KV
 * head are rotated, scored together against each key group by
 * lb_kvq_kernels.k_scores_n (s[t] = q.min + sum_d (q[d]*scale[d]) *
 * code[d][t]; each channel's codes are unpacked once for all the heads and
 * never expanded to a dequantized block), against F16 rows directly;
 * softmax in float; then the values are accumulated group by group with
 * v_accum_n (each value row unpacked once for all the heads) and the
 * results rotated back.
 *
 * Positions: keys are stored after RoPE, at their absolute positions.  The
 * sliding window (lb__kvq_cache_new_window) keeps the first S and the
 * newest tokens without ever re-quantizing:
 *  - the quantized groups live in a ring of ceil(W/G) slots; group g goes to
 *    slot g mod slots, overwriting the group that leaves the window, so a
 *    query sees the sinks, the last ceil(W/G) whole groups and its residual
 *    group (W+1 .. W+G positions for W a multiple of G);
 *  - window keys keep their true relative distance to the query at its true
 *    position, so they need no re-rotation;
 *  - the sinks are scored with a copy of the query moved by RoPE from its
 *    position p to S + (p - first window position), which is where
 *    StreamingLLM puts it relative to sinks at slots 0..S-1
 *    (kv_window.h; the angles are those the forward pass computed, so
 *    nothing drifts as positions grow).
 *  So errors never accumulate as the window moves: every key is quantized
 *  exactly once.  Storing keys before RoPE would also allow this, but then
 *  every key would have to be dequantized, un-rotated (Hadamard) and rotated
 *  by RoPE at every step (the Hadamard rotation does not commute with RoPE),
 *  which costs several times the scoring itself; docs/kv-cache.md has the
 *  quality measurement that backs the choice. */
#include "kv_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/once.h"
#include "kernels/fmath.h"
#include "kv_window.h"

/* One of K or V. */
typedef struct kv_side {
    lb_kv_type type;
    int bits;
    bool quant;        /* false: plain F16 rows for every position */
    bool rot;          /* vectors are stored Hadamard-rotated */
    size_t unit;       /* V: bytes of one token, D/64*(8b+4); K: bytes of one group block, D*(G/64*8b+4) */
    uint8_t *q;        /* K: [n_layer][n_head_kv][n_groups][unit]; V: [n_layer][n_head_kv][n_groups*G][unit] */
    lb_f16 *f;         /* [n_layer][n_head_kv][n_f16][D]: sinks then the residual group (quant), or all positions */
    int n_f16;         /* quant ? S + G : n_ctx */
} kv_side;

struct lb_kvq_cache {
    int n_ctx, n_layer, n_head, n_head_kv, head_dim, n_threads, n_sink;
    int n_groups;         /* quantized group slots per layer and head: a ring when windowed */
    int n_window;         /* 0: keep every position below n_ctx; else the window asked for */
    int f_ring;           /* rows after the sinks of a side stored all in F16 (a ring when windowed) */
    int max_vis;          /* most positions one query can see (width of a score row) */
    lb_kv_rope rope;      /* to rebase the query for the sinks */
    kv_side k, v;
    int *stored;          /* [n_layer] positions stored so far in each layer */
    int *nq;              /* [n_layer] groups quantized in each layer (the next one is the residual) */
    struct {              /* a batch whose storing is deferred to attend() (see store()) */
        bool active;
        int il, pos0, n;
        const float *k, *v;
    } pend;
    float *scores;        /* [n_threads][n_head / n_head_kv][n_ctx] */
    float *qr;            /* [n_threads][n_head / n_head_kv][head_dim]  rotated queries */
    float *qs;            /* [n_threads][n_head / n_head_kv][head_dim]  rotated queries rebased for the sinks */
    float *row;           /* [n_threads][head_dim]  an F16 row as floats; the output before un-rotation */
    float *gather;        /* [head_dim][G]  store-time staging of one group (single-threaded) */
    void *block;          /* the one allocation all the above live in */
    const lb_kvq_kernels *ks;
};

/* ------------------------------------------------------------ rotation */

static float sign_table[256];
static lb_once sign_once = LB_ONCE_INIT;

/* Fixed pseudo-random signs (a 32-bit LCG's top bit): the same on every
 * platform and run, so a saved cache would stay valid. */
static void make_signs(void)
{
    uint32_t x = 0x9e3779b9u;
    for (int i = 0; i < 256; i++) {
        x = x * 1664525u + 1013904223u;
        sign_table[i] = (x >> 31) ? -1.0f : 1.0f;
    }
}

static const float *signs(void)
{
    lb_once_run(&sign_once, make_signs);
    return sign_table;
}

static void fwht(float *x, int n)
{
    for (int len = 1; len < n; len <<= 1)
        for (int i = 0; i < n; i += 2 * len)
            for (int j = i; j < i + len; j++) {
                float a = x[j], b = x[j + len];
                x[j] = a + b;
                x[j + len] = a - b;
            }
}

void lb__kv_rotate(float *x, int n)
{
    const float *s = signs(), r = 1.0f / sqrtf((float)n);
    for (int i = 0; i < n; i++)
        x[i] *= s[i];
    fwht(x, n);
    for (int i = 0; i < n; i++)
        x[i] *= r;
}

void lb__kv_unrotate(float *x, int n)
{
    const float *s = signs(), r = 1.0f / sqrtf((float)n);
    fwht(x, n);
    for (int i = 0; i < n; i++)
        x[i] *= r * s[i];
}

/* -------------------------------------------------------------- sizing */

static size_t round_up(size_t n) { return (n + 63) & ~(size_t)63; }

/* How many positions the store holds, from (n_ctx, n_window, n_sink). */
typedef struct geom {
    int n_ctx;      /* positions accepted: n_ctx, or LB_KV_MAX_POS when windowed */
    int n_groups;   /* quantized group slots */
    int f_ring;     /* rows after the sinks of an all-F16 side */
    int max_vis;    /* positions one query can see */
} geom;

/* Windowed: ceil(W / G) group slots plus the residual group, so a query
 * sees the sinks and between W+1 and W+G of the newest positions (W rounded
 * up to a multiple of G). */
static geom make_geom(int n_ctx, int n_window, int n_sink)
{
    geom g;
    if (n_window > 0) {
        g.n_ctx = LB_KV_MAX_POS;
        g.n_groups = (n_window + LB_KV_GROUP - 1) / LB_KV_GROUP;
        g.f_ring = (g.n_groups + 1) * LB_KV_GROUP;
        g.max_vis = n_sink + g.f_ring;
    } else {
        g.n_ctx = n_ctx;
        g.n_groups = (n_ctx - n_sink) / LB_KV_GROUP;
        g.f_ring = n_ctx - n_sink;
        g.max_vis = n_ctx;
    }
    return g;
}

static void side_init(kv_side *s, lb_kv_type t, bool key, int D, const geom *gm, int n_sink)
{
    memset(s, 0, sizeof *s);
    s->type = t;
    s->bits = lb_kv_type_bits(t);
    s->quant = t != LB_KV_F16;
    s->rot = s->quant;
    s->unit = 0;
    if (s->quant)
        s->unit = key ? (size_t)D * (size_t)(LB_KV_GROUP / 64 * 8 * s->bits + 4)
                      : (size_t)D / 64 * (size_t)(8 * s->bits + 4);
    s->n_f16 = s->quant ? n_sink + LB_KV_GROUP : n_sink + gm->f_ring;
}

/* Offsets of the buffers inside the block: k.q, k.f, v.q, v.f, stored,
 * scores, qr, row, gather, qs; returns the block's size. */
static size_t layout(const lb_hparams *hp, const geom *gm, int n_threads, const kv_side *k, const kv_side *v,
                     size_t off[10])
{
    const size_t LH = (size_t)hp->n_layer * hp->n_head_kv, D = (size_t)hp->head_dim;
    const size_t grp = (size_t)(hp->n_head / hp->n_head_kv);
    const size_t n_groups = (size_t)gm->n_groups;
    const size_t sizes[10] = {
        k->quant ? LH * n_groups * k->unit : 0,
        LH * (size_t)k->n_f16 * D * sizeof(lb_f16),
        v->quant ? LH * n_groups * LB_KV_GROUP * v->unit : 0,
        LH * (size_t)v->n_f16 * D * sizeof(lb_f16),
        2 * (size_t)hp->n_layer * sizeof(int),
        (size_t)n_threads * grp * (size_t)gm->max_vis * sizeof(float),
        (size_t)n_threads * grp * D * sizeof(float),
        (size_t)n_threads * D * sizeof(float),
        D * LB_KV_GROUP * sizeof(float),
        (size_t)n_threads * grp * D * sizeof(float),
    };
    size_t total = 0;
    for (int i = 0; i < 10; i++) {
        off[i] = total;
        total += round_up(sizes[i]);
    }
    return total;
}

size_t lb__kvq_cache_bytes_window(const lb_hparams *hp, int n_ctx, int n_window, lb_kv_type k, lb_kv_type v,
                                  int n_sink, int n_threads)
{
    geom gm = make_geom(n_ctx, n_window, n_sink);
    kv_side ks, vs;
    side_init(&ks, k, true, hp->head_dim, &gm, n_sink);
    side_init(&vs, v, false, hp->head_dim, &gm, n_sink);
    size_t off[10];
    return layout(hp, &gm, n_threads, &ks, &vs, off) + sizeof(lb_kvq_cache);
}

size_t lb__kvq_cache_bytes(const lb_hparams *hp, int n_ctx, lb_kv_type k, lb_kv_type v, int n_sink, int n_threads)
{
    return lb__kvq_cache_bytes_window(hp, n_ctx, 0, k, v, n_sink, n_threads);
}

lb_status lb__kvq_cache_new(const lb_hparams *hp, int n_ctx, int n_threads, lb_kv_type k, lb_kv_type v, int n_sink,
                            lb_kvq_cache **out, lb_err *err)
{
    return lb__kvq_cache_new_window(hp, n_ctx, 0, n_threads, k, v, n_sink, out, err);
}

lb_status lb__kvq_cache_new_window(const lb_hparams *hp, int n_ctx, int n_window, int n_threads, lb_kv_type k,
                                   lb_kv_type v, int n_sink, lb_kvq_cache **out, lb_err *err)
{
    if (n_window < 0 || n_window > LB_KV_MAX_POS / 2 || n_sink < 0 || n_sink > LB_KV_MAX_POS / 2)
        return lb__errf(err, LB_ERR_INVALID_ARG, "window %d / sinks %d out of range", n_window, n_sink);
    if (n_window > 0)
        n_ctx = LB_KV_MAX_POS;
    if (n_ctx < 1 || n_threads < 1 || n_sink < 0 || n_sink > n_ctx)
        return lb__errf(err, LB_ERR_INVALID_ARG, "n_ctx %d / n_threads %d / n_sink %d out of range", n_ctx,
                        n_threads, n_sink);
    if (!lb_kv_type_bits(k) || !lb_kv_type_bits(v))
        return lb__errf(err, LB_ERR_INVALID_ARG, "unknown KV cache type %d / %d", (int)k, (int)v);
    if (!lb_kv_quant_supported(hp))
        return lb__errf(err, LB_ERR_UNSUPPORTED,
                        "a quantized KV cache needs head_dim 64, 128 or 256 (this model has %d)", hp->head_dim);
    lb_kvq_cache *c = calloc(1, sizeof *c);
    if (!c)
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate the KV cache");
    c->n_ctx = n_ctx;
    c->n_layer = hp->n_layer;
    c->n_head = hp->n_head;
    c->n_head_kv = hp->n_head_kv;
    c->head_dim = hp->head_dim;
    c->n_threads = n_threads;
    c->n_sink = n_sink;
    const geom gm = make_geom(n_ctx, n_window, n_sink);
    c->n_window = n_window;
    c->n_groups = gm.n_groups;
    c->f_ring = gm.f_ring;
    c->max_vis = gm.max_vis;
    lb__kv_rope_init(&c->rope, hp);
    side_init(&c->k, k, true, hp->head_dim, &gm, n_sink);
    side_init(&c->v, v, false, hp->head_dim, &gm, n_sink);
    size_t off[10];
    size_t total = layout(hp, &gm, n_threads, &c->k, &c->v, off);
    c->block = lb_aligned_alloc(64, total);
    if (!c->block) {
        free(c);
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate %zu bytes of %s/%s KV cache for %d positions", total,
                        lb_kv_type_name(k), lb_kv_type_name(v), n_ctx);
    }
    char *b = c->block;
    c->k.q = (uint8_t *)(b + off[0]);
    c->k.f = (lb_f16 *)(void *)(b + off[1]);
    c->v.q = (uint8_t *)(b + off[2]);
    c->v.f = (lb_f16 *)(void *)(b + off[3]);
    c->stored = (int *)(void *)(b + off[4]);
    c->scores = (float *)(void *)(b + off[5]);
    c->qr = (float *)(void *)(b + off[6]);
    c->row = (float *)(void *)(b + off[7]);
    c->gather = (float *)(void *)(b + off[8]);
    c->qs = (float *)(void *)(b + off[9]);
    c->nq = c->stored + c->n_layer;
    memset(c->stored, 0, 2 * (size_t)c->n_layer * sizeof(int));
    c->ks = lb_kvq_get();
    *out = c;
    return LB_OK;
}

void lb__kvq_cache_free(lb_kvq_cache *c)
{
    if (!c)
        return;
    lb_aligned_free(c->block);
    free(c);
}

void lb__kvq_use_kernels(lb_kvq_cache *c, const lb_kvq_kernels *ks) { c->ks = ks; }

/* ------------------------------------------------------------ addressing */

static size_t lh(const lb_kvq_cache *c, int il, int h) { return (size_t)il * c->n_head_kv + h; }

/* F16 row r of (layer, head): [D] */
static lb_f16 *f_row(const lb_kvq_cache *c, const kv_side *s, int il, int h, int r)
{
    return s->f + (lh(c, il, h) * s->n_f16 + r) * c->head_dim;
}

/* The slot of group g (a ring when windowed; the identity otherwise, since
 * then g < n_groups). */
static int g_slot(const lb_kvq_cache *c, int g) { return c->n_groups ? g % c->n_groups : 0; }

/* K block of group g of (layer, head): codes [D][G/64][8b], scale [D], min [D] */
static uint8_t *k_block(const lb_kvq_cache *c, int il, int h, int g)
{
    return c->k.q + (lh(c, il, h) * c->n_groups + g_slot(c, g)) * c->k.unit;
}

/* Bytes of one channel's codes in a key block, and where its scales start. */
static size_t k_chan_bytes(const lb_kvq_cache *c) { return (size_t)(LB_KV_GROUP / 64 * 8 * c->k.bits); }
static lb_f16 *k_scales(const lb_kvq_cache *c, const uint8_t *blk)
{
    return (lb_f16 *)(uintptr_t)(blk + (size_t)c->head_dim * k_chan_bytes(c));
}

/* V rows of quantized token index i (position S + i) of (layer, head): [D/64][8b + 4] */
static uint8_t *v_tok(const lb_kvq_cache *c, int il, int h, int i)
{
    const size_t slot = (size_t)g_slot(c, i / LB_KV_GROUP) * LB_KV_GROUP + (size_t)(i % LB_KV_GROUP);
    return c->v.q + (lh(c, il, h) * c->n_groups * LB_KV_GROUP + slot) * c->v.unit;
}

/* The F16 row holding stored position pos of a side, or -1 if it is in a
 * quantized group (groups below nq, the layer's count of quantized groups). */
static int f16_index(const lb_kvq_cache *c, const kv_side *s, int pos, int nq)
{
    if (pos < c->n_sink)
        return pos;
    int r = pos - c->n_sink, g = r / LB_KV_GROUP;
    if (!s->quant)
        return c->n_sink + r % c->f_ring;
    return g < nq ? -1 : c->n_sink + r % LB_KV_GROUP;
}

/* Positions evicted from the window of a layer that has nq quantized groups:
 * the window then starts at position S + evicted(). */
static int evicted(const lb_kvq_cache *c, int nq)
{
    return c->n_window > 0 && nq > c->n_groups ? (nq - c->n_groups) * LB_KV_GROUP : 0;
}

static void f16_to_f32(const lb_f16 *x, float *y, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = lb_f16_to_f32(x[i]);
}

void lb__kvq_read(const lb_kvq_cache *c, int il, int h, int pos, float *k, float *v)
{
    const int D = c->head_dim, nq = c->nq[il];
    int r = f16_index(c, &c->k, pos, nq);
    if (r >= 0)
        f16_to_f32(f_row(c, &c->k, il, h, r), k, D);
    else {
        const int g = (pos - c->n_sink) / LB_KV_GROUP, j = (pos - c->n_sink) % LB_KV_GROUP;
        const uint8_t *blk = k_block(c, il, h, g);
        const lb_f16 *sc = k_scales(c, blk), *mn = sc + D;
        uint8_t codes[64];
        for (int d = 0; d < D; d++) {
            lb_kvq_unpack_row(c->k.bits, blk + d * k_chan_bytes(c) + (size_t)(j / 64) * 8 * c->k.bits, codes);
            k[d] = lb_f16_to_f32(mn[d]) + lb_f16_to_f32(sc[d]) * (float)codes[j % 64];
        }
    }
    if (c->k.rot)
        lb__kv_unrotate(k, D);
    r = f16_index(c, &c->v, pos, nq);
    if (r >= 0)
        f16_to_f32(f_row(c, &c->v, il, h, r), v, D);
    else {
        const int rb = 8 * c->v.bits;
        const uint8_t *t = v_tok(c, il, h, pos - c->n_sink);
        for (int ch = 0; ch < D / 64; ch++) {
            const uint8_t *row = t + (size_t)ch * (rb + 4);
            lb_f16 d16, m16;
            memcpy(&d16, row + rb, 2);
            memcpy(&m16, row + rb + 2, 2);
            lb_kvq_dequantize_row(c->v.bits, row, d16, m16, v + 64 * ch);
        }
    }
    if (c->v.rot)
        lb__kv_unrotate(v, D);
}

/* --------------------------------------------------------------- store */

/* Quantizes group g of (layer, head) from its F16 residual rows. */
static void quantize_group(lb_kvq_cache *c, int il, int h, int g)
{
    const int D = c->head_dim, S = c->n_sink;
    if (c->k.quant) {
        uint8_t *blk = k_block(c, il, h, g);
        lb_f16 *sc = k_scales(c, blk), *mn = sc + D;
        float *x = c->gather;   /* [D][G]: channel d over the group's tokens */
        for (int j = 0; j < LB_KV_GROUP; j++) {
            const lb_f16 *r = f_row(c, &c->k, il, h, S + j);
            for (int d = 0; d < D; d++)
                x[d * LB_KV_GROUP + j] = lb_f16_to_f32(r[d]);
        }
        for (int d = 0; d < D; d++)
            lb_kvq_quantize_row(c->k.bits, LB_KV_GROUP, x + d * LB_KV_GROUP, blk + d * k_chan_bytes(c), &sc[d],
                                &mn[d]);
    }
    if (c->v.quant) {
        const int rb = 8 * c->v.bits;
        float *x = c->gather;
        for (int j = 0; j < LB_KV_GROUP; j++) {
            f16_to_f32(f_row(c, &c->v, il, h, S + j), x, D);
            uint8_t *t = v_tok(c, il, h, g * LB_KV_GROUP + j);
            for (int ch = 0; ch < D / 64; ch++) {
                uint8_t *row = t + (size_t)ch * (rb + 4);
                lb_f16 d16, m16;
                lb_kvq_quantize_row(c->v.bits, 64, x + 64 * ch, row, &d16, &m16);
                memcpy(row + rb, &d16, 2);
                memcpy(row + rb + 2, &m16, 2);
            }
        }
    }
}

static void put_row(const lb_kvq_cache *c, const kv_side *s, int il, int h, int r, const float *x, float *tmp)
{
    const int D = c->head_dim;
    lb_f16 *dst = f_row(c, s, il, h, r);
    if (s->rot) {
        memcpy(tmp, x, (size_t)D * sizeof(float));
        lb__kv_rotate(tmp, D);
        x = tmp;
    }
    for (int d = 0; d < D; d++)
        dst[d] = lb_f32_to_f16(x[d]);
}

/* Writes n positions from pos0 (already validated).  A group is quantized
 * when the first token after it arrives, not when its own last token does:
 * so a token always attends to its own group in F16, whichever way the
 * tokens came (one at a time, or in a batch: see attend()). */
static void write_rows(lb_kvq_cache *c, int il, int pos0, int n, const float *k, const float *v)
{
    const int S = c->n_sink, D = c->head_dim, kvw = c->n_head_kv * D;
    /* a rewind forgets the groups from pos0's on (store() checked they can be rebuilt) */
    int keep = pos0 < S ? 0 : (pos0 - S) / LB_KV_GROUP;
    if (c->nq[il] > keep)
        c->nq[il] = keep;
    float *tmp = c->row;   /* writing runs on one thread: thread 0's row */
    for (int t = 0; t < n; t++) {
        const int pos = pos0 + t;
        const bool in_group = pos >= S;
        const int j = in_group ? (pos - S) % LB_KV_GROUP : 0, g = in_group ? (pos - S) / LB_KV_GROUP : 0;
        if (in_group && j == 0 && g > 0 && c->nq[il] == g - 1) {
            for (int h = 0; h < c->n_head_kv; h++)
                quantize_group(c, il, h, g - 1);
            c->nq[il] = g;
        }
        const int r = in_group ? S + j : pos;
        for (int h = 0; h < c->n_head_kv; h++) {
            const float *kx = k + (size_t)t * kvw + (size_t)h * D, *vx = v + (size_t)t * kvw + (size_t)h * D;
            put_row(c, &c->k, il, h, c->k.quant ? r : f16_index(c, &c->k, pos, 0), kx, tmp);
            put_row(c, &c->v, il, h, c->v.quant ? r : f16_index(c, &c->v, pos, 0), vx, tmp);
        }
    }
    c->stored[il] = pos0 + n;
}

static void flush(lb_kvq_cache *c)
{
    if (c->pend.active) {
        c->pend.active = false;
        write_rows(c, c->pend.il, c->pend.pos0, c->pend.n, c->pend.k, c->pend.v);
    }
}

/* Checks the range and defers the writing to attend(), which interleaves it
 * with the attention group by group: in a batch, a token must still see its
 * own group in F16 although later tokens of the batch complete the group,
 * exactly as when tokens come one at a time.  k and v stay valid until
 * attend() (lb_kv_ops' contract); a second store() first writes a pending one. */
static lb_status store(void *ctx, int il, int pos0, int n, const float *k, const float *v)
{
    lb_kvq_cache *c = ctx;
    flush(c);
    const int S = c->n_sink, stored = c->stored[il];
    if (il < 0 || il >= c->n_layer || pos0 < 0 || n < 0 || pos0 + n > c->n_ctx || pos0 > stored)
        return LB_ERR_RANGE;
    /* Rewriting from inside an already quantized group would need its
     * earlier tokens, which are no longer in F16. */
    if (pos0 > S && (pos0 - S) % LB_KV_GROUP && (pos0 - S) / LB_KV_GROUP < c->nq[il])
        return LB_ERR_RANGE;
    /* Nor can a window that has slid go back before its newest group: the
     * slots of the groups it would need again are overwritten. */
    if (c->n_window > 0 && pos0 > S && pos0 < S + c->nq[il] * LB_KV_GROUP && c->nq[il] > c->n_groups)
        return LB_ERR_RANGE;
    c->pend.active = true;
    c->pend.il = il;
    c->pend.pos0 = pos0;
    c->pend.n = n;
    c->pend.k = k;
    c->pend.v = v;
    return LB_OK;
}

void lb__kvq_flush(lb_kvq_cache *c) { flush(c); }

/* ----------------------------------------------------------- attention */

typedef struct attn_job {
    lb_kvq_cache *c;
    int il, pos0, n;
    const float *q;
    float *out;
} attn_job;

static float dot(const float *a, const float *b, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* What one query at position p sees in a layer with nq quantized groups:
 * the sinks 0 .. n_sink-1, then positions w0 .. p.  Scores and
 * probabilities are indexed by visible index: a sink's is its position, a
 * window position q's is q - ev (ev = w0 - S positions evicted), so the
 * visible positions are 0 .. n_vis-1 without holes. */
typedef struct vis_range {
    int n_sink;   /* sinks visible (fewer than S while p < S) */
    int w0, ev;   /* first window position; ev = w0 - S */
    int n_vis;    /* n_sink + p - w0 + 1 */
} vis_range;

static vis_range visible(const lb_kvq_cache *c, int p, int nq)
{
    vis_range r;
    const int S = c->n_sink;
    r.n_sink = p + 1 < S ? p + 1 : S;
    r.ev = evicted(c, nq);
    r.w0 = S + r.ev;
    r.n_vis = r.n_sink + (p >= r.w0 ? p - r.w0 + 1 : 0);
    return r;
}

/* Scores of the query heads qr ([grp][D]; qs the same rebased for the
 * sinks) against the visible positions of p, into sc ([grp][max_vis] by
 * visible index; entries up to the end of the last group touched may be
 * written). */
static void score_keys(const lb_kvq_cache *c, int il, int h, int p, const vis_range *vr, int grp, const float *qr,
                       const float *qs, float *sc, float *row)
{
    const int D = c->head_dim, nq = c->nq[il];
    const kv_side *s = &c->k;
    for (int q = 0; q < vr->n_sink; q++) {
        f16_to_f32(f_row(c, s, il, h, q), row, D);
        for (int g = 0; g < grp; g++)
            sc[(size_t)g * c->max_vis + q] = dot(qs + (size_t)g * D, row, D);
    }
    for (int q = vr->w0; q <= p;) {
        const int vi = q - vr->ev;
        int r = f16_index(c, s, q, nq);
        if (r >= 0) {
            f16_to_f32(f_row(c, s, il, h, r), row, D);
            for (int g = 0; g < grp; g++)
                sc[(size_t)g * c->max_vis + vi] = dot(qr + (size_t)g * D, row, D);
            q++;
            continue;
        }
        /* q starts a quantized group (wholly visible unless a query is
         * attended again after later tokens completed its own group) */
        const int gi = (q - c->n_sink) / LB_KV_GROUP;
        const uint8_t *blk = k_block(c, il, h, gi);
        const lb_f16 *scl = k_scales(c, blk), *mn = scl + D;
        for (int part = 0; part < LB_KV_GROUP / 64 && q + 64 * part <= p; part++) {
            const uint8_t *codes = blk + (size_t)part * 8 * s->bits;
            if (c->ks->k_scores_n != lb__kvq_ref.k_scores_n)
                c->ks->k_scores_n(s->bits, D, codes, k_chan_bytes(c), scl, mn, qr, (size_t)D, grp,
                                  sc + vi + 64 * part, (size_t)c->max_vis);
            else   /* a set without its own grouped kernel (WASM, NEON): its single-head one per head */
                for (int g = 0; g < grp; g++)
                    c->ks->k_scores(s->bits, D, codes, k_chan_bytes(c), scl, mn, qr + (size_t)g * D,
                                    sc + (size_t)g * c->max_vis + vi + 64 * part);
        }
        q += LB_KV_GROUP;
    }
}

/* For each of the grp query heads g: acc + g*D ([D], rotated basis if V is
 * quantized) = sum of prob[g][vi] * V over the visible positions of p (prob:
 * [grp][max_vis] by visible index).  Each value row is read once for all heads. */
static void sum_values(const lb_kvq_cache *c, int il, int h, int p, const vis_range *vr, int grp, const float *prob,
                       float *acc, float *row)
{
    const int D = c->head_dim, nq = c->nq[il];
    const size_t ps = (size_t)c->max_vis;
    const kv_side *s = &c->v;
    memset(acc, 0, (size_t)grp * D * sizeof(float));
    for (int q = 0; q < vr->n_sink; q++) {
        f16_to_f32(f_row(c, s, il, h, q), row, D);
        for (int g = 0; g < grp; g++)
            for (int d = 0; d < D; d++)
                acc[(size_t)g * D + d] += prob[g * ps + q] * row[d];
    }
    for (int q = vr->w0; q <= p;) {
        const int vi = q - vr->ev;
        int r = f16_index(c, s, q, nq);
        if (r >= 0) {
            f16_to_f32(f_row(c, s, il, h, r), row, D);
            for (int g = 0; g < grp; g++)
                for (int d = 0; d < D; d++)
                    acc[(size_t)g * D + d] += prob[g * ps + vi] * row[d];
            q++;
            continue;
        }
        const int cnt = p + 1 - q < LB_KV_GROUP ? p + 1 - q : LB_KV_GROUP;
        const uint8_t *t = v_tok(c, il, h, q - c->n_sink);
        for (int ch = 0; ch < D / 64; ch++) {
            const uint8_t *rows = t + (size_t)ch * (8 * s->bits + 4);
            if (c->ks->v_accum_n != lb__kvq_ref.v_accum_n)
                c->ks->v_accum_n(s->bits, cnt, rows, s->unit, prob + vi, ps, grp, acc + 64 * ch, (size_t)D);
            else
                for (int g = 0; g < grp; g++)
                    c->ks->v_accum(s->bits, cnt, rows, s->unit, prob + g * ps + vi, acc + (size_t)g * D + 64 * ch);
        }
        q += cnt;
    }
}

static void attend_part(void *ctx, int ith, int nth)
{
    attn_job *j = ctx;
    lb_kvq_cache *c = j->c;
    const int D = c->head_dim, grp = c->n_head / c->n_head_kv;
    const float scale = 1.0f / sqrtf((float)D);
    const lb_fmath *fm = lb_fmath_get();
    float *sc = c->scores + (size_t)ith * grp * c->max_vis;   /* [grp][max_vis] */
    float *qr = c->qr + (size_t)ith * grp * D;                /* [grp][D] */
    float *qs = c->qs + (size_t)ith * grp * D;                /* [grp][D] */
    float *row = c->row + (size_t)ith * D;                    /* [D] */
    int64_t b, e;
    lb_split((int64_t)j->n * c->n_head_kv, ith, nth, &b, &e);
    for (int64_t w = b; w < e; w++) {
        const int t = (int)(w / c->n_head_kv), h = (int)(w % c->n_head_kv), p = j->pos0 + t;
        const vis_range vr = visible(c, p, c->nq[j->il]);
        const float *q = j->q + ((size_t)t * c->n_head + (size_t)h * grp) * D;
        memcpy(qr, q, (size_t)grp * D * sizeof(float));
        /* StreamingLLM places the sinks right before the window: the query
         * sits at position S + (p - w0) for them.  Keys keep their absolute
         * RoPE positions, so only a copy of the query moves. */
        const bool rebase = vr.ev > 0 && vr.n_sink > 0;
        if (rebase) {
            memcpy(qs, q, (size_t)grp * D * sizeof(float));
            lb__kv_rope_shift(&c->rope, qs, grp, D, p, p - vr.ev);
        }
        for (int g = 0; g < grp; g++) {
            if (c->k.rot) {
                lb__kv_rotate(qr + (size_t)g * D, D);
                if (rebase)
                    lb__kv_rotate(qs + (size_t)g * D, D);
            }
        }
        score_keys(c, j->il, h, p, &vr, grp, qr, rebase ? qs : qr, sc, row);
        const int n_vis = vr.n_vis;
        for (int g = 0; g < grp; g++) {
            float *s = sc + (size_t)g * c->max_vis;
            for (int i = 0; i < n_vis; i++)
                s[i] *= scale;
            lb_softmax(fm, n_vis, s);
        }
        /* the query heads of this KV head are consecutive in out */
        float *o = j->out + ((size_t)t * c->n_head + (size_t)h * grp) * D;   /* [grp][D] */
        sum_values(c, j->il, h, p, &vr, grp, sc, o, row);
        if (c->v.rot)
            for (int g = 0; g < grp; g++)
                lb__kv_unrotate(o + (size_t)g * D, D);
    }
}

static void attend_rows(lb_kvq_cache *c, int il, int pos0, int n, const float *q, float *out, lb_pool *pool)
{
    attn_job j = {c, il, pos0, n, q, out};
    if (n == 1 && c->n_threads == 1)
        attend_part(&j, 0, 1);
    else
        lb_pool_run(pool, attend_part, &j);
}

static void attend(void *ctx, int il, int pos0, int n, const float *q, float *out, lb_pool *pool)
{
    lb_kvq_cache *c = ctx;
    if (!(c->pend.active && c->pend.il == il && c->pend.pos0 == pos0 && c->pend.n == n)) {
        flush(c);
        attend_rows(c, il, pos0, n, q, out, pool);
        return;
    }
    /* Store and attend one stretch at a time, each ending at a group end
     * (or at the end of the sinks), so no row sees its own group quantized. */
    c->pend.active = false;
    const int S = c->n_sink, kvw = c->n_head_kv * c->head_dim, qw = c->n_head * c->head_dim;
    for (int t0 = 0; t0 < n;) {
        const int pos = pos0 + t0;
        int len = pos < S ? S - pos : LB_KV_GROUP - (pos - S) % LB_KV_GROUP;
        if (len > n - t0)
            len = n - t0;
        write_rows(c, il, pos, len, c->pend.k + (size_t)t0 * kvw, c->pend.v + (size_t)t0 * kvw);
        attend_rows(c, il, pos, len, q + (size_t)t0 * qw, out + (size_t)t0 * qw, pool);
        t0 += len;
    }
}

lb_kv_ops lb__kvq_cache_ops(lb_kvq_cache *c)
{
    lb_kv_ops ops = {c, store, attend};
    return ops;
}
