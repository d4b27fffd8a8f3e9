/* F16 KV cache with causal attention computed straight from it.
 *
 * Storage and arithmetic follow one rule: every product in the attention is
 * an exact f16 x f16 product summed in float in a fixed order (kernels/fmath.h).
 * K and V are stored as F16, which halves the cache; the query is rounded to
 * f16 before q.k and the softmax probabilities before the weighted sum of V,
 * so both dots are exact-product sums.  This is also what llama.cpp does with
 * its default F16 cache, and with the same summation orders (its 16-lane GEMM
 * kernel for batches, its 64-lane GEMV kernel for one token, whose tail past
 * the last 64-position group is summed in double, the sequence being padded
 * to 32 positions) the attention output equals llama.cpp's bit for bit; a
 * quantized model needs that for its greedy text to agree (see fmath.h).
 *
 * With a sliding window (lb_kv_cache_new_window) the slots after the sinks
 * are a ring of W + LB_KV_RING_SLACK positions; each query sees the sinks
 * and exactly its W newest positions, and the sinks are scored with a copy
 * of the query rebased as StreamingLLM does (kv_window.h).  That path uses
 * the batch (dot16) order throughout: exactness against llama.cpp is kept
 * only without a window. */
#include "kv_cache.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "kernels/fmath.h"
#include "kv_window.h"

struct lb_kv_cache {
    int n_ctx;        /* slots per layer and head: the context, or S + W + slack when windowed */
    int n_layer, n_head, n_head_kv, head_dim, n_threads;
    int n_window, n_sink, ring;   /* windowed: W, S and the ring's W + slack slots; else 0 */
    lb_f16 *k;        /* [n_layer][n_head_kv][n_ctx][head_dim] */
    int v_stride;     /* positions from one value row of vt to the next: v_stride_for(n_ctx) */
    lb_f16 *vt;       /* [n_layer][n_head_kv][head_dim][v_stride]  V transposed: a value
                       * dimension over all positions is one contiguous row, so the
                       * weighted sum over positions is a dot product */
    float *scores;    /* [n_threads][n_head / n_head_kv][n_ctx] */
    lb_f16 *q16;      /* [n_threads][n_head / n_head_kv][head_dim]  the query as f16 */
    lb_f16 *p16;      /* [n_threads][n_head / n_head_kv][n_ctx]  probabilities as f16 */
    /* windowed only: */
    lb_f16 *qs16;     /* [n_threads][n_head / n_head_kv][head_dim]  the query rebased for the sinks, as f16 */
    float *qf;        /* [n_threads][n_head / n_head_kv][head_dim]  the query being rebased */
    int *stored;      /* [n_layer] positions stored so far */
    lb_kv_rope rope;
    struct {          /* a batch whose storing is deferred to attend() */
        bool active;
        int il, pos0, n;
        const float *k, *v;
    } pend;
    lb_kvq_cache *q;  /* the quantized store (then none of the above is allocated), or NULL */
};

static size_t cache_bytes(const lb_hparams *hp, int n_ctx)
{
    return (size_t)hp->n_layer * hp->n_head_kv * (size_t)n_ctx * hp->head_dim * sizeof(lb_f16);
}

/* The distance between value rows: n_ctx rounded up to 32 positions, and
 * an odd number of 64-byte lines.  A decode step reads the first n_pos
 * positions of a head's 64 value rows; 2 KiB apart (a context of 1024)
 * every row fell in the same two L1 sets.  (Measured together with
 * prefetch_head below; on its own its effect was within this machine's
 * noise.)  The rounding is also the room dot64_values reads past a row's
 * last position into (fmath.h). */
static int v_stride_for(int n_ctx)
{
    int s = (n_ctx + 31) / 32 * 32;
    return s % 64 ? s : s + 32;
}

static size_t v_bytes(const lb_hparams *hp, int n_ctx)
{
    return (size_t)hp->n_layer * hp->n_head_kv * (size_t)v_stride_for(n_ctx) * hp->head_dim * sizeof(lb_f16);
}

static size_t scratch_bytes(const lb_hparams *hp, int n_ctx, int n_threads)
{
    size_t group = (size_t)(hp->n_head / hp->n_head_kv);
    return (size_t)n_threads * (group * n_ctx * sizeof(float) + group * hp->head_dim * sizeof(lb_f16) +
                                group * n_ctx * sizeof(lb_f16));
}

