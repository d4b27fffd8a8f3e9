/* Scalar reference for LBQV weights (quant/lbqv.h): the codebook table, the
 * nearest-codeword search, dequantization, the dot product against A8_H and a
 * plain quantizer without error feedback (the quality one is lbqv_quantize.c). */
#include "quant/lbqv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/once.h"
#include "quant/lbq.h"

/* Bit-exactness between reference and SIMD needs every a*b+c rounded twice. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Output of `lbqv_codebook table` (bench/lbqv_codebook.c). */
const int8_t lb__lbqv_grid[256][8] = {
    {2, 2, 2, 2, 2, 2, 2, 2},     {2, 2, 2, 2, 2, 2, 2, -6},     {2, 2, 2, 2, 2, 2, 6, -2},     {2, 2, 2, 2, 2, 6, 2, -2},
    {2, 2, 2, 2, 6, 2, 2, -2},     {2, 2, 2, 6, 2, 2, 2, -2},     {2, 2, 6, 2, 2, 2, 2, -2},     {2, 6, 2, 2, 2, 2, 2, -2},
    {6, 2, 2, 2, 2, 2, 2, -2},     {2, 2, 2, 2, 2, 2, 6, 6},     {2, 2, 2, 2, 2, 6, 2, 6},     {2, 2, 2, 2, 2, 6, 6, 2},
    {2, 2, 2, 2, 6, 2, 2, 6},     {2, 2, 2, 2, 6, 2, 6, 2},     {2, 2, 2, 2, 6, 6, 2, 2},     {2, 2, 2, 6, 2, 2, 2, 6},
    {2, 2, 2, 6, 2, 2, 6, 2},     {2, 2, 2, 6, 2, 6, 2, 2},     {2, 2, 2, 6, 6, 2, 2, 2},     {2, 2, 6, 2, 2, 2, 2, 6},
    {2, 2, 6, 2, 2, 2, 6, 2},     {2, 2, 6, 2, 2, 6, 2, 2},     {2, 2, 6, 2, 6, 2, 2, 2},     {2, 2, 6, 6, 2, 2, 2, 2},
    {2, 6, 2, 2, 2, 2, 2, 6},     {2, 6, 2, 2, 2, 2, 6, 2},     {2, 6, 2, 2, 2, 6, 2, 2},     {2, 6, 2, 2, 6, 2, 2, 2},
    {2, 6, 2, 6, 2, 2, 2, 2},     {2, 6, 6, 2, 2, 2, 2, 2},     {6, 2, 2, 2, 2, 2, 2, 6},     {6, 2, 2, 2, 2, 2, 6, 2},
    {6, 2, 2, 2, 2, 6, 2, 2},     {6, 2, 2, 2, 6, 2, 2, 2},     {6, 2, 2, 6, 2, 2, 2, 2},     {6, 2, 6, 2, 2, 2, 2, 2},
    {6, 6, 2, 2, 2, 2, 2, 2},     {2, 2, 2, 2, 2, 2, 2, 10},     {2, 2, 2, 2, 2, 2, 10, 2},     {2, 2, 2, 2, 2, 6, 6, -6},
    {2, 2, 2, 2, 2, 10, 2, 2},     {2, 2, 2, 2, 6, 2, 6, -6},     {2, 2, 2, 2, 6, 6, 2, -6},     {2, 2, 2, 2, 6, 6, 6, -2},
    {2, 2, 2, 2, 10, 2, 2, 2},     {2, 2, 2, 6, 2, 2, 6, -6},     {2, 2, 2, 6, 2, 6, 2, -6},     {2, 2, 2, 6, 2, 6, 6, -2},
    {2, 2, 2, 6, 6, 2, 2, -6},     {2, 2, 2, 6, 6, 2, 6, -2},     {2, 2, 2, 6, 6, 6, 2, -2},     {2, 2, 2, 10, 2, 2, 2, 2},
    {2, 2, 6, 2, 2, 2, 6, -6},     {2, 2, 6, 2, 2, 6, 2, -6},     {2, 2, 6, 2, 2, 6, 6, -2},     {2, 2, 6, 2, 6, 2, 2, -6},
    {2, 2, 6, 2, 6, 2, 6, -2},     {2, 2, 6, 2, 6, 6, 2, -2},     {2, 2, 6, 6, 2, 2, 2, -6},     {2, 2, 6, 6, 2, 2, 6, -2},
    {2, 2, 6, 6, 2, 6, 2, -2},     {2, 2, 6, 6, 6, 2, 2, -2},     {2, 2, 10, 2, 2, 2, 2, 2},     {2, 6, 2, 2, 2, 2, 6, -6},
    {2, 6, 2, 2, 2, 6, 2, -6},     {2, 6, 2, 2, 2, 6, 6, -2},     {2, 6, 2, 2, 6, 2, 2, -6},     {2, 6, 2, 2, 6, 2, 6, -2},
    {2, 6, 2, 2, 6, 6, 2, -2},     {2, 6, 2, 6, 2, 2, 2, -6},     {2, 6, 2, 6, 2, 2, 6, -2},     {2, 6, 2, 6, 2, 6, 2, -2},
    {2, 6, 2, 6, 6, 2, 2, -2},     {2, 6, 6, 2, 2, 2, 2, -6},     {2, 6, 6, 2, 2, 2, 6, -2},     {2, 6, 6, 2, 2, 6, 2, -2},
    {2, 6, 6, 2, 6, 2, 2, -2},     {2, 6, 6, 6, 2, 2, 2, -2},     {2, 10, 2, 2, 2, 2, 2, 2},     {6, 2, 2, 2, 2, 2, 6, -6},
    {6, 2, 2, 2, 2, 6, 2, -6},     {6, 2, 2, 2, 2, 6, 6, -2},     {6, 2, 2, 2, 6, 2, 2, -6},     {6, 2, 2, 2, 6, 2, 6, -2},
    {6, 2, 2, 2, 6, 6, 2, -2},     {6, 2, 2, 6, 2, 2, 2, -6},     {6, 2, 2, 6, 2, 2, 6, -2},     {6, 2, 2, 6, 2, 6, 2, -2},
    {6, 2, 2, 6, 6, 2, 2, -2},     {6, 2, 6, 2, 2, 2, 2, -6},     {6, 2, 6, 2, 2, 2, 6, -2},     {6, 2, 6, 2, 2, 6, 2, -2},
    {6, 2, 6, 2, 6, 2, 2, -2},     {6, 2, 6, 6, 2, 2, 2, -2},     {6, 6, 2, 2, 2, 2, 2, -6},     {6, 6, 2, 2, 2, 2, 6, -2},
    {6, 6, 2, 2, 2, 6, 2, -2},     {6, 6, 2, 2, 6, 2, 2, -2},     {6, 6, 2, 6, 2, 2, 2, -2},     {6, 6, 6, 2, 2, 2, 2, -2},
    {10, 2, 2, 2, 2, 2, 2, 2},     {2, 2, 2, 2, 2, 2, 6, -10},     {2, 2, 2, 2, 2, 2, 10, -6},     {2, 2, 2, 2, 2, 6, 2, -10},
    {2, 2, 2, 2, 2, 6, 10, -2},     {2, 2, 2, 2, 2, 10, 2, -6},     {2, 2, 2, 2, 2, 10, 6, -2},     {2, 2, 2, 2, 6, 2, 2, -10},
    {2, 2, 2, 2, 6, 2, 10, -2},     {2, 2, 2, 2, 6, 6, 6, 6},     {2, 2, 2, 2, 6, 10, 2, -2},     {2, 2, 2, 2, 10, 2, 2, -6},
    {2, 2, 2, 2, 10, 2, 6, -2},     {2, 2, 2, 2, 10, 6, 2, -2},     {2, 2, 2, 6, 2, 2, 2, -10},     {2, 2, 2, 6, 2, 2, 10, -2},
    {2, 2, 2, 6, 2, 6, 6, 6},     {2, 2, 2, 6, 2, 10, 2, -2},     {2, 2, 2, 6, 6, 2, 6, 6},     {2, 2, 2, 6, 6, 6, 2, 6},
    {2, 2, 2, 6, 6, 6, 6, 2},     {2, 2, 2, 6, 10, 2, 2, -2},     {2, 2, 2, 10, 2, 2, 2, -6},     {2, 2, 2, 10, 2, 2, 6, -2},
    {2, 2, 2, 10, 2, 6, 2, -2},     {2, 2, 2, 10, 6, 2, 2, -2},     {2, 2, 6, 2, 2, 2, 2, -10},     {2, 2, 6, 2, 2, 2, 10, -2},
    {2, 2, 6, 2, 2, 6, 6, 6},     {2, 2, 6, 2, 2, 10, 2, -2},     {2, 2, 6, 2, 6, 2, 6, 6},     {2, 2, 6, 2, 6, 6, 2, 6},
    {2, 2, 6, 2, 6, 6, 6, 2},     {2, 2, 6, 2, 10, 2, 2, -2},     {2, 2, 6, 6, 2, 2, 6, 6},     {2, 2, 6, 6, 2, 6, 2, 6},
    {2, 2, 6, 6, 2, 6, 6, 2},     {2, 2, 6, 6, 6, 2, 2, 6},     {2, 2, 6, 6, 6, 2, 6, 2},     {2, 2, 6, 6, 6, 6, 2, 2},
    {2, 2, 6, 10, 2, 2, 2, -2},     {2, 2, 10, 2, 2, 2, 2, -6},     {2, 2, 10, 2, 2, 2, 6, -2},     {2, 2, 10, 2, 2, 6, 2, -2},
    {2, 2, 10, 2, 6, 2, 2, -2},     {2, 2, 10, 6, 2, 2, 2, -2},     {2, 6, 2, 2, 2, 2, 2, -10},     {2, 6, 2, 2, 2, 2, 10, -2},
    {2, 6, 2, 2, 2, 6, 6, 6},     {2, 6, 2, 2, 2, 10, 2, -2},     {2, 6, 2, 2, 6, 2, 6, 6},     {2, 6, 2, 2, 6, 6, 2, 6},
    {2, 6, 2, 2, 6, 6, 6, 2},     {2, 6, 2, 2, 10, 2, 2, -2},     {2, 6, 2, 6, 2, 2, 6, 6},     {2, 6, 2, 6, 2, 6, 2, 6},
    {2, 6, 2, 6, 2, 6, 6, 2},     {2, 6, 2, 6, 6, 2, 2, 6},     {2, 6, 2, 6, 6, 2, 6, 2},     {2, 6, 2, 6, 6, 6, 2, 2},
    {2, 6, 2, 10, 2, 2, 2, -2},     {2, 6, 6, 2, 2, 2, 6, 6},     {2, 6, 6, 2, 2, 6, 2, 6},     {2, 6, 6, 2, 2, 6, 6, 2},
    {2, 6, 6, 2, 6, 2, 2, 6},     {2, 6, 6, 2, 6, 2, 6, 2},     {2, 6, 6, 2, 6, 6, 2, 2},     {2, 6, 6, 6, 2, 2, 2, 6},
    {2, 6, 6, 6, 2, 2, 6, 2},     {2, 6, 6, 6, 2, 6, 2, 2},     {2, 6, 6, 6, 6, 2, 2, 2},     {2, 6, 10, 2, 2, 2, 2, -2},
    {2, 10, 2, 2, 2, 2, 2, -6},     {2, 10, 2, 2, 2, 2, 6, -2},     {2, 10, 2, 2, 2, 6, 2, -2},     {2, 10, 2, 2, 6, 2, 2, -2},
    {2, 10, 2, 6, 2, 2, 2, -2},     {2, 10, 6, 2, 2, 2, 2, -2},     {6, 2, 2, 2, 2, 2, 2, -10},     {6, 2, 2, 2, 2, 2, 10, -2},
    {6, 2, 2, 2, 2, 6, 6, 6},     {6, 2, 2, 2, 2, 10, 2, -2},     {6, 2, 2, 2, 6, 2, 6, 6},     {6, 2, 2, 2, 6, 6, 2, 6},
    {6, 2, 2, 2, 6, 6, 6, 2},     {6, 2, 2, 2, 10, 2, 2, -2},     {6, 2, 2, 6, 2, 2, 6, 6},     {6, 2, 2, 6, 2, 6, 2, 6},
    {6, 2, 2, 6, 2, 6, 6, 2},     {6, 2, 2, 6, 6, 2, 2, 6},     {6, 2, 2, 6, 6, 2, 6, 2},     {6, 2, 2, 6, 6, 6, 2, 2},
    {6, 2, 2, 10, 2, 2, 2, -2},     {6, 2, 6, 2, 2, 2, 6, 6},     {6, 2, 6, 2, 2, 6, 2, 6},     {6, 2, 6, 2, 2, 6, 6, 2},
    {6, 2, 6, 2, 6, 2, 2, 6},     {6, 2, 6, 2, 6, 2, 6, 2},     {6, 2, 6, 2, 6, 6, 2, 2},     {6, 2, 6, 6, 2, 2, 2, 6},
    {6, 2, 6, 6, 2, 2, 6, 2},     {6, 2, 6, 6, 2, 6, 2, 2},     {6, 2, 6, 6, 6, 2, 2, 2},     {6, 2, 10, 2, 2, 2, 2, -2},
    {6, 6, 2, 2, 2, 2, 6, 6},     {6, 6, 2, 2, 2, 6, 2, 6},     {6, 6, 2, 2, 2, 6, 6, 2},     {6, 6, 2, 2, 6, 2, 2, 6},
    {6, 6, 2, 2, 6, 2, 6, 2},     {6, 6, 2, 2, 6, 6, 2, 2},     {6, 6, 2, 6, 2, 2, 2, 6},     {6, 6, 2, 6, 2, 2, 6, 2},
    {6, 6, 2, 6, 2, 6, 2, 2},     {6, 6, 2, 6, 6, 2, 2, 2},     {6, 6, 6, 2, 2, 2, 2, 6},     {6, 6, 6, 2, 2, 2, 6, 2},
    {6, 6, 6, 2, 2, 6, 2, 2},     {6, 6, 6, 2, 6, 2, 2, 2},     {6, 6, 6, 6, 2, 2, 2, 2},     {6, 10, 2, 2, 2, 2, 2, -2},
    {10, 2, 2, 2, 2, 2, 2, -6},     {10, 2, 2, 2, 2, 2, 6, -2},     {10, 2, 2, 2, 2, 6, 2, -2},     {10, 2, 2, 2, 6, 2, 2, -2},
    {10, 2, 2, 6, 2, 2, 2, -2},     {10, 2, 6, 2, 2, 2, 2, -2},     {10, 6, 2, 2, 2, 2, 2, -2},     {2, 2, 2, 2, 2, 6, 6, 10},
    {2, 2, 2, 2, 2, 6, 10, 6},     {2, 2, 2, 2, 2, 10, 6, 6},     {2, 2, 2, 2, 6, 2, 6, 10},     {2, 2, 2, 2, 6, 2, 10, 6},
    {2, 2, 2, 2, 6, 6, 2, 10},     {2, 2, 2, 2, 6, 6, 10, 2},     {2, 2, 2, 2, 6, 10, 2, 6},     {2, 2, 2, 2, 6, 10, 6, 2},
    {2, 2, 2, 2, 10, 2, 6, 6},     {2, 2, 2, 2, 10, 6, 2, 6},     {2, 2, 2, 2, 10, 6, 6, 2},     {2, 2, 2, 6, 2, 2, 6, 10},
    {2, 2, 2, 6, 2, 2, 10, 6},     {2, 2, 2, 6, 2, 6, 2, 10},     {2, 2, 2, 6, 2, 6, 10, 2},     {2, 2, 2, 6, 2, 10, 2, 6},
    {2, 2, 2, 6, 2, 10, 6, 2},     {2, 2, 2, 6, 6, 2, 2, 10},     {2, 2, 2, 6, 6, 2, 10, 2},     {2, 2, 2, 6, 6, 6, 6, -6},
    {2, 2, 2, 6, 6, 10, 2, 2},     {2, 2, 2, 6, 10, 2, 2, 6},     {2, 2, 2, 6, 10, 2, 6, 2},     {2, 2, 2, 6, 10, 6, 2, 2},
    {2, 2, 2, 10, 2, 2, 6, 6},     {2, 2, 2, 10, 2, 6, 2, 6},     {2, 2, 2, 10, 2, 6, 6, 2},     {2, 2, 2, 10, 6, 2, 2, 6},
};

