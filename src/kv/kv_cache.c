/* F32 KV cache with causal attention computed straight from it. */
#include "kv_cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "kernels/kernels.h"
#include "model/ops.h"

struct lb_kv_cache {
    int n_ctx, n_layer, n_head, n_head_kv, head_dim, n_threads;
    float *k;        /* [n_layer][n_head_kv][n_ctx][head_dim] */
    float *v;        /* [n_layer][n_head_kv][n_ctx][head_dim] */
    float *scores;   /* [n_threads][n_head / n_head_kv][n_ctx] */
};

size_t lb_kv_cache_bytes(const lb_hparams *hp, int n_ctx, int n_threads)
{
    size_t per = (size_t)hp->n_layer * hp->n_head_kv * (size_t)n_ctx * hp->head_dim * sizeof(float);
    return 2 * per + (size_t)n_threads * n_ctx * (hp->n_head / hp->n_head_kv) * sizeof(float) + sizeof(lb_kv_cache);
}

lb_status lb_kv_cache_new(const lb_hparams *hp, int n_ctx, int n_threads, lb_kv_cache **out, lb_err *err)
{
    if (n_ctx < 1 || n_threads < 1)
        return lb__errf(err, LB_ERR_INVALID_ARG, "n_ctx %d / n_threads %d must be >= 1", n_ctx, n_threads);
    lb_kv_cache *c = calloc(1, sizeof *c);
    if (!c)
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate the KV cache");
    c->n_ctx = n_ctx;
    c->n_layer = hp->n_layer;
    c->n_head = hp->n_head;
    c->n_head_kv = hp->n_head_kv;
    c->head_dim = hp->head_dim;
    c->n_threads = n_threads;
    size_t per = (size_t)hp->n_layer * hp->n_head_kv * (size_t)n_ctx * hp->head_dim * sizeof(float);
    c->k = lb_aligned_alloc(64, per);
    c->v = lb_aligned_alloc(64, per);
    c->scores = lb_aligned_alloc(64, (size_t)n_threads * n_ctx * (hp->n_head / hp->n_head_kv) * sizeof(float));
    if (!c->k || !c->v || !c->scores) {
        lb_kv_cache_free(c);
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate %zu bytes of KV cache for %d positions", 2 * per, n_ctx);
    }
    *out = c;
    return LB_OK;
}

void lb_kv_cache_free(lb_kv_cache *c)
{
    if (!c)
        return;
    lb_aligned_free(c->k);
    lb_aligned_free(c->v);
    lb_aligned_free(c->scores);
    free(c);
}

int lb_kv_cache_n_ctx(const lb_kv_cache *c) { return c->n_ctx; }

static float *slot(const lb_kv_cache *c, float *base, int il, int h, int pos)
{
    return base + (((size_t)il * c->n_head_kv + h) * c->n_ctx + pos) * c->head_dim;
}

static lb_status store(void *ctx, int il, int pos0, int n, const float *k, const float *v)
{
    lb_kv_cache *c = ctx;
    if (pos0 < 0 || n < 0 || pos0 + n > c->n_ctx)
        return LB_ERR_RANGE;
    const int hd = c->head_dim, kvw = c->n_head_kv * hd;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < c->n_head_kv; h++) {
            memcpy(slot(c, c->k, il, h, pos0 + t), k + (size_t)t * kvw + h * hd, hd * sizeof(float));
            memcpy(slot(c, c->v, il, h, pos0 + t), v + (size_t)t * kvw + h * hd, hd * sizeof(float));
        }
    return LB_OK;
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
    const lb_kernel_set *ks = lb_kernels();
    lb_vec_dot_fn dot = ks->vec_dot[LB_TYPE_F32];
    float *sc = c->scores + (size_t)ith * c->n_ctx * group;   /* [group][n_ctx] */
    int64_t b, e;
    lb_split((int64_t)j->n * c->n_head_kv, ith, nth, &b, &e);
    for (int64_t w = b; w < e; w++) {
        int t = (int)(w / c->n_head_kv), kvh = (int)(w % c->n_head_kv);
        int n_pos = j->pos0 + t + 1;
        const float *q0 = j->q + ((size_t)t * c->n_head + (size_t)kvh * group) * hd;   /* [group][hd] */
        const float *kb = slot(c, c->k, j->il, kvh, 0);
        const float *vb = slot(c, c->v, j->il, kvh, 0);
        for (int p = 0; p < n_pos; p++)
            for (int g = 0; g < group; g++) {
                dot(hd, &sc[(size_t)g * c->n_ctx + p], kb + (size_t)p * hd, q0 + (size_t)g * hd);
                sc[(size_t)g * c->n_ctx + p] *= scale;
            }
        for (int g = 0; g < group; g++) {
            float *s = sc + (size_t)g * c->n_ctx;
            lb_softmax(s, n_pos);
            float *o = j->out + ((size_t)t * c->n_head + (size_t)kvh * group + g) * hd;
            memset(o, 0, hd * sizeof(float));
            for (int p = 0; p < n_pos; p++)
                ks->axpy_f32(hd, s[p], vb + (size_t)p * hd, o);
        }
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

lb_kv_ops lb_kv_cache_ops(lb_kv_cache *c)
{
    lb_kv_ops ops = {c, store, attend};
    return ops;
}