size_t lb_kv_cache_bytes(const lb_hparams *hp, int n_ctx, int n_threads)
{
    return cache_bytes(hp, n_ctx) + v_bytes(hp, n_ctx) + scratch_bytes(hp, n_ctx, n_threads) + sizeof(lb_kv_cache);
}

/* The window's extra scratch: qs16, qf, stored. */
static size_t window_bytes(const lb_hparams *hp, int n_threads)
{
    const size_t qw = (size_t)n_threads * (size_t)hp->n_head * (size_t)hp->head_dim / (size_t)hp->n_head_kv;
    return qw * (sizeof(lb_f16) + sizeof(float)) + (size_t)hp->n_layer * sizeof(int);
}

size_t lb_kv_cache_bytes_window(const lb_hparams *hp, int n_window, int n_sink, int n_threads)
{
    return lb_kv_cache_bytes(hp, n_sink + n_window + LB_KV_RING_SLACK, n_threads) + window_bytes(hp, n_threads);
}

lb_status lb_kv_cache_new(const lb_hparams *hp, int n_ctx, int n_threads, lb_kv_cache **out, lb_err *err)
{
    if (n_ctx < 1 || n_threads < 1)
        return lb__errf(err, LB_ERR_INVALID_ARG, "n_ctx %d / n_threads %d must be >= 1", n_ctx, n_threads);
    lb_kv_cache *c = calloc(1, sizeof *c);
    if (!c)
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate the KV cache");
    c->n_ctx = n_ctx;
    c->v_stride = v_stride_for(n_ctx);
    c->n_layer = hp->n_layer;
    c->n_head = hp->n_head;
    c->n_head_kv = hp->n_head_kv;
    c->head_dim = hp->head_dim;
    c->n_threads = n_threads;
    const size_t per = cache_bytes(hp, n_ctx), group = (size_t)(hp->n_head / hp->n_head_kv);
    c->k = lb_aligned_alloc(64, per);
    c->vt = lb_aligned_alloc(64, v_bytes(hp, n_ctx));
    c->scores = lb_aligned_alloc(64, (size_t)n_threads * group * n_ctx * sizeof(float));
    c->q16 = lb_aligned_alloc(64, (size_t)n_threads * group * hp->head_dim * sizeof(lb_f16));
    c->p16 = lb_aligned_alloc(64, (size_t)n_threads * group * n_ctx * sizeof(lb_f16));
    if (!c->k || !c->vt || !c->scores || !c->q16 || !c->p16) {
        lb_kv_cache_free(c);
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate %zu bytes of KV cache for %d positions", 2 * per, n_ctx);
    }
    *out = c;
    return LB_OK;
}

lb_status lb_kv_cache_new_window(const lb_hparams *hp, int n_window, int n_sink, int n_threads, lb_kv_type k,
                                 lb_kv_type v, lb_kv_cache **out, lb_err *err)
{
    if (n_window < 1 || n_window > LB_KV_MAX_POS / 2 || n_sink < 0 || n_sink > LB_KV_MAX_POS / 2)
        return lb__errf(err, LB_ERR_INVALID_ARG, "window %d must be >= 1 and sinks %d >= 0", n_window, n_sink);
    if (!lb_kv_type_bits(k) || !lb_kv_type_bits(v))
        return lb__errf(err, LB_ERR_INVALID_ARG, "unknown KV cache type (K %d, V %d)", (int)k, (int)v);
    if (k != LB_KV_F16 || v != LB_KV_F16) {
        lb_kv_cache *c = calloc(1, sizeof *c);
        if (!c)
            return lb__errf(err, LB_ERR_NOMEM, "cannot allocate the KV cache");
        lb_status st = lb__kvq_cache_new_window(hp, 0, n_window, n_threads, k, v, n_sink, &c->q, err);
        if (st) {
            free(c);
            return st;
        }
        c->n_ctx = LB_KV_MAX_POS;
        *out = c;
        return LB_OK;
    }
    lb_kv_cache *c = NULL;
    lb_status st = lb_kv_cache_new(hp, n_sink + n_window + LB_KV_RING_SLACK, n_threads, &c, err);
    if (st)
        return st;
    c->n_window = n_window;
    c->n_sink = n_sink;
    c->ring = n_window + LB_KV_RING_SLACK;
    const size_t qw = (size_t)n_threads * (size_t)hp->n_head * (size_t)hp->head_dim / (size_t)hp->n_head_kv;
    c->qs16 = malloc(qw * sizeof(lb_f16));
    c->qf = malloc(qw * sizeof(float));
    c->stored = calloc((size_t)hp->n_layer, sizeof(int));
    if (!c->qs16 || !c->qf || !c->stored) {
        lb_kv_cache_free(c);
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate the KV cache's window scratch");
    }
    lb__kv_rope_init(&c->rope, hp);
    *out = c;
    return LB_OK;
}

