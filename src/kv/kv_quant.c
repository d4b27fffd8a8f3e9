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
 * head are rotated, scored against each key group by lb_kvq_kernels.k_scores
 * (s[t] = q.min + sum_d (q[d]*scale[d]) * code[d][t], so the codes are
 * never expanded to a dequantized block), against F16 rows directly; softmax
 * in float; then the values are accumulated group by group with v_accum and
 * the result rotated back.
 *
 * Positions: keys are stored after RoPE.  A sliding window keeping the first
 * S and the last W tokens extends this store without ever re-quantizing:
 *  - the window's groups become a ring of W/G group slots (W a multiple of
 *    G); a group that leaves the window is simply overwritten by a new one;
 *  - relative positions inside the window are unchanged by the slide (the
 *    window is contiguous), so window keys need no re-rotation: the query
 *    keeps its true position for them;
 *  - for the sinks, whose slot positions are 0..S-1, the query is rotated
 *    once by RoPE(slot - true position) of the query (it must look W+S-1 or
 *    fewer positions away, as StreamingLLM assigns positions by slot); that
 *    needs hp's RoPE parameters, which lb__kvq_cache_new receives;
 *  - the true positions keep growing: the forward computes RoPE angles in
 *    float, about 1e-3 rad off at 16K positions (fine); far beyond that they
 *    should be computed in double.
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
    int n_ctx, n_layer, n_head, n_head_kv, head_dim, n_threads, n_sink, n_groups;
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

static void side_init(kv_side *s, lb_kv_type t, bool key, int D, int n_ctx, int n_sink)
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
    s->n_f16 = s->quant ? n_sink + LB_KV_GROUP : n_ctx;
}

/* Offsets of the buffers inside the block: k.q, k.f, v.q, v.f, stored,
 * scores, qr, row, gather; returns the block's size. */
static size_t layout(const lb_hparams *hp, int n_ctx, int n_sink, int n_threads, const kv_side *k, const kv_side *v,
                     size_t off[9])
{
    const size_t LH = (size_t)hp->n_layer * hp->n_head_kv, D = (size_t)hp->head_dim;
    const size_t grp = (size_t)(hp->n_head / hp->n_head_kv);
    const size_t n_groups = (size_t)(n_ctx - n_sink) / LB_KV_GROUP;
    const size_t sizes[9] = {
        k->quant ? LH * n_groups * k->unit : 0,
        LH * (size_t)k->n_f16 * D * sizeof(lb_f16),
        v->quant ? LH * n_groups * LB_KV_GROUP * v->unit : 0,
        LH * (size_t)v->n_f16 * D * sizeof(lb_f16),
        2 * (size_t)hp->n_layer * sizeof(int),
        (size_t)n_threads * grp * (size_t)n_ctx * sizeof(float),
        (size_t)n_threads * grp * D * sizeof(float),
        (size_t)n_threads * D * sizeof(float),
        D * LB_KV_GROUP * sizeof(float),
    };
    size_t total = 0;
    for (int i = 0; i < 9; i++) {
        off[i] = total;
        total += round_up(sizes[i]);
    }
    return total;
}

size_t lb__kvq_cache_bytes(const lb_hparams *hp, int n_ctx, lb_kv_type k, lb_kv_type v, int n_sink, int n_threads)
{
    kv_side ks, vs;
    side_init(&ks, k, true, hp->head_dim, n_ctx, n_sink);
    side_init(&vs, v, false, hp->head_dim, n_ctx, n_sink);
    size_t off[9];
    return layout(hp, n_ctx, n_sink, n_threads, &ks, &vs, off) + sizeof(lb_kvq_cache);
}

