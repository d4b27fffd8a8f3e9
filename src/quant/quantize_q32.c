/* Quality quantizers for the 32-element families Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0: the weighted scale (and offset) search of search.c, then a look at
 * the neighbouring half-precision values of the stored scale (and offset),
 * because rounding d to f16 moves every element's best level. */
#include "quant/quantize.h"

#include <math.h>
#include <string.h>

#include "format/tensor_type.h"
#include "quant/blocks.h"

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* f16 bit patterns within `radius` ulps of v, same sign, finite; returns the count. */
static int f16_neighbours(float v, int radius, lb_f16 *out)
{
    lb_f16 h = lb_f32_to_f16(v);
    int n = 0;
    out[n++] = h;
    for (int r = 1; r <= radius; r++) {
        int mag = h & 0x7fff, sign = h & 0x8000;
        if (mag + r < 0x7c00)
            out[n++] = (lb_f16)(sign | (mag + r));
        if (mag - r > 0)
            out[n++] = (lb_f16)(sign | (mag - r));
    }
    return n;
}

/* Weighted error of x ~= q * d with q the nearest level in [lo, hi]; fills q when given. */
static double sym_err(const float *x, const float *w, float d, int lo, int hi, int *q)
{
    double e = 0;
    float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < LB_QK; j++) {
        int l = clampi(lb__qround(x[j] * id), lo, hi);
        float r = (float)l * d - x[j];
        e += (double)(w[j] * r * r);
        if (q)
            q[j] = l;
    }
    return e;
}

/* Weighted error of x ~= q * d + m (the dequantizer's order: product, then sum). */
static double aff_err(const float *x, const float *w, float d, float m, int nmax, int *q)
{
    double e = 0;
    float id = d != 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < LB_QK; j++) {
        int l = d != 0 ? clampi(lb__qround((x[j] - m) * id), 0, nmax) : 0;
        float v = (float)l * d;
        float r = (v + m) - x[j];
        e += (double)(w[j] * r * r);
        if (q)
            q[j] = l;
    }
    return e;
}

/* Best f16 scale near the searched one; q[32] gets the quants (offset removed). */
static lb_f16 fit_sym_block(const float *x, const float *w, int lo, int hi, int *q)
{
    int8_t L[LB_QK]; /* [32] */
    float d = lb__search_sym(LB_QK, x, w, lo, hi, L);
    lb_f16 cand[5], best = 0;
    int nc = f16_neighbours(d, 2, cand);
    double best_e = INFINITY;
    for (int c = 0; c < nc; c++) {
        double e = sym_err(x, w, lb_f16_to_f32(cand[c]), lo, hi, NULL);
        if (e < best_e) {
            best_e = e;
            best = cand[c];
        }
    }
    sym_err(x, w, lb_f16_to_f32(best), lo, hi, q);
    return best;
}

static void fit_aff_block(const float *x, const float *w, int nmax, lb_f16 *d16, lb_f16 *m16, int *q)
{
    uint8_t L[LB_QK]; /* [32] */
    float b;
    float d = lb__search_affine(LB_QK, x, w, nmax, false, L, &b);
    lb_f16 cd[3], cm[3];
    int nd = f16_neighbours(d, 1, cd), nm = f16_neighbours(b, 1, cm);
    double best_e = INFINITY;
    *d16 = cd[0];
    *m16 = cm[0];
    for (int i = 0; i < nd; i++) {
        for (int k = 0; k < nm; k++) {
            double e = aff_err(x, w, lb_f16_to_f32(cd[i]), lb_f16_to_f32(cm[k]), nmax, NULL);
            if (e < best_e) {
                best_e = e;
                *d16 = cd[i];
                *m16 = cm[k];
            }
        }
    }
    aff_err(x, w, lb_f16_to_f32(*d16), lb_f16_to_f32(*m16), nmax, q);
}

static void pack4(const int *q, uint8_t *qs)
{
    for (int j = 0; j < LB_QK / 2; j++)
        qs[j] = (uint8_t)(q[j] | (q[j + LB_QK / 2] << 4));
}

/* 5-bit values: low nibbles as pack4, bit 4 of element j into bit j of qh (little-endian). */
static void pack5(const int *q, uint8_t *qs, uint8_t *qh)
{
    uint32_t h = 0;
    for (int j = 0; j < LB_QK / 2; j++)
        qs[j] = (uint8_t)((q[j] & 0xF) | ((q[j + LB_QK / 2] & 0xF) << 4));
    for (int j = 0; j < LB_QK; j++)
        h |= (uint32_t)((q[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; k++)
        qh[k] = (uint8_t)(h >> (8 * k));
}

void lb__quantize_row_q32(uint32_t type, const float *x, void *out, int64_t n, const float *importance)
{
    float w[LB_QK]; /* [32] element weights of the current block */
    int q[LB_QK];   /* [32] quants of the current block */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        const float *xb = x + i * LB_QK;
        lb__quant_weights(xb, importance ? importance + i * LB_QK : NULL, LB_QK, w);
        switch (type) {
        case LB_TYPE_Q4_0: {
            lb_block_q4_0 *y = (lb_block_q4_0 *)out + i;
            y->d = fit_sym_block(xb, w, -8, 7, q);
            for (int j = 0; j < LB_QK; j++)
                q[j] += 8;
            pack4(q, y->qs);
            break;
        }
        case LB_TYPE_Q5_0: {
            lb_block_q5_0 *y = (lb_block_q5_0 *)out + i;
            y->d = fit_sym_block(xb, w, -16, 15, q);
            for (int j = 0; j < LB_QK; j++)
                q[j] += 16;
            pack5(q, y->qs, y->qh);
            break;
        }
        case LB_TYPE_Q8_0: {
            /* -128 is left out, as llama.cpp does: SIMD dot products take |q|. */
            lb_block_q8_0 *y = (lb_block_q8_0 *)out + i;
            y->d = fit_sym_block(xb, w, -127, 127, q);
            for (int j = 0; j < LB_QK; j++)
                y->qs[j] = (int8_t)q[j];
            break;
        }
        case LB_TYPE_Q4_1: {
            lb_block_q4_1 *y = (lb_block_q4_1 *)out + i;
            fit_aff_block(xb, w, 15, &y->d, &y->m, q);
            pack4(q, y->qs);
            break;
        }
        case LB_TYPE_Q5_1: {
            lb_block_q5_1 *y = (lb_block_q5_1 *)out + i;
            fit_aff_block(xb, w, 31, &y->d, &y->m, q);
            pack5(q, y->qs, y->qh);
            break;
        }
        default:
            return;
        }
    }
}
