/* Tests of the LDLQ driver (quant/ldlq.h): the factor, the feedback against
 * plain rounding under a correlated Hessian, the lbq types with a Hessian,
 * and degenerate or hostile Hessians. */
#include <stdint.h>

#include "check.h"
#include "format/tensor_type.h"
#include "quant/ldlq.h"
#include "quant/quant.h"
#include "quant/quantize.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double gauss(void)
{
    double u = urand() + 1e-12, v = urand();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* h[n][n] = X^T X / t for t tokens of inputs with strongly correlated
 * columns (a few shared factors plus noise, and uneven column scales),
 * as real activations have. */
static void correlated_hessian(float *h, int n, int t)
{
    float *x = malloc(sizeof(float) * (size_t)n * (size_t)t); /* [t][n] */
    float *mix = malloc(sizeof(float) * (size_t)n * 8);      /* [n][8] factor loadings */
    for (int i = 0; i < n * 8; i++)
        mix[i] = (float)gauss();
    for (int r = 0; r < t; r++) {
        double f[8];
        for (int k = 0; k < 8; k++)
            f[k] = gauss();
        for (int c = 0; c < n; c++) {
            double v = 0.3 * gauss();
            for (int k = 0; k < 8; k++)
                v += mix[c * 8 + k] * f[k];
            x[(size_t)r * n + c] = (float)(v * (1 + (c % 7 == 0 ? 3 : 0)));
        }
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            double s = 0;
            for (int r = 0; r < t; r++)
                s += (double)x[(size_t)r * n + i] * x[(size_t)r * n + k];
            h[i * n + k] = (float)(s / t);
        }
    free(x);
    free(mix);
}

/* U H_damped U^T = I when H_damped^-1 = U^T U: checked through one group
 * covering the whole row, whose u is all of U. */
static const float *g_h;
static double g_maxdev;
static void check_u(void *user, lb_ldlq_group *grp, float *q)
{
    double lambda = *(const double *)user;
    int n = grp->g;
    g_maxdev = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            double s = 0; /* (U H U^T)[i][k] = sum_a sum_b U[i][a] H[a][b] U[k][b], a >= i, b >= k */
            for (int a = i; a < n; a++)
                for (int b = k; b < n; b++)
                    s += (double)grp->u[i * grp->ldu + a] * ((double)g_h[a * n + b] + (a == b ? lambda : 0)) *
                         grp->u[k * grp->ldu + b];
            double dev = fabs(s - (i == k));
            g_maxdev = dev > g_maxdev ? dev : g_maxdev;
        }
    for (int i = 0; i < n; i++)
        q[i] = grp->v[i];
}

static void test_factor_inverts(void)
{
    enum { N = 48 };
    float *h = malloc(sizeof(float) * N * N), w[N] = {0};
    correlated_hessian(h, N, 400);
    double mean = 0;
    for (int i = 0; i < N; i++)
        mean += h[i * N + i];
    double lambda = 1e-3 * mean / N;
    lb_ldlq_params p = {1e-3, false};
    lb_ldlq *f = NULL;
    CHECK(lb_ldlq_new(h, N, &p, &f, NULL) == LB_OK);
    CHECK(f && lb_ldlq_cols(f) == N && !lb_ldlq_rotated(f));
    g_h = h;
    g_maxdev = 1;
    CHECK(lb_ldlq_quantize_rows(f, w, 1, N, check_u, &lambda, 1, NULL) == LB_OK);
    CHECKF(g_maxdev < 2e-3, "U H U^T deviates from I by %g", g_maxdev);
    lb_ldlq_free(f);
    free(h);
}

/* rounding to the integer grid, value by value with feedback inside the group */
static void round_int_feed(void *user, lb_ldlq_group *grp, float *q)
{
    (void)user;
    for (int i = 0; i < grp->g; i++) {
        q[i] = (float)floor(grp->v[i] + 0.5);
        lb_ldlq_feed(grp, i, q[i]);
    }
}
/* the same rounding without feedback inside the group */
static void round_int_plain(void *user, lb_ldlq_group *grp, float *q)
{
    float **store = user;
    for (int i = 0; i < grp->g; i++)
        q[i] = (float)floor(grp->v[i] + 0.5);
    if (store) {
        const lb_ldlq_group *g = grp;
        memcpy(store[g->row] + g->start, q, sizeof(float) * (size_t)g->g);
    }
}
/* records what it rounded to, into rows of user[row] */
static void round_int_feed_store(void *user, lb_ldlq_group *grp, float *q)
{
    float **store = user;
    round_int_feed(NULL, grp, q);
    memcpy(store[grp->row] + grp->start, q, sizeof(float) * (size_t)grp->g);
}

