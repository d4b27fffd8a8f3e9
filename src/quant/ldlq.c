/* The LDLQ driver: factor a weight's Hessian (rotated into the lbq basis when
 * asked), then round rows group by group through a type's callback with the
 * error fed forward; and the per-type dispatch of Hessian-aware quantizers. */
#include "quant/ldlq.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "format/tensor_type.h"
#include "quant/gptq_k.h"
#include "quant/lbq.h"
#include "quant/lbqv.h"
#include "quant/quantize.h"

struct lb_ldlq {
    int64_t n;
    bool rotate;
    float *u;    /* [n][n] upper Cholesky factor of the damped H'^-1, row-major (lower part zero) */
    float *wt;   /* [n] 1 / U_ii^2 */
};

lb_ldlq_params lb_ldlq_default_params(void)
{
    /* GPTQ's usual damping; LB_LDLQ_DAMP overrides it for experiments. */
    const char *env = getenv("LB_LDLQ_DAMP");
    double v = env ? atof(env) : 0;
    lb_ldlq_params p = {v > 0 ? v : 0.01, true};
    return p;
}

int64_t lb_ldlq_cols(const lb_ldlq *f) { return f ? f->n : 0; }
bool lb_ldlq_rotated(const lb_ldlq *f) { return f && f->rotate; }
const float *lb_ldlq_factor(const lb_ldlq *f) { return f ? f->u : NULL; }

void lb_ldlq_free(lb_ldlq *f)
{
    if (!f)
        return;
    free(f->u);
    free(f->wt);
    free(f);
}

/* Dot product of a[0..n) and b[0..n) with four partial sums, so the
 * compiler can keep several multiply-adds in flight. */
static double dot(const double *a, const double *b, int64_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
    }
    for (; k < n; k++)
        s0 += a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

/* In-place lower Cholesky a = L L^T of a[n][n] (row-major; the lower
 * triangle gets L, the upper is left alone).  False on a non-positive pivot. */
static bool cholesky_lower(double *a, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double *ai = a + i * n;
        for (int64_t j = 0; j <= i; j++) {
            const double *aj = a + j * n;
            double s = ai[j] - dot(ai, aj, j);
            if (i == j) {
                if (!(s > 0))
                    return false;
                ai[i] = sqrt(s);
            } else {
                ai[j] = s / aj[j];
            }
        }
    }
    return true;
}

/* U with H^-1 = U^T U, U upper, from h[n][n] (damped, symmetric) in a, with
 * one Cholesky and one triangular inverse: reversing the order of rows and
 * columns (P), P H P = L L^T gives H = M M^T with M = P L P upper, so
 * H^-1 = M^-T M^-1 and U = M^-1.  a is overwritten; m[n][n] is scratch;
 * u gets U (lower part zero).  False if H is not positive definite. */
static bool inverse_upper_factor(double *a, double *m, int64_t n, float *u)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < n; k++)
            m[i * n + k] = a[(n - 1 - i) * n + (n - 1 - k)];
    if (!cholesky_lower(m, n))
        return false;
    /* a = M^T, lower: a[i][k] = M[k][i] = L[n-1-k][n-1-i] for k >= i */
    memset(a, 0, sizeof(double) * (size_t)n * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = i; k < n; k++)
            a[k * n + i] = m[(n - 1 - i) * n + (n - 1 - k)];
    /* U^T = (M^T)^-1 = (M^-1)^T, lower: forward substitution, row by row,
     * into m: row i of X = A^-1 solves sum_j A[i][j] X[j][.] = e_i */
    memset(m, 0, sizeof(double) * (size_t)n * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        const double *ai = a + i * n;
        double *xi = m + i * n;
        for (int64_t j = 0; j < i; j++) {
            double aij = ai[j];
            const double *xj = m + j * n;
            for (int64_t k = 0; k <= j; k++)
                xi[k] -= aij * xj[k];
        }
        double d = 1.0 / ai[i];
        for (int64_t k = 0; k < i; k++)
            xi[k] *= d;
        xi[i] = d;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < n; k++)
            u[i * n + k] = k >= i ? (float)m[k * n + i] : 0.0f;
    return true;
}

/* Rotates every 256-block of the row vector r[n] by the lbq rotation. */
static void rotate_row_d(double *r, int64_t n)
{
    float t[LB_QK_K]; /* [256] */
    for (int64_t b = 0; b < n; b += LB_QK_K) {
        for (int k = 0; k < LB_QK_K; k++)
            t[k] = (float)r[b + k];
        lb__lbq_rotate(t);
        for (int k = 0; k < LB_QK_K; k++)
            r[b + k] = t[k];
    }
}