/* The table as floats, pattern-major by element (mag[j][p] = |grid[p][j]|),
 * half its squared norm, and whether it needs an odd number of negative
 * signs: the layout the search's inner loop runs over all 256 patterns with. */
static float mag[8][256];     /* [8 elements][256 patterns] */
static float half_norm[256];  /* [256] */
static int odd_neg[256];      /* [256] 0/1 */
static lb_once search_once = LB_ONCE_INIT;

static void search_init(void)
{
    for (int p = 0; p < 256; p++) {
        float n = 0;
        for (int j = 0; j < 8; j++) {
            float a = (float)abs(lb__lbqv_grid[p][j]);
            mag[j][p] = a;
            n += a * a;
        }
        half_norm[p] = 0.5f * n;
        odd_neg[p] = lb__lbqv_grid[p][7] < 0;
    }
}

/* Distance from y to a signed pattern with signs of y: 1/2|y|^2 - sum|y|a + 1/2|a|^2.
 * When the signs of y have the wrong parity for the pattern, the cheapest
 * fix flips the element with the smallest |y_j| a_j, which costs 2 |y_j| a_j
 * more (in these half units).  Both shifts are tried. */
float lb__lbqv_nearest(const float *t, uint8_t *idx_out, uint8_t *sg_out)
{
    lb_once_run(&search_once, search_init);
    float best = INFINITY;
    int best_p = 0, best_sh = 0;
    unsigned best_neg = 0;
    for (int sh = 0; sh < 2; sh++) {
        float y[8]; /* [8] |t - shift| */
        unsigned neg = 0;
        float yy = 0;
        for (int j = 0; j < 8; j++) {
            float v = t[j] - (sh ? 1.0f : -1.0f);
            if (v < 0)
                neg |= 1u << j;
            y[j] = fabsf(v);
            yy += y[j] * y[j];
        }
        int par = __builtin_popcount(neg) & 1;
        float dot[256], mn[256]; /* [256] per pattern */
        for (int p = 0; p < 256; p++) {
            dot[p] = y[0] * mag[0][p];
            mn[p] = dot[p];
        }
        for (int j = 1; j < 8; j++)
            for (int p = 0; p < 256; p++) {
                float v = y[j] * mag[j][p];
                dot[p] += v;
                mn[p] = v < mn[p] ? v : mn[p];
            }
        int bp = 0;
        float bd = INFINITY;
        for (int p = 0; p < 256; p++) {
            float dist = half_norm[p] - dot[p] + (odd_neg[p] != par ? 2.0f * mn[p] : 0.0f);
            if (dist < bd) {
                bd = dist;
                bp = p;
            }
        }
        bd = 2.0f * bd + yy;
        if (bd < best) {
            best = bd;
            best_p = bp;
            best_sh = sh;
            best_neg = neg;
            if (odd_neg[bp] != par) {
                int jm = 0;
                for (int j = 1; j < 8; j++)
                    if (y[j] * mag[j][bp] < y[jm] * mag[jm][bp])
                        jm = j;
                best_neg ^= 1u << jm;
            }
        }
    }
    *idx_out = (uint8_t)best_p;
    *sg_out = (uint8_t)((best_neg & 0x7Fu) | (best_sh ? 0x80u : 0u));
    return best < 0 ? 0 : best;
}