lb_status lb__kvq_cache_new(const lb_hparams *hp, int n_ctx, int n_threads, lb_kv_type k, lb_kv_type v, int n_sink,
                            lb_kvq_cache **out, lb_err *err)
{
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
    c->n_groups = (n_ctx - n_sink) / LB_KV_GROUP;
    side_init(&c->k, k, true, hp->head_dim, n_ctx, n_sink);
    side_init(&c->v, v, false, hp->head_dim, n_ctx, n_sink);
    size_t off[9];
    size_t total = layout(hp, n_ctx, n_sink, n_threads, &c->k, &c->v, off);
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

/* K group block g of (layer, head): codes [D][G/64][8b], scale [D], min [D] */
static uint8_t *k_block(const lb_kvq_cache *c, int il, int h, int g)
{
    return c->k.q + (lh(c, il, h) * c->n_groups + g) * c->k.unit;
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
    return c->v.q + (lh(c, il, h) * c->n_groups * LB_KV_GROUP + i) * c->v.unit;
}

/* The F16 row holding stored position pos of a side, or -1 if it is in a
 * quantized group (groups below nq, the layer's count of quantized groups). */
static int f16_index(const lb_kvq_cache *c, const kv_side *s, int pos, int nq)
{
    if (!s->quant)
        return pos;
    if (pos < c->n_sink)
        return pos;
    int r = pos - c->n_sink, g = r / LB_KV_GROUP;
    return g < nq ? -1 : c->n_sink + r % LB_KV_GROUP;
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
            put_row(c, &c->k, il, h, c->k.quant ? r : pos, kx, tmp);
            put_row(c, &c->v, il, h, c->v.quant ? r : pos, vx, tmp);
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

/* Scores of the query heads qr ([grp][D]) against positions 0 .. n_pos-1,
 * into sc ([grp][n_ctx]; entries up to the end of the last group touched may
 * be written). */
static void score_keys(const lb_kvq_cache *c, int il, int h, int n_pos, int grp, const float *qr, float *sc,
                       float *row)
{
    const int D = c->head_dim, nq = c->nq[il];
    const kv_side *s = &c->k;
    for (int p = 0; p < n_pos;) {
        int r = f16_index(c, s, p, nq);
        if (r >= 0) {
            f16_to_f32(f_row(c, s, il, h, r), row, D);
            for (int g = 0; g < grp; g++)
                sc[(size_t)g * c->n_ctx + p] = dot(qr + (size_t)g * D, row, D);
            p++;
            continue;
        }
        /* p starts a quantized group (sinks and F16 rows come one by one) */
        const int gi = (p - c->n_sink) / LB_KV_GROUP;
        const uint8_t *blk = k_block(c, il, h, gi);
        const lb_f16 *scl = k_scales(c, blk), *mn = scl + D;
        for (int part = 0; part < LB_KV_GROUP / 64 && p + 64 * part < n_pos; part++)
            for (int g = 0; g < grp; g++)
                c->ks->k_scores(s->bits, D, blk + (size_t)part * 8 * s->bits, k_chan_bytes(c), scl, mn,
                                qr + (size_t)g * D, sc + (size_t)g * c->n_ctx + p + 64 * part);
        p += LB_KV_GROUP;
    }
}

/* acc ([D], rotated basis if V is quantized) = sum of prob[p] * V[p] over p < n_pos. */
static void sum_values(const lb_kvq_cache *c, int il, int h, int n_pos, const float *prob, float *acc, float *row)
{
    const int D = c->head_dim, nq = c->nq[il];
    const kv_side *s = &c->v;
    memset(acc, 0, (size_t)D * sizeof(float));
    for (int p = 0; p < n_pos;) {
        int r = f16_index(c, s, p, nq);
        if (r >= 0) {
            f16_to_f32(f_row(c, s, il, h, r), row, D);
            for (int d = 0; d < D; d++)
                acc[d] += prob[p] * row[d];
            p++;
            continue;
        }
        const int cnt = n_pos - p < LB_KV_GROUP ? n_pos - p : LB_KV_GROUP;
        const uint8_t *t = v_tok(c, il, h, p - c->n_sink);
        for (int ch = 0; ch < D / 64; ch++)
            c->ks->v_accum(s->bits, cnt, t + (size_t)ch * (8 * s->bits + 4), s->unit, prob + p, acc + 64 * ch);
        p += cnt;
    }
}

static void attend_part(void *ctx, int ith, int nth)
{
    attn_job *j = ctx;
    lb_kvq_cache *c = j->c;
    const int D = c->head_dim, grp = c->n_head / c->n_head_kv;
    const float scale = 1.0f / sqrtf((float)D);
    const lb_fmath *fm = lb_fmath_get();
    float *sc = c->scores + (size_t)ith * grp * c->n_ctx;   /* [grp][n_ctx] */
    float *qr = c->qr + (size_t)ith * grp * D;              /* [grp][D] */
    float *row = c->row + (size_t)ith * D;                  /* [D] */
    int64_t b, e;
    lb_split((int64_t)j->n * c->n_head_kv, ith, nth, &b, &e);
    for (int64_t w = b; w < e; w++) {
        const int t = (int)(w / c->n_head_kv), h = (int)(w % c->n_head_kv), n_pos = j->pos0 + t + 1;
        const float *q = j->q + ((size_t)t * c->n_head + (size_t)h * grp) * D;
        for (int g = 0; g < grp; g++) {
            memcpy(qr + (size_t)g * D, q + (size_t)g * D, (size_t)D * sizeof(float));
            if (c->k.rot)
                lb__kv_rotate(qr + (size_t)g * D, D);
        }
        score_keys(c, j->il, h, n_pos, grp, qr, sc, row);
        for (int g = 0; g < grp; g++) {
            float *s = sc + (size_t)g * c->n_ctx;
            for (int p = 0; p < n_pos; p++)
                s[p] *= scale;
            float mx = s[0];
            for (int p = 1; p < n_pos; p++)
                mx = s[p] > mx ? s[p] : mx;
            double sum = fm->exp_sum(n_pos, s, s, mx);
            float inv = (float)(1.0 / sum);
            for (int p = 0; p < n_pos; p++)
                s[p] *= inv;
            float *o = j->out + ((size_t)t * c->n_head + (size_t)h * grp + g) * D;
            sum_values(c, j->il, h, n_pos, s, o, row);
            if (c->v.rot)
                lb__kv_unrotate(o, D);
        }
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