lb_status lb_kv_cache_new_typed(const lb_hparams *hp, int n_ctx, int n_threads, lb_kv_type k, lb_kv_type v,
                                int n_sink, lb_kv_cache **out, lb_err *err)
{
    if (!lb_kv_type_bits(k) || !lb_kv_type_bits(v))
        return lb__errf(err, LB_ERR_INVALID_ARG, "unknown KV cache type (K %d, V %d)", (int)k, (int)v);
    if (k == LB_KV_F16 && v == LB_KV_F16)
        return lb_kv_cache_new(hp, n_ctx, n_threads, out, err);
    lb_kv_cache *c = calloc(1, sizeof *c);
    if (!c)
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate the KV cache");
    lb_status st = lb__kvq_cache_new(hp, n_ctx, n_threads, k, v, n_sink, &c->q, err);
    if (st) {
        free(c);
        return st;
    }
    c->n_ctx = n_ctx;
    *out = c;
    return LB_OK;
}

size_t lb__kv_cache_wrapper_bytes(void) { return sizeof(lb_kv_cache); }

lb_kvq_cache *lb__kv_cache_quant(lb_kv_cache *c) { return c->q; }

void lb_kv_cache_free(lb_kv_cache *c)
{
    if (!c)
        return;
    lb__kvq_cache_free(c->q);
    lb_aligned_free(c->k);
    lb_aligned_free(c->vt);
    lb_aligned_free(c->scores);
    lb_aligned_free(c->q16);
    lb_aligned_free(c->p16);
    free(c->qs16);
    free(c->qf);
    free(c->stored);
    free(c);
}

int lb_kv_cache_n_ctx(const lb_kv_cache *c) { return c->ring ? LB_KV_MAX_POS : c->n_ctx; }

/* K of (layer, kv head, position): [head_dim] */
static lb_f16 *k_row(const lb_kv_cache *c, int il, int h, int pos)
{
    return c->k + (((size_t)il * c->n_head_kv + h) * c->n_ctx + pos) * c->head_dim;
}

/* V of (layer, kv head, value dimension d) over all positions: [n_ctx] */
static lb_f16 *v_row(const lb_kv_cache *c, int il, int h, int d)
{
    return c->vt + (((size_t)il * c->n_head_kv + h) * c->head_dim + d) * (size_t)c->v_stride;
}

static lb_status store(void *ctx, int il, int pos0, int n, const float *k, const float *v)
{
    lb_kv_cache *c = ctx;
    if (pos0 < 0 || n < 0 || pos0 + n > c->n_ctx)
        return LB_ERR_RANGE;
    const lb_fmath *fm = lb_fmath_get();
    const int hd = c->head_dim, kvw = c->n_head_kv * hd;
    lb_f16 vh[256];   /* one head's values as f16 (by fm->to_f16, not one software conversion each) */
    for (int t = 0; t < n; t++)
        for (int h = 0; h < c->n_head_kv; h++) {
            fm->to_f16(hd, k + (size_t)t * kvw + h * hd, k_row(c, il, h, pos0 + t));
            const float *vs = v + (size_t)t * kvw + h * hd;
            for (int d0 = 0; d0 < hd; d0 += 256) {
                const int m = hd - d0 < 256 ? hd - d0 : 256;
                fm->to_f16(m, vs + d0, vh);
                for (int d = 0; d < m; d++)
                    v_row(c, il, h, d0 + d)[pos0 + t] = vh[d];
            }
        }
    return LB_OK;
}

