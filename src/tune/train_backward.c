/* The training backward pass: from the logits' gradient back through the
 * output projection, the layers and the embedding.  A weight's gradient dW
 * is never kept: it is reduced at once into its blocks' log-scales,
 * dL/ds_b = sum over i in b of dL/dW_i * W_i (since dW_i/ds_b = W_i). */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "tune/train.h"

typedef struct reduce_job {
    const lb_tune_weight *tw;
    const float *dw;   /* [rows][cols] */
} reduce_job;

static void reduce_worker(void *ctx, int ith, int nth)
{
    reduce_job *j = ctx;
    const lb_tune_weight *tw = j->tw;
    const int64_t C = tw->src->cols, nb = C / tw->blck;
    int64_t r0, r1;
    lb_split(tw->src->rows, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++)
        for (int64_t k = 0; k < nb; k++) {
            const float *a = j->dw + r * C + k * tw->blck, *b = tw->w + r * C + k * tw->blck;
            float s = 0;
            for (int e = 0; e < tw->blck; e++)
                s += a[e] * b[e];
            tw->gs[r * nb + k] += s;
        }
}

/* dW = dY^T X (dY: [n][rows] with row stride ldy, X: [n][cols]), reduced per block. */
static void weight_grad(lb_tune_state *st, lb_pool *pool, const lb_tune_weight *tw, const float *dy, int64_t ldy,
                        const float *x, int64_t ldx, int n)
{
    if (!tw->s)
        return;
    const int64_t R = tw->src->rows, C = tw->src->cols;
    lb__sgemm(pool, R, C, n, dy, 1, ldy, x, ldx, st->dw, C, false);
    reduce_job j = {tw, st->dw};
    lb_pool_run(pool, reduce_worker, &j);
}

/* Through y = x * r * w, r = 1 / rms(x): dx += r w dy - x r^3 / E * sum(dy w x);
 * dw += dy x r (when dw is non-NULL). */
static void rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *r, const float *w, float *dw, int n,
                        int64_t E)
{
    for (int t = 0; t < n; t++) {
        const float *dyt = dy + t * E, *xt = x + t * E;
        float rt = r[t];
        double s = 0;
        for (int64_t i = 0; i < E; i++)
            s += (double)dyt[i] * w[i] * xt[i];
        float coef = (float)(s * rt * rt * rt / (double)E);
        for (int64_t i = 0; i < E; i++)
            dx[t * E + i] += rt * w[i] * dyt[i] - xt[i] * coef;
        if (dw)
            for (int64_t i = 0; i < E; i++)
                dw[i] += dyt[i] * xt[i] * rt;
    }
}

/* The transpose of rope_row's rotation. */
static void rope_bwd_row(float *d, int n_heads, int D, const float *cs)
{
    for (int h = 0; h < n_heads; h++) {
        float *v = d + h * D;
        for (int i = 0; i < D / 2; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1], a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * c + b * s;
            v[2 * i + 1] = -a * s + b * c;
        }
    }
}

/* One query head: dP = dO v^T, dV_h = P^T dO, dS = P (dP - rowsum(P dP)) / sqrt(D),
 * dQ = dS k, dK_h = dS^T q. */
static void attn_bwd_worker(void *ctx, int ith, int nth)
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
    float *vt = st->head + (size_t)ith * 3 * T * (T > D ? T : D);   /* [D][T] */
    float *dp = vt + T * (T > D ? T : D);                             /* [T][T] */
    const float *q = st->q + il * T * Q, *k = st->k + il * T * KV, *v = st->v + il * T * KV;
    for (int h; (h = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < hp->n_head;) {
        int kv = h / grp;
        const float *P = st->p + ((int64_t)il * hp->n_head + h) * T * T, *dO = st->datt + h * D;
        for (int t = 0; t < n; t++)
            for (int64_t d = 0; d < D; d++)
                vt[d * T + t] = v[t * KV + kv * D + d];
        lb__sgemm(NULL, n, n, D, dO, Q, 1, vt, T, dp, T, false);
        lb__sgemm(NULL, n, D, n, P, 1, T, dO, Q, st->dvh + h * T * D, D, false);
        for (int i = 0; i < n; i++) {
            const float *pr = P + (int64_t)i * T;
            float *dr = dp + (int64_t)i * T;
            double s = 0;
            for (int t = 0; t <= i; t++)
                s += (double)pr[t] * dr[t];
            for (int t = 0; t <= i; t++)
                dr[t] = pr[t] * (dr[t] - (float)s) * scale;
            for (int t = i + 1; t < n; t++)
                dr[t] = 0.0f;
        }
        lb__sgemm(NULL, n, D, n, dp, T, 1, k + kv * D, KV, st->dq + h * D, Q, false);
        lb__sgemm(NULL, n, D, n, dp, 1, T, q + h * D, Q, st->dkh + h * T * D, D, false);
    }
}

static float *norm_grad(lb_tune_model *tm, const float *norm)
{
    return tm->train_norms ? tm->grads + (norm - tm->params) : NULL;
}