static void test_feedback_beats_plain_rounding(void)
{
    enum { N = 64, R = 6 };
    float *h = malloc(sizeof(float) * N * N), w[R][N], qa[R][N], qb[R][N], qc[R][N];
    correlated_hessian(h, N, 500);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < N; c++)
            w[r][c] = (float)(2.5 * gauss());
    lb_ldlq_params p = {0.01, false};
    lb_ldlq *f = NULL;
    CHECK(lb_ldlq_new(h, N, &p, &f, NULL) == LB_OK);
    float *sa[R], *sb[R], *sc[R];
    for (int r = 0; r < R; r++) {
        sa[r] = qa[r];
        sb[r] = qb[r];
        sc[r] = qc[r];
    }
    /* g = 1, g = 8 with feedback inside the group, g = 16 likewise: the same algorithm */
    CHECK(lb_ldlq_quantize_rows(f, &w[0][0], R, 1, round_int_feed_store, sa, 2, NULL) == LB_OK);
    CHECK(lb_ldlq_quantize_rows(f, &w[0][0], R, 8, round_int_feed_store, sb, 1, NULL) == LB_OK);
    CHECK(lb_ldlq_quantize_rows(f, &w[0][0], R, 16, round_int_feed_store, sc, 2, NULL) == LB_OK);
    int differ = 0;
    for (int r = 0; r < R; r++)
        for (int c = 0; c < N; c++)
            differ += qa[r][c] != qb[r][c] || qa[r][c] != qc[r][c];
    CHECKF(differ <= 2, "%d of %d values differ between group sizes (float rounding only)", differ, R * N);
    double e_ldlq = 0, e_plain = 0;
    for (int r = 0; r < R; r++) {
        float ea[N], ep[N];
        for (int c = 0; c < N; c++) {
            ea[c] = w[r][c] - qa[r][c];
            ep[c] = w[r][c] - floorf(w[r][c] + 0.5f);
        }
        e_ldlq += lb_ldlq_quad(h, ea, N);
        e_plain += lb_ldlq_quad(h, ep, N);
    }
    printf("  output error: %.4g with feedback, %.4g plain\n", e_ldlq, e_plain);
    CHECKF(e_ldlq < 0.6 * e_plain, "output error with feedback %g, plain rounding %g", e_ldlq, e_plain);
    /* a group rounded without inner feedback still gets the feedback across groups */
    CHECK(lb_ldlq_quantize_rows(f, &w[0][0], R, 16, round_int_plain, sc, 2, NULL) == LB_OK);
    double e_block = 0;
    for (int r = 0; r < R; r++) {
        float eb[N];
        for (int c = 0; c < N; c++)
            eb[c] = w[r][c] - qc[r][c];
        e_block += lb_ldlq_quad(h, eb, N);
    }
    CHECKF(e_block < e_plain, "block feedback %g, plain %g", e_block, e_plain);
    CHECK(lb_ldlq_quantize_rows(f, &w[0][0], R, 7, round_int_feed, NULL, 1, NULL) == LB_ERR_INVALID_ARG);
    lb_ldlq_free(f);
    free(h);
}

/* lbq2/lbq3/lbq4 with a correlated Hessian: a lower output error than the
 * row quantizer with the Hessian's diagonal as importance, and valid blocks. */