bool lb_kv_cache_prefix_shareable(const lb_kv_cache *c) { return c && !c->q && !c->ring; }

lb_status lb_kv_cache_copy_prefix(lb_kv_cache *dst, const lb_kv_cache *src, int n)
{
    if (!lb_kv_cache_prefix_shareable(dst) || !lb_kv_cache_prefix_shareable(src) || dst->n_ctx != src->n_ctx ||
        dst->n_layer != src->n_layer || dst->n_head_kv != src->n_head_kv || dst->head_dim != src->head_dim)
        return LB_ERR_UNSUPPORTED;
    if (n < 0 || n > dst->n_ctx)
        return LB_ERR_RANGE;
    if (dst == src || n == 0)
        return LB_OK;
    for (int il = 0; il < dst->n_layer; il++)
        for (int h = 0; h < dst->n_head_kv; h++) {
            /* a head's keys are n consecutive rows; its values n positions of each of head_dim rows */
            memcpy(k_row(dst, il, h, 0), k_row(src, il, h, 0), (size_t)n * dst->head_dim * sizeof(lb_f16));
            for (int d = 0; d < dst->head_dim; d++)
                memcpy(v_row(dst, il, h, d), v_row(src, il, h, d), (size_t)n * sizeof(lb_f16));
        }
    return LB_OK;
}

size_t lb_kv_cache_prefix_bytes(const lb_kv_cache *c, int n)
{
    if (!lb_kv_cache_prefix_shareable(c) || n < 0 || n > c->n_ctx)
        return 0;
    return (size_t)c->n_layer * c->n_head_kv * 2 * (size_t)n * c->head_dim * sizeof(lb_f16);
}

/* The buffer of n_saved positions: per layer and KV head, K [n_saved][head_dim], then V [head_dim][n_saved]. */
lb_status lb_kv_cache_save_prefix(const lb_kv_cache *c, int n, void *buf)
{
    if (!lb_kv_cache_prefix_shareable(c))
        return LB_ERR_UNSUPPORTED;
    if (n < 0 || n > c->n_ctx)
        return LB_ERR_RANGE;
    lb_f16 *o = buf;
    for (int il = 0; il < c->n_layer; il++)
        for (int h = 0; h < c->n_head_kv; h++) {
            memcpy(o, k_row(c, il, h, 0), (size_t)n * c->head_dim * sizeof(lb_f16));
            o += (size_t)n * c->head_dim;
            for (int d = 0; d < c->head_dim; d++, o += n)
                memcpy(o, v_row(c, il, h, d), (size_t)n * sizeof(lb_f16));
        }
    return LB_OK;
}

lb_status lb_kv_cache_load_prefix(lb_kv_cache *c, const void *buf, int n_saved, int n)
{
    if (!lb_kv_cache_prefix_shareable(c))
        return LB_ERR_UNSUPPORTED;
    if (n < 0 || n > n_saved || n_saved > c->n_ctx)
        return LB_ERR_RANGE;
    const lb_f16 *in = buf;
    for (int il = 0; il < c->n_layer; il++)
        for (int h = 0; h < c->n_head_kv; h++) {
            memcpy(k_row(c, il, h, 0), in, (size_t)n * c->head_dim * sizeof(lb_f16));
            in += (size_t)n_saved * c->head_dim;
            for (int d = 0; d < c->head_dim; d++, in += n_saved)
                memcpy(v_row(c, il, h, d), in, (size_t)n * sizeof(lb_f16));
        }
    return LB_OK;
}

/* Asks for the cache lines a decode step's attention of one KV head reads:
 * its keys (n_pos rows, one run) and the first n_pos positions of its 64
 * value rows (64 short runs that the hardware prefetchers do not follow).
 * Between two steps the whole model's weights pass through the caches, so
 * these lines come from L3 or memory; asked for up front, the value rows
 * arrive while the keys are scored (one row's attention over one layer at
 * 100 positions, context 1024, 64 caches cycled with a 16 MB sweep in
 * between: 20.8 us, 9.3 with the values' lines asked for, 8.0 with the
 * keys' too). */
