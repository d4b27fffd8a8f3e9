/* The training forward pass of the llama architecture in float, keeping
 * every activation the backward pass needs, and the distillation loss
 * KL(teacher || student) with its gradient at the logits. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/logits.h"
#include "tune/train.h"

static size_t up64(size_t n) { return (n + 15) & ~(size_t)15; }   /* floats, to 64-byte multiples */

lb_status lb__tune_state_new(const lb_tune_model *tm, int ctx, int n_threads, lb_tune_state **out, lb_err *err)
{
    const lb_hparams *hp = &tm->hp;
    if (ctx < 2)
        return lb__errf(err, LB_ERR_INVALID_ARG, "tuning windows need at least 2 tokens (got %d)", ctx);
    if (n_threads < 1)
        n_threads = 1;
    const size_t T = (size_t)ctx, E = (size_t)hp->n_embd, Q = (size_t)hp->n_head * (size_t)hp->head_dim,
                 KV = (size_t)hp->n_head_kv * (size_t)hp->head_dim, F = (size_t)hp->n_ff, H = (size_t)hp->n_head,
                 L = (size_t)hp->n_layer, V = (size_t)hp->n_vocab, D = (size_t)hp->head_dim;
    size_t dw = 0;
    for (int i = 0; i < tm->n_w; i++) {
        size_t n = (size_t)tm->w[i].src->rows * (size_t)tm->w[i].src->cols;
        dw = n > dw ? n : dw;
    }
    size_t hs = 3 * T * (T > D ? T : D);
    const size_t sizes[] = {
        (L + 1) * T * E, L * T * E, L * T, L * T * Q, L * T * KV, L * T * KV, L * H * T * T, L * T * Q, L * T * E,
        L * T * E, L * T, L * T * F, L * T * F, L * T * F, T * E, T, T * V, T * V, T * D,
        T * E, T * E, T * E, T * Q, T * KV, T * KV, T * Q, T * F, T * F, T * F, H * T * D, H * T * D, dw, (size_t)n_threads * hs,
    };
    enum { NBUF = sizeof sizes / sizeof sizes[0] };
    size_t total = 0;
    for (int i = 0; i < NBUF; i++)
        total += up64(sizes[i]);
    lb_tune_state *st = calloc(1, sizeof *st);
    float *b = st ? lb_aligned_alloc(64, total * sizeof(float)) : NULL;
    if (!b) {
        free(st);
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate %zu MiB of training activations for windows of %d",
                        total * sizeof(float) >> 20, ctx);
    }
    memset(b, 0, total * sizeof(float));
    st->block = b;
    float **bufs[NBUF] = {&st->x,   &st->xn1, &st->r1,     &st->q,       &st->k,   &st->v,  &st->p,   &st->att,
                          &st->xm,  &st->xn2, &st->r2,     &st->g,       &st->u,   &st->h,  &st->xnf, &st->rf,
                          &st->logits, &st->dlogits, &st->cs, &st->dx, &st->dxm, &st->dxn, &st->dq, &st->dk,
                          &st->dv,  &st->datt, &st->dg,    &st->du,      &st->dh,  &st->dkh, &st->dvh, &st->dw, &st->head};
    for (int i = 0; i < NBUF; i++) {
        *bufs[i] = b;
        b += up64(sizes[i]);
    }
    st->ctx = ctx;
    st->n_thr = n_threads;
    *out = st;
    return LB_OK;
}

void lb__tune_state_free(lb_tune_state *st)
{
    if (!st)
        return;
    lb_aligned_free(st->block);
    free(st);
}

/* y = x / rms(x) * w; keeps 1 / rms. */
static void rmsnorm_rows(float *y, float *r, const float *x, const float *w, int n, int64_t E, float eps)
{
    for (int t = 0; t < n; t++) {
        const float *xt = x + t * E;
        double ss = 0;
        for (int64_t i = 0; i < E; i++)
            ss += (double)xt[i] * xt[i];
        float rt = (float)(1.0 / sqrt(ss / (double)E + eps));
        r[t] = rt;
        for (int64_t i = 0; i < E; i++)
            y[t * E + i] = xt[i] * rt * w[i];
    }
}

/* Adjacent pairs of every head of one row rotated by (cos, sin). */
static void rope_row(float *x, int n_heads, int D, const float *cs)
{
    for (int h = 0; h < n_heads; h++) {
        float *v = x + h * D;
        for (int i = 0; i < D / 2; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1], a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * c - b * s;
            v[2 * i + 1] = a * s + b * c;
        }
    }
}

