/* The quality quantizer for LBQ2/LBQ3/LBQ4: group-scale search in the rotated
 * basis, then rounding with error feedback (GPTQ/LDLQ-style) so that the
 * importance-weighted error of the ORIGINAL weights is what gets minimised.
 *
 * Why feedback is needed: the importance matrix weighs original columns,
 * sum_j imp_j e_j^2.  After the rotation an error e' in the stored basis
 * costs e'^T M e' with M = R diag(imp) R^T, which is not diagonal, so
 * independent rounding per element cannot follow it.  Rounding element by
 * element and pushing each rounding error onto the elements not yet rounded
 * (weighted by the Cholesky factor of M^-1) is the classical optimal-brain-
 * surgeon answer.  M depends only on the importance vector, so its factor
 * is computed once per tensor and block column and cached. */
#include "quant/lbq.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "format/tensor_type.h"
#include "quant/ldlq.h"
#include "quant/quantize.h"

/* Damping added to every importance value, as a fraction of the block's
 * mean: keeps M well conditioned and tempers columns the diagonal
 * statistics overrate (0.01, GPTQ's usual value, gave worse perplexity). */
#define DAMP 1.0

/* ---- cache of the Cholesky factors, one entry per importance vector */

typedef struct {
    const float *imp;   /* identity of the vector (with n and sum) */
    int64_t n;
    double sum;
    float *u;           /* [n / 256][256][256] upper factors U with M^-1 = U^T U */
} chol_entry;

#define N_CACHE 4
static chol_entry cache[N_CACHE];
static int cache_next;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* Upper Cholesky factor of one block's damped M^-1 into u[256][256].
 * M + lambda I = R (D + lambda) R^T, so M^-1 = R (D + lambda)^-1 R^T exactly;
 * its entry (i, k) depends only on i XOR k: c = H v / 256, v = 1 / (imp + lambda). */
static void block_factor(const float *imp, float *u)
{
    double c[LB_QK_K]; /* [256] first 1 / (imp + lambda), then H of it */
    double mean = 0;
    for (int j = 0; j < LB_QK_K; j++)
        mean += imp[j];
    mean /= LB_QK_K;
    double lambda = DAMP * mean + 1e-30;
    for (int j = 0; j < LB_QK_K; j++)
        c[j] = 1.0 / ((double)imp[j] + lambda);
    for (int len = 1; len < LB_QK_K; len <<= 1)
        for (int i = 0; i < LB_QK_K; i += 2 * len)
            for (int j = i; j < i + len; j++) {
                double a = c[j], b = c[j + len];
                c[j] = a + b;
                c[j + len] = a - b;
            }
    /* a[256][256] = M^-1, factored in place (row-major, upper triangle used) */
    double *a = malloc(sizeof(double) * LB_QK_K * LB_QK_K);
    if (!a) {
        memset(u, 0, sizeof(float) * LB_QK_K * LB_QK_K);
        for (int i = 0; i < LB_QK_K; i++)
            u[i * LB_QK_K + i] = 1;
        return;
    }
    for (int i = 0; i < LB_QK_K; i++)
        for (int k = 0; k < LB_QK_K; k++)
            a[i * LB_QK_K + k] = c[i ^ k] / LB_QK_K;
    for (int i = 0; i < LB_QK_K; i++) {
        double s = a[i * LB_QK_K + i];
        for (int p = 0; p < i; p++)
            s -= a[p * LB_QK_K + i] * a[p * LB_QK_K + i];
        double dii = s > 0 ? sqrt(s) : 1e-12;
        a[i * LB_QK_K + i] = dii;
        for (int k = i + 1; k < LB_QK_K; k++) {
            double t = a[i * LB_QK_K + k];
            for (int p = 0; p < i; p++)
                t -= a[p * LB_QK_K + i] * a[p * LB_QK_K + k];
            a[i * LB_QK_K + k] = t / dii;
        }
    }
    for (int i = 0; i < LB_QK_K; i++)
        for (int k = 0; k < LB_QK_K; k++)
            u[i * LB_QK_K + k] = k >= i ? (float)a[i * LB_QK_K + k] : 0.0f;
    free(a);
}