static void prefetch_head(const lb_kv_cache *c, int il, int h, int n_pos)
{
    for (const char *p = (const char *)k_row(c, il, h, 0), *e = (const char *)k_row(c, il, h, n_pos); p < e; p += 64)
        __builtin_prefetch(p);
    for (int d = 0; d < c->head_dim; d++) {
        const char *v = (const char *)v_row(c, il, h, d);
        for (int p = 0; p < n_pos * (int)sizeof(lb_f16); p += 64)
            __builtin_prefetch(v + p);
    }
}

typedef struct attn_job {
    lb_kv_cache *c;
    int il, pos0, n;
    const float *q;
    float *out;
} attn_job;

/* One work item = one token and one KV head: the query heads that share the
 * KV head (grouped-query attention) are scored against each cached key while
 * it is in L1. */
static void attend_part(void *ctx, int ith, int nth)
{
    attn_job *j = ctx;
    lb_kv_cache *c = j->c;
    const int hd = c->head_dim, group = c->n_head / c->n_head_kv;
    const float scale = 1.0f / sqrtf((float)hd);
    const lb_fmath *fm = lb_fmath_get();
    /* One token uses the GEMV order, a batch the GEMM order (see the top). */
    const bool single = j->n == 1;
    float *sc = c->scores + (size_t)ith * c->n_ctx * group;   /* [group][n_ctx] */
    lb_f16 *q16 = c->q16 + (size_t)ith * group * hd;          /* [group][hd] */
    lb_f16 *p16 = c->p16 + (size_t)ith * group * c->n_ctx;    /* [group][n_ctx] */
    int64_t b, e;
    lb_split((int64_t)j->n * c->n_head_kv, ith, nth, &b, &e);
    for (int64_t w = b; w < e; w++) {
        int t = (int)(w / c->n_head_kv), kvh = (int)(w % c->n_head_kv);
        int n_pos = j->pos0 + t + 1;
        /* the 64-position groups of the GEMV order: the sequence padded to 32 */
        int64_t n_vec = ((int64_t)(n_pos + 31) / 32 * 32) & ~(int64_t)63;
        fm->to_f16((int64_t)group * hd, j->q + ((size_t)t * c->n_head + (size_t)kvh * group) * hd, q16);
        if (single)
            prefetch_head(c, j->il, kvh, n_pos);
        if (single && fm->dot64_heads && hd == 64 && group <= 8)   /* the same bits as the loops below */
            fm->dot64_heads(n_pos, k_row(c, j->il, kvh, 0), (size_t)hd, q16, group, scale, sc, (size_t)c->n_ctx);
        else if (single && fm->dot64_rows)
            for (int g = 0; g < group; g++)
                fm->dot64_rows(n_pos, hd, hd & ~63, k_row(c, j->il, kvh, 0), (size_t)hd, q16 + (size_t)g * hd, scale,
                               sc + (size_t)g * c->n_ctx);
        else
            for (int p = 0; p < n_pos; p++) {
                const lb_f16 *kr = k_row(c, j->il, kvh, p);
                for (int g = 0; g < group; g++) {
                    float s = single ? fm->dot64(hd, hd & ~63, kr, q16 + (size_t)g * hd)
                                     : fm->dot16(hd, kr, q16 + (size_t)g * hd);
                    sc[(size_t)g * c->n_ctx + p] = s * scale;
                }
            }
        /* Each head's probabilities, then the values: of all heads at once where the kernel exists. */
        const bool shared = single && fm->dot64_values;
        float *o = j->out + ((size_t)t * c->n_head + (size_t)kvh * group) * hd;   /* [group][hd] */
        for (int g = 0; g < group; g++) {
            float *s = sc + (size_t)g * c->n_ctx;
            lb_softmax(fm, n_pos, s);
            lb_f16 *pg = p16 + (shared ? (size_t)g * c->n_ctx : 0);
            fm->to_f16(n_pos, s, pg);
            if (shared)
                continue;
            float *og = o + (size_t)g * hd;
            if (single && fm->dot64_rows) {   /* the value dimensions are rows v_stride apart */
                fm->dot64_rows(hd, n_pos, n_vec, v_row(c, j->il, kvh, 0), (size_t)c->v_stride, pg, 1.0f, og);
                continue;
            }
            for (int d = 0; d < hd; d++) {
                const lb_f16 *vr = v_row(c, j->il, kvh, d);
                og[d] = single ? fm->dot64(n_pos, n_vec, vr, pg) : fm->dot16(n_pos, vr, pg);
            }
        }
        if (shared)
            fm->dot64_values(hd, n_pos, n_vec, v_row(c, j->il, kvh, 0), (size_t)c->v_stride, p16, (size_t)c->n_ctx,
                             group, o, (size_t)hd);
    }
}