void lb__tune_backward(lb_tune_state *st, lb_tune_model *tm, lb_pool *pool, const int32_t *tok, int n)
{
    const lb_hparams *hp = &tm->hp;
    const int64_t T = st->ctx, E = hp->n_embd, D = hp->head_dim, Q = (int64_t)hp->n_head * D,
                  KV = (int64_t)hp->n_head_kv * D, F = hp->n_ff, V = hp->n_vocab;
    const int grp = hp->n_head / hp->n_head_kv;
    /* The output projection and the final norm. */
    lb__sgemm(pool, n, E, V, st->dlogits, V, 1, tm->out->w, E, st->dxn, E, false);
    weight_grad(st, pool, tm->out, st->dlogits, V, st->xnf, E, n);
    memset(st->dx, 0, (size_t)(n * E) * sizeof(float));
    rmsnorm_bwd(st->dx, st->dxn, st->x + hp->n_layer * T * E, st->rf, tm->out_norm, norm_grad(tm, tm->out_norm), n,
                E);
    for (int il = hp->n_layer - 1; il >= 0; il--) {
        const lb_tune_weight *W = tm->w + il * LB_TUNE_WPL;
        const float *x = st->x + il * T * E, *xn1 = st->xn1 + il * T * E, *att = st->att + il * T * Q,
                    *xm = st->xm + il * T * E, *xn2 = st->xn2 + il * T * E, *g = st->g + il * T * F,
                    *u = st->u + il * T * F, *h = st->h + il * T * F;
        /* Feed-forward: x_out = xm + down(silu(gate(xn2)) * up(xn2)). */
        lb__sgemm(pool, n, F, E, st->dx, E, 1, W[6].w, F, st->dh, F, false);
        weight_grad(st, pool, &W[6], st->dx, E, h, F, n);
        for (int64_t i = 0; i < n * F; i++) {
            float sg = 1.0f / (1.0f + expf(-g[i])), silu = g[i] * sg;
            st->du[i] = st->dh[i] * silu;
            st->dg[i] = st->dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
        }
        lb__sgemm(pool, n, E, F, st->dg, F, 1, W[4].w, E, st->dxn, E, false);
        lb__sgemm(pool, n, E, F, st->du, F, 1, W[5].w, E, st->dxn, E, true);
        weight_grad(st, pool, &W[4], st->dg, F, xn2, E, n);
        weight_grad(st, pool, &W[5], st->du, F, xn2, E, n);
        memcpy(st->dxm, st->dx, (size_t)(n * E) * sizeof(float));
        rmsnorm_bwd(st->dxm, st->dxn, xm, st->r2 + il * T, tm->ffn_norm + il * E,
                    norm_grad(tm, tm->ffn_norm + il * E), n, E);
        /* Attention: xm = x + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1))). */
        lb__sgemm(pool, n, Q, E, st->dxm, E, 1, W[3].w, Q, st->datt, Q, false);
        weight_grad(st, pool, &W[3], st->dxm, E, att, Q, n);
        attn_job aj = {st, hp, il, n, 0};
        atomic_init(&aj.next, 0);
        lb_pool_run(pool, attn_bwd_worker, &aj);
        for (int t = 0; t < n; t++)
            for (int kv = 0; kv < hp->n_head_kv; kv++)
                for (int64_t d = 0; d < D; d++) {
                    float sk = 0, sv = 0;
                    for (int hh = kv * grp; hh < (kv + 1) * grp; hh++) {
                        sk += st->dkh[(hh * T + t) * D + d];
                        sv += st->dvh[(hh * T + t) * D + d];
                    }
                    st->dk[t * KV + kv * D + d] = sk;
                    st->dv[t * KV + kv * D + d] = sv;
                }
        for (int t = 0; t < n; t++) {
            rope_bwd_row(st->dq + t * Q, hp->n_head, (int)D, st->cs + t * D);
            rope_bwd_row(st->dk + t * KV, hp->n_head_kv, (int)D, st->cs + t * D);
        }
        lb__sgemm(pool, n, E, Q, st->dq, Q, 1, W[0].w, E, st->dxn, E, false);
        lb__sgemm(pool, n, E, KV, st->dk, KV, 1, W[1].w, E, st->dxn, E, true);
        lb__sgemm(pool, n, E, KV, st->dv, KV, 1, W[2].w, E, st->dxn, E, true);
        weight_grad(st, pool, &W[0], st->dq, Q, xn1, E, n);
        weight_grad(st, pool, &W[1], st->dk, KV, xn1, E, n);
        weight_grad(st, pool, &W[2], st->dv, KV, xn1, E, n);
        memcpy(st->dx, st->dxm, (size_t)(n * E) * sizeof(float));
        rmsnorm_bwd(st->dx, st->dxn, x, st->r1 + il * T, tm->attn_norm + il * E,
                    norm_grad(tm, tm->attn_norm + il * E), n, E);
    }
    /* The embedding: only the rows of the window's tokens get a gradient. */
    const lb_tune_weight *em = tm->emb;
    if (em->s) {
        const int64_t nb = E / em->blck;
        for (int t = 0; t < n; t++) {
            const float *w = em->w + (int64_t)tok[t] * E, *d = st->dx + t * E;
            for (int64_t kb = 0; kb < nb; kb++) {
                float s = 0;
                for (int e = 0; e < em->blck; e++)
                    s += d[kb * em->blck + e] * w[kb * em->blck + e];
                em->gs[(int64_t)tok[t] * nb + kb] += s;
            }
        }
    }
}