lb_status lb_ldlq_new(const float *h, int64_t n, const lb_ldlq_params *p, lb_ldlq **out, lb_err *err)
{
    lb_ldlq_params def = lb_ldlq_default_params();
    if (!p)
        p = &def;
    if (!h || !out || n < 1 || (p->rotate && n % LB_QK_K) || !(p->damp >= 0))
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_ldlq_new: bad arguments (n %" PRId64 "%s)", n,
                        p->rotate ? ", rotated: n must be a multiple of 256" : "");
    for (int64_t i = 0; i < n * n; i++)
        if (!isfinite(h[i]))
            return lb__errf(err, LB_ERR_RANGE, "Hessian element [%" PRId64 "][%" PRId64 "] is %g", i / n, i % n,
                            (double)h[i]);
    size_t nn = (size_t)n * (size_t)n;
    double *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    double *col = malloc((size_t)n * sizeof *col);
    lb_ldlq *f = calloc(1, sizeof *f);
    lb_status st = LB_OK;
    if (!a || !b || !c || !col || !f || !(f->u = malloc(nn * sizeof *f->u)) ||
        !(f->wt = malloc((size_t)n * sizeof *f->wt))) {
        st = lb__errf(err, LB_ERR_NOMEM, "LDLQ: out of memory for a %" PRId64 " x %" PRId64 " Hessian", n, n);
        goto out;
    }
    f->n = n;
    f->rotate = p->rotate;
    /* b = H' = B H B^T: rotate the rows, then the columns */
    for (size_t i = 0; i < nn; i++)
        b[i] = h[i];
    if (p->rotate) {
        for (int64_t r = 0; r < n; r++)
            rotate_row_d(b + r * n, n);
        for (int64_t k = 0; k < n; k++) {
            for (int64_t r = 0; r < n; r++)
                col[r] = b[r * n + k];
            rotate_row_d(col, n);
            for (int64_t r = 0; r < n; r++)
                b[r * n + k] = col[r];
        }
        for (int64_t r = 0; r < n; r++) /* symmetric again after float rounding */
            for (int64_t k = r + 1; k < n; k++)
                b[r * n + k] = b[k * n + r] = 0.5 * (b[r * n + k] + b[k * n + r]);
    }
    double mean = 0;
    for (int64_t i = 0; i < n; i++)
        mean += b[i * n + i];
    mean /= (double)n;
    if (!(mean > 0))
        mean = 1;
    /* Damping first as asked; should the factorisation fail (rounding on a
     * nearly singular H), ten times more, up to a few times. */
    double damp = p->damp > 0 ? p->damp : 1e-6;
    bool ok = false;
    for (int attempt = 0; attempt < 6 && !ok; attempt++, damp *= 10) {
        memcpy(a, b, nn * sizeof *a);
        for (int64_t i = 0; i < n; i++)
            a[i * n + i] += damp * mean;
        ok = inverse_upper_factor(a, c, n, f->u);
    }
    if (!ok) {
        st = lb__errf(err, LB_ERR_RANGE, "LDLQ: the %" PRId64 " x %" PRId64 " Hessian cannot be factored even damped",
                      n, n);
        goto out;
    }
    for (int64_t i = 0; i < n; i++)
        f->wt[i] = 1.0f / (f->u[i * n + i] * f->u[i * n + i]);
out:
    free(a);
    free(b);
    free(c);
    free(col);
    if (st)
        lb_ldlq_free(f);
    else
        *out = f;
    return st;
}

void lb_ldlq_feed(lb_ldlq_group *grp, int i, float qi)
{
    const float *ui = grp->u + (int64_t)i * grp->ldu;
    float e = (grp->v[i] - qi) / ui[i];
    for (int k = i + 1; k < grp->g; k++)
        grp->v[k] -= e * ui[k];
}

/* ---- the driver */

enum { ROWS_AT_ONCE = 8 }; /* rows fed together, so each row of U is read once per 8 rows */

typedef struct drive_job {
    const lb_ldlq *f;
    const float *w;       /* [rows][n] */
    int64_t rows;
    int g;
    lb_ldlq_round_fn fn;
    void *user;
    float *scratch;       /* [nth][ROWS_AT_ONCE * n + 4 * g] */
} drive_job;

static void drive_run(void *ctx, int ith, int nth)
{
    drive_job *j = ctx;
    const lb_ldlq *f = j->f;
    int64_t n = f->n;
    int g = j->g;
    int64_t nb = (j->rows + ROWS_AT_ONCE - 1) / ROWS_AT_ONCE, b0, b1;
    lb_split(nb, ith, nth, &b0, &b1);
    float *wr = j->scratch + (size_t)ith * ((size_t)ROWS_AT_ONCE * (size_t)n + 3 * (size_t)g); /* [8][n] */
    float *v = wr + (size_t)ROWS_AT_ONCE * (size_t)n; /* [g] handed to the callback */
    float *q = v + g;                                 /* [g] its rounding */
    float *e = q + g;                                 /* [g] e U_GG^-1, e the group's error */
    for (int64_t b = b0; b < b1; b++) {
        int64_t r0 = b * ROWS_AT_ONCE, nr = j->rows - r0 < ROWS_AT_ONCE ? j->rows - r0 : ROWS_AT_ONCE;
        for (int64_t r = 0; r < nr; r++) {
            float *x = wr + r * n;
            memcpy(x, j->w + (r0 + r) * n, (size_t)n * sizeof *x);
            if (f->rotate)
                for (int64_t c = 0; c < n; c += LB_QK_K)
                    lb__lbq_rotate(x + c);
        }
        for (int64_t s = 0; s < n; s += g) {
            const float *ug = f->u + s * n + s;
            for (int64_t r = 0; r < nr; r++) {
                float *x = wr + r * n;
                memcpy(v, x + s, (size_t)g * sizeof *v);
                lb_ldlq_group grp = {r0 + r, s, g, v, f->wt + s, ug, n};
                j->fn(j->user, &grp, q);
                /* e U_GG^-1 by forward substitution (U_GG upper: row vector times its inverse) */
                for (int k = 0; k < g; k++) {
                    float t = x[s + k] - q[k];
                    for (int i = 0; i < k; i++)
                        t -= e[i] * ug[(int64_t)i * n + k];
                    e[k] = t / ug[(int64_t)k * n + k];
                }
                /* the rest of the row: x[rest] -= sum_i e_i U[s+i][rest] */
                for (int i = 0; i < g; i++) {
                    const float *ui = f->u + (s + i) * n;
                    float ei = e[i];
                    if (ei == 0)
                        continue;
                    for (int64_t k = s + g; k < n; k++)
                        x[k] -= ei * ui[k];
                }
            }
        }
    }
}