static void attend(void *ctx, int il, int pos0, int n, const float *q, float *out, lb_pool *pool)
{
    attn_job j = {ctx, il, pos0, n, q, out};
    if (n == 1 && ((lb_kv_cache *)ctx)->n_threads == 1)
        attend_part(&j, 0, 1);
    else
        lb_pool_run(pool, attend_part, &j);
}

/* ------------------------------------------------------ sliding window */

/* The slot of position pos: sinks keep theirs, the rest share the ring. */
static int w_slot(const lb_kv_cache *c, int pos)
{
    return pos < c->n_sink ? pos : c->n_sink + (pos - c->n_sink) % c->ring;
}

static void w_write(lb_kv_cache *c, int il, int pos0, int n, const float *k, const float *v)
{
    const lb_fmath *fm = lb_fmath_get();
    const int hd = c->head_dim, kvw = c->n_head_kv * hd;
    for (int t = 0; t < n; t++) {
        const int slot = w_slot(c, pos0 + t);
        for (int h = 0; h < c->n_head_kv; h++) {
            fm->to_f16(hd, k + (size_t)t * kvw + h * hd, k_row(c, il, h, slot));
            const float *vs = v + (size_t)t * kvw + h * hd;
            for (int d = 0; d < hd; d++)
                v_row(c, il, h, d)[slot] = lb_f32_to_f16(vs[d]);
        }
    }
    c->stored[il] = pos0 + n;
}

static void w_flush(lb_kv_cache *c)
{
    if (c->pend.active) {
        c->pend.active = false;
        w_write(c, c->pend.il, c->pend.pos0, c->pend.n, c->pend.k, c->pend.v);
    }
}

/* Checks the range and defers the writing to w_attend (as kv_quant.c does),
 * which stores and attends a batch in stretches of at most the ring's slack. */
static lb_status w_store(void *ctx, int il, int pos0, int n, const float *k, const float *v)
{
    lb_kv_cache *c = ctx;
    w_flush(c);
    if (il < 0 || il >= c->n_layer || pos0 < 0 || n < 0 || pos0 > c->stored[il] || n > LB_KV_MAX_POS - pos0)
        return LB_ERR_RANGE;
    /* going back is possible while the ring has not wrapped, or to the sinks */
    if (pos0 < c->stored[il] && pos0 > c->n_sink && c->stored[il] > c->n_sink + c->ring)
        return LB_ERR_RANGE;
    c->pend.active = true;
    c->pend.il = il;
    c->pend.pos0 = pos0;
    c->pend.n = n;
    c->pend.k = k;
    c->pend.v = v;
    return LB_OK;
}