static void dequant_lbqv(const void *src, float *dst, int64_t n)
{
    const lb_block_lbqv *b = src;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        float d = lb_f16_to_f32(b[i].d) * 0.0625f, *y = dst + i * LB_QK_K;
        for (int k = 0; k < LB_QK_K / 8; k++) {
            int8_t c[8];
            lb__lbqv_codeword(b[i].idx[k], b[i].sg[k], c);
            int g = k / 4, sc = ((b[i].scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1;
            for (int j = 0; j < 8; j++)
                y[8 * k + j] = d * (float)(sc * c[j]);
        }
        lb__lbq_unrotate(y);
    }
}

/* Per block isum = sum_g sc_g * sum_e c_e a_e, exact (|isum| <= 16 * 8 * 32 *
 * 11 * 127 < 2^23), then acc += (d_a * d_w * 1/16) * isum, blocks in order. */
static void dot_lbqv(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbqv *b = w;
    const lb_block_a8_K *a = act;
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        int32_t is = 0;
        for (int g = 0; g < 8; g++) {
            int32_t ga = 0;
            for (int k = 4 * g; k < 4 * g + 4; k++) {
                int8_t c[8];
                lb__lbqv_codeword(b[i].idx[k], b[i].sg[k], c);
                for (int j = 0; j < 8; j++)
                    ga += c[j] * a[i].qs[8 * k + j];
            }
            is += (((b[i].scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1) * ga;
        }
        float dd = a[i].d * lb_f16_to_f32(b[i].d) * 0.0625f;
        acc = acc + dd * (float)is;
    }
    *s = acc;
}

/* Codeword units per standard deviation at which the codebook's squared
 * error on Gaussian data is least (bench/lbqv_codebook.c mse: 4.0-4.25). */
#define UNITS_PER_SIGMA 4.15f

/* Plain quantizer: rotate, group step from the group's RMS, nearest codewords. */
static void quant_lbqv(const float *src, void *dst, int64_t n)
{
    lb_block_lbqv *out = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        float x[LB_QK_K]; /* [256] rotated block */
        memcpy(x, src + i * LB_QK_K, sizeof x);
        lb__lbq_rotate(x);
        float step[8], smax = 0; /* [8 groups] */
        for (int g = 0; g < 8; g++) {
            float ss = 0;
            for (int e = 32 * g; e < 32 * g + 32; e++)
                ss += x[e] * x[e];
            step[g] = sqrtf(ss / 32) / UNITS_PER_SIGMA;
            smax = fmaxf(smax, step[g]);
        }
        out[i].d = lb_f32_to_f16(smax);
        float d = lb_f16_to_f32(out[i].d) * 0.0625f;
        memset(out[i].scales, 0, sizeof out[i].scales);
        for (int g = 0; g < 8; g++) {
            int sc = d > 0 ? (int)lrintf(step[g] / d) : 1;
            sc = sc < 1 ? 1 : sc > 16 ? 16 : sc;
            out[i].scales[g / 2] |= (uint8_t)((sc - 1) << (4 * (g % 2)));
            float inv = d > 0 ? 1.0f / (d * (float)sc) : 0;
            for (int k = 4 * g; k < 4 * g + 4; k++) {
                float t[8];
                for (int j = 0; j < 8; j++)
                    t[j] = x[8 * k + j] * inv;
                lb__lbqv_nearest(t, &out[i].idx[k], &out[i].sg[k]);
            }
        }
    }
}

void lb__quant_ref_register_lbqv(lb_quant_traits *t)
{
    t[LB_TYPE_LBQV] = (lb_quant_traits){LB_TYPE_A8_H, dequant_lbqv, quant_lbqv, dot_lbqv};
}