/* Causal softmax attention of one query head: P = softmax(q k^T / sqrt(D)), out = P v. */
static void attn_fwd_worker(void *ctx, int ith, int nth)
{
    attn_job *j = ctx;
    lb_tune_state *st = j->st;
    const lb_hparams *hp = j->hp;
    (void)nth;
    if (ith >= st->n_thr)
        return;
    const int64_t T = st->ctx, D = hp->head_dim, Q = (int64_t)hp->n_head * D, KV = (int64_t)hp->n_head_kv * D;
    const int n = j->n, il = j->il, grp = hp->n_head / hp->n_head_kv;
    const float scale = 1.0f / sqrtf((float)D);
    float *kt = st->head + (size_t)ith * 3 * T * (T > D ? T : D);   /* [D][T] */
    const float *q = st->q + il * T * Q, *k = st->k + il * T * KV, *v = st->v + il * T * KV;
    float *att = st->att + il * T * Q;
    for (int h; (h = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < hp->n_head;) {
        int kv = h / grp;
        float *P = st->p + ((int64_t)il * hp->n_head + h) * T * T;
        for (int t = 0; t < n; t++)
            for (int64_t d = 0; d < D; d++)
                kt[d * T + t] = k[t * KV + kv * D + d];
        lb__sgemm(NULL, n, n, D, q + h * D, Q, 1, kt, T, P, T, false);
        for (int i = 0; i < n; i++) {
            float *row = P + (int64_t)i * T;
            float mx = -INFINITY;
            for (int t = 0; t <= i; t++) {
                row[t] *= scale;
                mx = row[t] > mx ? row[t] : mx;
            }
            double sum = 0;
            for (int t = 0; t <= i; t++) {
                row[t] = expf(row[t] - mx);
                sum += row[t];
            }
            float inv = (float)(1.0 / sum);
            for (int t = 0; t <= i; t++)
                row[t] *= inv;
            for (int t = i + 1; t < n; t++)
                row[t] = 0.0f;
        }
        lb__sgemm(NULL, n, D, n, P, T, 1, v + kv * D, KV, att + h * D, Q, false);
    }
}

const float *lb__tune_forward(lb_tune_state *st, const lb_tune_model *tm, lb_pool *pool, const int32_t *tok, int n)
{
    const lb_hparams *hp = &tm->hp;
    const int64_t T = st->ctx, E = hp->n_embd, D = hp->head_dim, Q = (int64_t)hp->n_head * D,
                  KV = (int64_t)hp->n_head_kv * D, F = hp->n_ff, V = hp->n_vocab;
    st->n = n;
    for (int t = 0; t < n; t++)
        memcpy(st->x + t * E, tm->emb->w + (int64_t)tok[t] * E, (size_t)E * sizeof(float));
    float theta_scale = powf(hp->rope_base, -2.0f / (float)hp->n_rot);
    for (int t = 0; t < n; t++) {
        float theta = (float)t;
        for (int i = 0; i < D / 2; i++) {
            float th = hp->rope_scale * theta;
            st->cs[t * D + 2 * i] = cosf(th);
            st->cs[t * D + 2 * i + 1] = sinf(th);
            theta *= theta_scale;
        }
    }
    for (int il = 0; il < hp->n_layer; il++) {
        const lb_tune_weight *W = tm->w + il * LB_TUNE_WPL;
        float *x = st->x + il * T * E, *xn1 = st->xn1 + il * T * E, *q = st->q + il * T * Q,
              *k = st->k + il * T * KV, *v = st->v + il * T * KV, *att = st->att + il * T * Q,
              *xm = st->xm + il * T * E, *xn2 = st->xn2 + il * T * E, *g = st->g + il * T * F,
              *u = st->u + il * T * F, *h = st->h + il * T * F, *xo = st->x + (il + 1) * T * E;
        rmsnorm_rows(xn1, st->r1 + il * T, x, tm->attn_norm + il * E, n, E, hp->norm_eps);
        lb__sgemm(pool, n, Q, E, xn1, E, 1, W[0].wt, Q, q, Q, false);
        lb__sgemm(pool, n, KV, E, xn1, E, 1, W[1].wt, KV, k, KV, false);
        lb__sgemm(pool, n, KV, E, xn1, E, 1, W[2].wt, KV, v, KV, false);
        for (int t = 0; t < n; t++) {
            rope_row(q + t * Q, hp->n_head, (int)D, st->cs + t * D);
            rope_row(k + t * KV, hp->n_head_kv, (int)D, st->cs + t * D);
        }
        attn_job aj = {st, hp, il, n, 0};
        atomic_init(&aj.next, 0);
        lb_pool_run(pool, attn_fwd_worker, &aj);
        memcpy(xm, x, (size_t)(n * E) * sizeof(float));
        lb__sgemm(pool, n, E, Q, att, Q, 1, W[3].wt, E, xm, E, true);
        rmsnorm_rows(xn2, st->r2 + il * T, xm, tm->ffn_norm + il * E, n, E, hp->norm_eps);
        lb__sgemm(pool, n, F, E, xn2, E, 1, W[4].wt, F, g, F, false);
        lb__sgemm(pool, n, F, E, xn2, E, 1, W[5].wt, F, u, F, false);
        for (int64_t i = 0; i < n * F; i++)
            h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        memcpy(xo, xm, (size_t)(n * E) * sizeof(float));
        lb__sgemm(pool, n, E, F, h, F, 1, W[6].wt, E, xo, E, true);
    }
    rmsnorm_rows(st->xnf, st->rf, st->x + hp->n_layer * T * E, tm->out_norm, n, E, hp->norm_eps);
    lb__sgemm(pool, n, V, E, st->xnf, E, 1, tm->out->wt, V, st->logits, V, false);
    return st->logits;
}

double lb__tune_kl(lb_tune_state *st, const lb_tune_model *tm, const float *tlp, int n, float grad_scale)
{
    const int64_t V = tm->hp.n_vocab;
    double total = 0;
    for (int t = 0; t < n; t++) {
        const float *z = st->logits + t * V, *lt = tlp + t * V;
        double lse = lb_log_sum_exp(z, V, NULL), kl = 0;
        float *dz = st->dlogits + t * V;
        for (int64_t i = 0; i < V; i++) {
            double ls = (double)z[i] - lse, pt = exp((double)lt[i]);
            kl += pt * ((double)lt[i] - ls);
            if (grad_scale != 0.0f)
                dz[i] = grad_scale * (float)(exp(ls) - pt);
        }
        total += kl;
    }
    return total;
}