/* One token and one KV head per work item, as attend_part. */
static void w_attend_part(void *ctx, int ith, int nth)
{
    attn_job *j = ctx;
    lb_kv_cache *c = j->c;
    const int hd = c->head_dim, group = c->n_head / c->n_head_kv, S = c->n_sink;
    const float scale = 1.0f / sqrtf((float)hd);
    const lb_fmath *fm = lb_fmath_get();
    float *sc = c->scores + (size_t)ith * c->n_ctx * group;   /* [group][n_ctx] by visible index */
    lb_f16 *q16 = c->q16 + (size_t)ith * group * hd;          /* [group][hd] */
    lb_f16 *qs16 = c->qs16 + (size_t)ith * group * hd;        /* [group][hd] */
    float *qf = c->qf + (size_t)ith * group * hd;             /* [group][hd] */
    lb_f16 *p16 = c->p16 + (size_t)ith * group * c->n_ctx;    /* [n_ctx] by visible index */
    int64_t b, e;
    lb_split((int64_t)j->n * c->n_head_kv, ith, nth, &b, &e);
    for (int64_t w = b; w < e; w++) {
        const int t = (int)(w / c->n_head_kv), kvh = (int)(w % c->n_head_kv), p = j->pos0 + t;
        /* visible: sinks 0 .. n_sk-1, then positions w0 .. p (at most W of them) */
        const int n_sk = p + 1 < S ? p + 1 : S;
        const int w0 = p - c->n_window + 1 > S ? p - c->n_window + 1 : S;
        const int n_w = p >= w0 ? p - w0 + 1 : 0, n_vis = n_sk + n_w;
        const float *q = j->q + ((size_t)t * c->n_head + (size_t)kvh * group) * hd;
        fm->to_f16((int64_t)group * hd, q, q16);
        const lb_f16 *qsink = q16;
        if (w0 > S && n_sk > 0) {   /* rebase the query for the sinks (StreamingLLM) */
            memcpy(qf, q, (size_t)group * hd * sizeof(float));
            lb__kv_rope_shift(&c->rope, qf, group, hd, p, p - (w0 - S));
            fm->to_f16((int64_t)group * hd, qf, qs16);
            qsink = qs16;
        }
        for (int i = 0; i < n_vis; i++) {
            const bool sink = i < n_sk;
            const lb_f16 *kr = k_row(c, j->il, kvh, sink ? i : w_slot(c, w0 + i - n_sk));
            for (int g = 0; g < group; g++)
                sc[(size_t)g * c->n_ctx + i] = fm->dot16(hd, kr, (sink ? qsink : q16) + (size_t)g * hd) * scale;
        }
        /* the window's slots: one run from its first slot, then the wrapped rest */
        const int a = n_w ? w_slot(c, w0) : S, n1 = n_w < S + c->ring - a ? n_w : S + c->ring - a;
        for (int g = 0; g < group; g++) {
            float *s = sc + (size_t)g * c->n_ctx;
            lb_softmax(fm, n_vis, s);
            fm->to_f16(n_vis, s, p16);
            float *o = j->out + ((size_t)t * c->n_head + (size_t)kvh * group + g) * hd;
            for (int d = 0; d < hd; d++) {
                const lb_f16 *vr = v_row(c, j->il, kvh, d);
                float acc = n_sk ? fm->dot16(n_sk, vr, p16) : 0.0f;
                if (n1)
                    acc += fm->dot16(n1, vr + a, p16 + n_sk);
                if (n_w > n1)
                    acc += fm->dot16(n_w - n1, vr + S, p16 + n_sk + n1);
                o[d] = acc;
            }
        }
    }
}

static void w_attend_rows(lb_kv_cache *c, int il, int pos0, int n, const float *q, float *out, lb_pool *pool)
{
    attn_job j = {c, il, pos0, n, q, out};
    if (n == 1 && c->n_threads == 1)
        w_attend_part(&j, 0, 1);
    else
        lb_pool_run(pool, w_attend_part, &j);
}

static void w_attend(void *ctx, int il, int pos0, int n, const float *q, float *out, lb_pool *pool)
{
    lb_kv_cache *c = ctx;
    if (!(c->pend.active && c->pend.il == il && c->pend.pos0 == pos0 && c->pend.n == n)) {
        w_flush(c);
        w_attend_rows(c, il, pos0, n, q, out, pool);
        return;
    }
    c->pend.active = false;
    const int kvw = c->n_head_kv * c->head_dim, qw = c->n_head * c->head_dim;
    for (int t0 = 0; t0 < n; t0 += LB_KV_RING_SLACK) {
        const int len = n - t0 < LB_KV_RING_SLACK ? n - t0 : LB_KV_RING_SLACK;
        w_write(c, il, pos0 + t0, len, c->pend.k + (size_t)t0 * kvw, c->pend.v + (size_t)t0 * kvw);
        w_attend_rows(c, il, pos0 + t0, len, q + (size_t)t0 * qw, out + (size_t)t0 * qw, pool);
    }
}

lb_kv_ops lb_kv_cache_ops(lb_kv_cache *c)
{
    if (c->q)
        return lb__kvq_cache_ops(c->q);
    if (c->ring) {
        lb_kv_ops ops = {c, w_store, w_attend};
        return ops;
    }
    lb_kv_ops ops = {c, store, attend};
    return ops;
}