static void test_lbq_with_hessian(void)
{
    enum { N = 512, R = 24 };
    float *h = malloc(sizeof(float) * N * N), *w = malloc(sizeof(float) * R * N), *y = malloc(sizeof(float) * N);
    float *e = malloc(sizeof(float) * N), imp[N];
    uint8_t *out = malloc(200 * R * 2), *out2 = malloc(200 * R * 2);
    correlated_hessian(h, N, 1200);
    for (int i = 0; i < R * N; i++)
        w[i] = (float)(0.02 * gauss());
    for (int c = 0; c < N; c++)
        imp[c] = h[c * N + c];
    const uint32_t types[3] = {LB_TYPE_LBQ2, LB_TYPE_LBQ3, LB_TYPE_LBQ4};
    for (int t = 0; t < 3; t++) {
        uint32_t ty = types[t];
        size_t rb = lb_type_row_bytes(ty, N);
        CHECK(lb_quantize_hessian_supported(ty));
        CHECK(lb_quantize_hessian(ty, w, R, N, h, imp, out, 2, NULL) == LB_OK);
        for (int r = 0; r < R; r++)
            lb_quantize_row(ty, w + r * N, out2 + r * rb, N, imp);
        double eh = 0, ed = 0, sig = 0;
        int finite = 1;
        for (int r = 0; r < R; r++) {
            lb_quant_ref(ty)->dequant(out + r * rb, y, N);
            for (int c = 0; c < N; c++) {
                finite &= isfinite(y[c]);
                e[c] = w[r * N + c] - y[c];
            }
            eh += lb_ldlq_quad(h, e, N);
            lb_quant_ref(ty)->dequant(out2 + r * rb, y, N);
            for (int c = 0; c < N; c++)
                e[c] = w[r * N + c] - y[c];
            ed += lb_ldlq_quad(h, e, N);
            sig += lb_ldlq_quad(h, w + r * N, N);
        }
        CHECK(finite);
        printf("  %s: relative output error %.4f with H, %.4f with its diagonal as importance\n",
               lb_type_layout_of(ty)->name, eh / sig, ed / sig);
        CHECKF(eh < 0.8 * ed, "type %u: relative output error with H %.4f, with its diagonal %.4f", ty, eh / sig,
               ed / sig);
        /* without a Hessian it is the row quantizer */
        CHECK(lb_quantize_hessian(ty, w, R, N, NULL, imp, out, 1, NULL) == LB_OK);
        CHECK(!memcmp(out, out2, rb * R));
    }
    free(h);
    free(w);
    free(y);
    free(e);
    free(out);
    free(out2);
}

/* zero columns, rank deficiency, all zeros: finite factors; NaN rejected */
static void test_degenerate_hessians(void)
{
    enum { N = 256, R = 4 };
    float *h = calloc(N * N, sizeof(float)), *w = malloc(sizeof(float) * R * N), *y = malloc(sizeof(float) * N);
    uint8_t out[R * 70];
    for (int i = 0; i < R * N; i++)
        w[i] = (float)gauss();
    lb_err err = {0};
    /* all zero */
    CHECK(lb_quantize_hessian(LB_TYPE_LBQ2, w, R, N, h, NULL, out, 1, &err) == LB_OK);
    /* rank one, half the columns dead */
    for (int i = 0; i < N; i += 2)
        for (int k = 0; k < N; k += 2)
            h[i * N + k] = 1.0f;
    CHECK(lb_quantize_hessian(LB_TYPE_LBQ2, w, R, N, h, NULL, out, 1, &err) == LB_OK);
    int finite = 1;
    for (int r = 0; r < R; r++) {
        lb_quant_ref(LB_TYPE_LBQ2)->dequant(out + r * 70, y, N);
        for (int c = 0; c < N; c++)
            finite &= isfinite(y[c]) && fabsf(y[c]) < 100;
    }
    CHECK(finite);
    h[3 * N + 5] = NAN;
    CHECK(lb_quantize_hessian(LB_TYPE_LBQ2, w, R, N, h, NULL, out, 1, &err) == LB_ERR_RANGE);
    CHECKF(strstr(err.msg, "[3][5]") != NULL, "message: %s", err.msg);
    lb_ldlq *f = NULL;
    h[3 * N + 5] = 1;
    lb_ldlq_params p = lb_ldlq_default_params();
    CHECK(lb_ldlq_new(h, 100, &p, &f, NULL) == LB_ERR_INVALID_ARG && !f); /* rotated needs multiples of 256 */
    free(h);
    free(w);
    free(y);
}

int main(void)
{
    RUN(test_factor_inverts);
    RUN(test_feedback_beats_plain_rounding);
    RUN(test_lbq_with_hessian);
    RUN(test_degenerate_hessians);
    return check_done();
}
