/* The quality quantizer for LBQV: group scales searched against the actual
 * codebook rounding, and codewords chosen in order with error feedback
 * (LDLQ) so that the importance-weighted error of the ORIGINAL weights is
 * what gets minimised, as lbq_quantize.c does for the scalar grids.
 *
 * Why codewords are still chosen by plain Euclidean distance: after the
 * rotation the importance metric is M = R diag(imp) R^T, whose diagonal is
 * the same for every element (mean imp), so per-codeword weights would be
 * flat; its off-diagonal part is what the feedback handles. */
#include "quant/lbqv.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/lbq.h"
#include "quant/ldlq.h"

/* As lbq_quantize.c: damping as a fraction of the block's mean importance. */
#define DAMP 1.0

/* Codeword units per standard deviation (see lbqv.c) */
#define UNITS_PER_SIGMA 4.15f

/* The Cholesky factors of the importance-weighted metric are lbq2/3/4's
 * (lb__lbq_imp_factors, lbq_quantize.c): the same rotated blocks, the same M. */


/* Squared error of coding the 32 values v at the given step (no feedback). */
static float group_err(const float *v, float step)
{
    float err = 0, inv = 1.0f / step;
    for (int k = 0; k < 4; k++) {
        float t[8];
        uint8_t idx, sg;
        for (int j = 0; j < 8; j++)
            t[j] = v[8 * k + j] * inv;
        err += lb__lbqv_nearest(t, &idx, &sg);
    }
    return err * step * step;
}

/* One block already in the rotated basis: w[256] is updated as errors are
 * fed forward inside the block through u (u[i * ldu + k], the factor's
 * entries within the block), or coded plainly when u is NULL.  qv[256] (or
 * NULL) receives the coded values. */
static void quantize_block(float *w, const float *u, int64_t ldu, lb_block_lbqv *b, float *qv)
{
    float smax = 0;
    for (int g = 0; g < 8; g++) {
        float ss = 0;
        for (int e = 32 * g; e < 32 * g + 32; e++)
            ss += w[e] * w[e];
        smax = fmaxf(smax, sqrtf(ss / 32) / UNITS_PER_SIGMA);
    }
    /* headroom: feedback can raise a later group's spread above the first estimate */
    b->d = lb_f32_to_f16(smax * 16.0f / 15.0f);
    float d = lb_f16_to_f32(b->d) * 0.0625f;
    memset(b->scales, 0, sizeof b->scales);
    if (!(d > 0)) {
        b->d = lb_f32_to_f16(0);
        memset(b->idx, 0, sizeof b->idx);
        memset(b->sg, 0, sizeof b->sg);
        if (qv)
            memset(qv, 0, sizeof(float) * LB_QK_K);
        return;
    }
    for (int g = 0; g < 8; g++) {
        float *v = w + 32 * g, ss = 0;
        for (int e = 0; e < 32; e++)
            ss += v[e] * v[e];
        int s0 = (int)lrintf(sqrtf(ss / 32) / UNITS_PER_SIGMA / d);
        int bs = 1;
        float be = INFINITY;
        for (int s = s0 - 1; s <= s0 + 1; s++) {
            if (s < 1 || s > 16)
                continue;
            float e = group_err(v, d * (float)s);
            if (e < be) {
                be = e;
                bs = s;
            }
        }
        if (s0 > 17) /* outside the range searched above */
            bs = 16;
        b->scales[g / 2] |= (uint8_t)((bs - 1) << (4 * (g % 2)));
        float step = d * (float)bs, inv = 1.0f / step;
        for (int k = 4 * g; k < 4 * g + 4; k++) {
            float t[8];
            for (int j = 0; j < 8; j++)
                t[j] = w[8 * k + j] * inv;
            lb__lbqv_nearest(t, &b->idx[k], &b->sg[k]);
            int8_t c[8];
            lb__lbqv_codeword(b->idx[k], b->sg[k], c);
            if (qv)
                for (int j = 0; j < 8; j++)
                    qv[8 * k + j] = step * (float)c[j];
            if (!u)
                continue;
            for (int j = 0; j < 8; j++) {
                int e = 8 * k + j;
                const float *ur = u + e * ldu;
                float err = (w[e] - step * (float)c[j]) / ur[e];
                for (int m = e + 1; m < LB_QK_K; m++)
                    w[m] -= err * ur[m];
            }
        }
    }
}

void lb__quantize_row_lbqv(const float *x, void *out, int64_t n, const float *importance)
{
    const float *u = importance ? lb__lbq_imp_factors(importance, n) : NULL;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        float w[LB_QK_K]; /* [256] rotated, updated as errors are fed forward */
        memcpy(w, x + i * LB_QK_K, sizeof w);
        lb__lbq_rotate(w);
        quantize_block(w, u ? u + i * LB_QK_K * LB_QK_K : NULL, LB_QK_K, (lb_block_lbqv *)out + i, NULL);
    }
}

/* ---- with a full Hessian: the LDLQ driver (quant/ldlq.h) hands over one
 * 256-block at a time, in the rotated basis, with the feedback of the
 * earlier blocks applied; inside the block the codewords feed each other
 * through the factor's diagonal block, as above. */

typedef struct {
    uint8_t *out;     /* [rows][row_bytes] */
    size_t row_bytes;
} hess_job;

static void round_cb(void *user, lb_ldlq_group *grp, float *qv)
{
    const hess_job *j = user;
    lb_block_lbqv *b = (lb_block_lbqv *)(j->out + (size_t)grp->row * j->row_bytes) + grp->start / LB_QK_K;
    quantize_block(grp->v, grp->u, grp->ldu, b, qv);
}

lb_status lb__quantize_hessian_lbqv(const float *w, int64_t rows, int64_t cols, const float *h, void *out,
                                    int n_threads, lb_err *err)
{
    if (cols % LB_QK_K)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lbqv: row length %" PRId64 " is not a multiple of 256", cols);
    lb_ldlq_params p = lb_ldlq_default_params();
    lb_ldlq *f = NULL;
    lb_status st = lb_ldlq_new(h, cols, &p, &f, err);
    if (st)
        return st;
    hess_job j = {out, lb_type_row_bytes(LB_TYPE_LBQV, cols)};
    st = lb_ldlq_quantize_rows(f, w, rows, LB_QK_K, round_cb, &j, n_threads, err);
    lb_ldlq_free(f);
    return st;
}