lb_status lb_ldlq_quantize_rows(const lb_ldlq *f, const float *w, int64_t rows, int g, lb_ldlq_round_fn fn,
                                void *user, int n_threads, lb_err *err)
{
    if (!f || !w || rows < 0 || g < 1 || f->n % g || !fn)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_ldlq_quantize_rows: bad arguments (group %d, row length %" PRId64 ")",
                        g, f ? f->n : 0);
    if (rows == 0)
        return LB_OK;
    int nth = n_threads > 0 ? n_threads : lb_cpu_count();
    int64_t nb = (rows + ROWS_AT_ONCE - 1) / ROWS_AT_ONCE;
    if (nth > nb)
        nth = (int)nb;
    lb_pool *pool = nth > 1 ? lb_pool_new(nth) : NULL;
    nth = lb_pool_size(pool);
    drive_job j = {f, w, rows, g, fn, user, NULL};
    j.scratch = malloc((size_t)nth * ((size_t)ROWS_AT_ONCE * (size_t)f->n + 3 * (size_t)g) * sizeof(float));
    if (!j.scratch) {
        lb_pool_free(pool);
        return lb__errf(err, LB_ERR_NOMEM, "LDLQ: out of memory for %d threads' rows", nth);
    }
    lb_pool_run(pool, drive_run, &j);
    free(j.scratch);
    lb_pool_free(pool);
    return LB_OK;
}

double lb_ldlq_quad(const float *h, const float *x, int64_t n)
{
    /* y = H x as a sum of rows (H is symmetric): contiguous axpys that
     * vectorise, in float, then x . y in double */
    float *y = calloc((size_t)n, sizeof *y); /* [n] */
    double s = 0;
    if (!y) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < n; k++)
                s += (double)x[i] * h[i * n + k] * x[k];
        return s;
    }
    for (int64_t i = 0; i < n; i++) {
        float xi = x[i];
        const float *hi = h + i * n;
        if (xi != 0)
            for (int64_t k = 0; k < n; k++)
                y[k] += xi * hi[k];
    }
    for (int64_t k = 0; k < n; k++)
        s += (double)x[k] * y[k];
    free(y);
    return s;
}

/* ---- whole tensors */

bool lb_quantize_hessian_supported(uint32_t type)
{
    switch (type) {
    case LB_TYPE_LBQ2: case LB_TYPE_LBQ3: case LB_TYPE_LBQ4: case LB_TYPE_LBQV:
    case LB_TYPE_Q2_K: case LB_TYPE_Q3_K: case LB_TYPE_Q4_K: case LB_TYPE_Q5_K: case LB_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

lb_status lb_quantize_hessian(uint32_t type, const float *w, int64_t rows, int64_t cols, const float *h,
                              const float *importance, void *out, int n_threads, lb_err *err)
{
    if (!w || !out || rows < 0 || cols < 1)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_quantize_hessian: bad arguments");
    if (h && (type == LB_TYPE_LBQ2 || type == LB_TYPE_LBQ3 || type == LB_TYPE_LBQ4))
        return lb__quantize_hessian_lbq(type, w, rows, cols, h, out, n_threads, err);
    if (h && type == LB_TYPE_LBQV)
        return lb__quantize_hessian_lbqv(w, rows, cols, h, out, n_threads, err);
    if (h && lb_quantize_hessian_supported(type)) {
        lb_status st = lb_gptq_k_quantize(type, w, rows, cols, h, importance, out, n_threads);
        return st ? lb__errf(err, st, "GPTQ for %s (%" PRId64 " x %" PRId64 ") failed",
                             lb_type_layout_of(type)->name, rows, cols) : LB_OK;
    }
    size_t rb = lb_type_row_bytes(type, cols);
    for (int64_t r = 0; r < rows; r++)
        lb_quantize_row(type, w + r * cols, (uint8_t *)out + (size_t)r * rb, cols, importance);
    return LB_OK;
}