/* The factors for an importance vector imp[n]; NULL when out of memory.
 * The pointer stays valid until N_CACHE other vectors have been seen, which
 * the file quantizer (one tensor at a time) never reaches mid-tensor. */
const float *lb__lbq_imp_factors(const float *imp, int64_t n)
{
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += imp[i];
    pthread_mutex_lock(&cache_lock);
    const float *r = NULL;
    for (int k = 0; k < N_CACHE && !r; k++)
        if (cache[k].imp == imp && cache[k].n == n && cache[k].sum == sum && cache[k].u)
            r = cache[k].u;
    if (!r) {
        float *u = malloc(sizeof(float) * (size_t)n * LB_QK_K);
        if (u) {
            for (int64_t b = 0; b < n / LB_QK_K; b++)
                block_factor(imp + b * LB_QK_K, u + b * LB_QK_K * LB_QK_K);
            chol_entry *e = &cache[cache_next];
            cache_next = (cache_next + 1) % N_CACHE;
            free(e->u);
            *e = (chol_entry){imp, n, sum, u};
            r = u;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return r;
}

/* ---- the grids: m = 3 or 7, the even odd-integer grid (2q - m), q in 0..m;
 * m = 15, LBQ4's table.  Values are step * level(q). */

static inline float level(int m, int q) { return m == 15 ? (float)lb__lbq4_levels[q] : (float)(2 * q - m); }

/* The largest level. */
static inline float top(int m) { return m == 15 ? 127.0f : (float)m; }

/* Midpoints between neighbouring LBQ4 levels (exact in float). */
static const float LBQ4_MIDS[15] = {-114.5f, -91.5f, -72.5f, -56.0f, -41.0f, -27.0f, -13.5f, 0.0f,
                                    13.5f,   27.0f,  41.0f,  56.0f,  72.5f,  91.5f,  114.5f};

/* q of the level nearest t (t in units of step). */
static inline int nearest(int m, float t)
{
    if (m == 15) {
        int lo = 0, hi = 15; /* the number of midpoints below t, by bisection */
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (t > LBQ4_MIDS[mid])
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }
    int q = lb__qround((t + (float)m) * 0.5f);
    return q < 0 ? 0 : q > m ? m : q;
}

/* ---- scale search */

/* Best step for v[32] on grid m, minimising the squared error; tries a
 * range of clipping points, refits by least squares. */
static float best_step(const float *v, int m)
{
    float amax = 0;
    for (int e = 0; e < 32; e++)
        amax = fmaxf(amax, fabsf(v[e]));
    if (amax == 0)
        return 0;
    float best = amax / top(m), best_err = INFINITY;
    for (int k = 0; k <= 24; k++) {
        float f = 0.6f + 0.05f * (float)k;
        float step = amax / (top(m) * f);
        for (int it = 0; it < 2; it++) {
            double sl = 0, ll = 0;
            for (int e = 0; e < 32; e++) {
                float l = level(m, nearest(m, v[e] / step));
                sl += (double)v[e] * l;
                ll += (double)l * l;
            }
            if (ll > 0 && sl > 0)
                step = (float)(sl / ll);
        }
        double err = 0;
        for (int e = 0; e < 32; e++) {
            double r = v[e] - step * level(m, nearest(m, v[e] / step));
            err += r * r;
        }
        if (err < best_err) {
            best_err = err;
            best = step;
        }
    }
    return best;
}

static double group_err(const float *v, int m, float step)
{
    double err = 0;
    for (int e = 0; e < 32; e++) {
        double r = step > 0 ? v[e] - step * level(m, nearest(m, v[e] / step)) : v[e];
        err += r * r;
    }
    return err;
}

/* The stored d (f16; for LBQ4 128 times the step unit) for a largest group
 * step smax, and the step unit it gives back. */
static float block_d(float smax, int m, lb_f16 *d16)
{
    float dscale = m == 15 ? 128.0f : 1.0f;
    *d16 = lb_f32_to_f16(smax / 16.0f * dscale);
    return lb_f16_to_f32(*d16) / dscale;
}

/* One block already in the rotated basis, with the step unit d fixed: w[256]
 * is updated as errors are fed forward inside the block through u (row
 * stride ldu: u[i * ldu + k], the factor's entries within the block) or
 * rounded plainly when u is NULL.  Fills sc[8] in 1..16 and q[256] in 0..m;
 * returns the largest group step the fed values asked for (which may exceed
 * 16 d: then the groups were clipped). */
static float round_block_d(float *w, const float *u, int64_t ldu, int m, float d, int *sc, uint8_t *q)
{
    float want = 0;
    for (int g = 0; g < 8; g++) {
        float *v = w + 32 * g;
        /* the group's scale from its values as updated so far */
        float bstep = best_step(v, m);
        want = fmaxf(want, bstep);
        int s0 = lb__qround(bstep / d);
        int bs = 1;
        double be = INFINITY;
        for (int s = s0 - 1; s <= s0 + 1; s++) {
            if (s < 1 || s > 16)
                continue;
            double e = group_err(v, m, d * (float)s);
            if (e < be) {
                be = e;
                bs = s;
            }
        }
        if (s0 > 17)
            bs = 16;
        sc[g] = bs;
        float step = d * (float)bs;
        for (int e = 32 * g; e < 32 * g + 32; e++) {
            int qi = nearest(m, w[e] / step);
            q[e] = (uint8_t)qi;
            if (u) {
                const float *ur = u + e * ldu;
                float err = (w[e] - step * level(m, qi)) / ur[e];
                for (int k = e + 1; k < LB_QK_K; k++)
                    w[k] -= err * ur[k];
            }
        }
    }
    return want;
}

/* One block: d from the largest group step of the values as they come in.
 * Fills *d16, sc[8], q[256] (see round_block_d).  With a full Hessian the
 * feedback inside the block can push later groups past 16 d; then the block
 * is rounded again with d from the steps the first pass asked for. */
static void round_block(float *w, const float *u, int64_t ldu, int m, bool refit, lb_f16 *d16, int *sc, uint8_t *q)
{
    float smax = 0;
    for (int g = 0; g < 8; g++)
        smax = fmaxf(smax, best_step(w + 32 * g, m));
    float d = block_d(smax, m, d16);
    if (!(d > 0)) {
        *d16 = lb_f32_to_f16(0);
        for (int g = 0; g < 8; g++)
            sc[g] = 1;
        memset(q, (m + 1) / 2, LB_QK_K);
        return;
    }
    if (!refit || !u) {
        round_block_d(w, u, ldu, m, d, sc, q);
        return;
    }
    float w0[LB_QK_K]; /* [256] the values as they came in */
    memcpy(w0, w, sizeof w0);
    float want = round_block_d(w, u, ldu, m, d, sc, q);
    if (want > 16.0f * d * 1.02f) {
        memcpy(w, w0, sizeof w0);
        float d2 = block_d(want, m, d16);
        round_block_d(w, u, ldu, m, d2, sc, q);
    }
}

/* Block i of a row of type `type` at out gets (d, sc, q). */
static void pack_block(uint32_t type, void *out, int64_t i, lb_f16 d, const int *sc, const uint8_t *q)
{
    uint8_t scales[4];
    for (int g = 0; g < 4; g++)
        scales[g] = (uint8_t)((sc[2 * g] - 1) | (sc[2 * g + 1] - 1) << 4);
    if (type == LB_TYPE_LBQ4) {
        lb_block_lbq4 *b = (lb_block_lbq4 *)out + i;
        b->d = d;
        memcpy(b->scales, scales, 4);
        memset(b->qs, 0, sizeof b->qs);
        for (int e = 0; e < LB_QK_K; e++)
            b->qs[32 * (e / 64) + e % 32] |= (uint8_t)(q[e] << (4 * ((e % 64) / 32)));
    } else if (type == LB_TYPE_LBQ3) {
        lb_block_lbq3 *b = (lb_block_lbq3 *)out + i;
        b->d = d;
        memcpy(b->scales, scales, 4);
        memset(b->qs, 0, sizeof b->qs);
        memset(b->hmask, 0, sizeof b->hmask);
        for (int e = 0; e < LB_QK_K; e++) {
            b->qs[32 * (e / 128) + e % 32] |= (uint8_t)((q[e] & 3) << (2 * ((e % 128) / 32)));
            b->hmask[e % 32] |= (uint8_t)((q[e] >> 2) << (e / 32));
        }
    } else {
        lb_block_lbq2 *b = (lb_block_lbq2 *)out + i;
        b->d = d;
        memcpy(b->scales, scales, 4);
        memset(b->qs, 0, sizeof b->qs);
        for (int e = 0; e < LB_QK_K; e++)
            b->qs[32 * (e / 128) + e % 32] |= (uint8_t)(q[e] << (2 * ((e % 128) / 32)));
    }
}

static int grid_of(uint32_t type) { return type == LB_TYPE_LBQ4 ? 15 : type == LB_TYPE_LBQ3 ? 7 : 3; }

void lb__quantize_row_lbq(uint32_t type, const float *x, void *out, int64_t n, const float *importance)
{
    const float *u = importance ? lb__lbq_imp_factors(importance, n) : NULL;
    int m = grid_of(type);
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        float w[LB_QK_K]; /* [256] rotated, updated as errors are fed forward */
        uint8_t q[LB_QK_K];
        int sc[8];
        lb_f16 d;
        memcpy(w, x + i * LB_QK_K, sizeof w);
        lb__lbq_rotate(w);
        round_block(w, u ? u + i * LB_QK_K * LB_QK_K : NULL, LB_QK_K, m, false, &d, sc, q);
        pack_block(type, out, i, d, sc, q);
    }
}

/* ---- with a full Hessian: the LDLQ driver's callback, one block per group */

typedef struct hess_job {
    uint32_t type;
    uint8_t *out;        /* [rows][row_bytes] */
    size_t row_bytes;
} hess_job;

static void round_cb(void *user, lb_ldlq_group *grp, float *qv)
{
    const hess_job *j = user;
    int m = grid_of(j->type);
    uint8_t q[LB_QK_K];
    int sc[8];
    lb_f16 d16;
    round_block(grp->v, grp->u, grp->ldu, m, true, &d16, sc, q);
    pack_block(j->type, j->out + (size_t)grp->row * j->row_bytes, grp->start / LB_QK_K, d16, sc, q);
    float d = lb_f16_to_f32(d16) / (m == 15 ? 128.0f : 1.0f);
    for (int e = 0; e < LB_QK_K; e++)
        qv[e] = d * (float)sc[e / 32] * level(m, q[e]);
}

lb_status lb__ldlq_new_lbq(const float *h, int64_t cols, lb_ldlq **out, lb_err *err)
{
    if (cols % LB_QK_K)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lbq: row length %" PRId64 " is not a multiple of 256", cols);
    lb_ldlq_params p = lb_ldlq_default_params();
    return lb_ldlq_new(h, cols, &p, out, err);
}

lb_status lb__quantize_ldlq_lbq(uint32_t type, const lb_ldlq *f, const float *w, int64_t rows, void *out,
                                int n_threads, lb_err *err)
{
    if (!lb_ldlq_rotated(f))
        return lb__errf(err, LB_ERR_INVALID_ARG, "lbq: the LDLQ factor must be in the rotated basis");
    hess_job j = {type, out, lb_type_row_bytes(type, lb_ldlq_cols(f))};
    return lb_ldlq_quantize_rows(f, w, rows, LB_QK_K, round_cb, &j, n_threads, err);
}

lb_status lb__quantize_hessian_lbq(uint32_t type, const float *w, int64_t rows, int64_t cols, const float *h,
                                   void *out, int n_threads, lb_err *err)
{
    lb_ldlq *f = NULL;
    lb_status st = lb__ldlq_new_lbq(h, cols, &f, err);
    if (st)
        return st;
    st = lb__quantize_ldlq_lbq(type, f, w, rows, out, n_threads, err);
    lb_ldlq_free(f);
    return st;
}
