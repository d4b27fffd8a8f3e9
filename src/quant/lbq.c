/* Scalar reference for lowbit's LBQ2/LBQ3/LBQ4 weights and their rotated A8_H
 * activations: the rotation, dequantization, dot products and a plain
 * round-to-nearest quantizer (the quality one is lbq_quantize.c). */
#include "quant/lbq.h"

#include <math.h>
#include <string.h>

/* Bit-exactness between reference and SIMD needs every a*b+c rounded twice,
 * never fused: gcc in ISO C mode does not contract, clang must be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* The sign vector s of the rotation: bit i of the 256-bit string (the first
 * hex digits of pi's fraction, a fixed "random" choice anyone can rebuild)
 * set means s[i] = -1.  Changing it changes the meaning of every LBQ file. */
static const uint32_t SIGNS[8] = {0x243F6A88u, 0x85A308D3u, 0x13198A2Eu, 0x03707344u,
                                  0xA4093822u, 0x299F31D0u, 0x082EFA98u, 0xEC4E6C89u};

/* Changing these changes the meaning of every LBQ4 file. */
const int8_t lb__lbq4_levels[16] = {-127, -102, -81, -64, -48, -34, -20, -7, 7, 20, 34, 48, 64, 81, 102, 127};

static inline float sign_of(int i) { return (SIGNS[i >> 5] >> (i & 31)) & 1u ? -1.0f : 1.0f; }

/* Unnormalized fast Walsh-Hadamard transform of x[256], butterflies in a fixed order. */
static void fwht256(float *x)
{
    for (int len = 1; len < LB_QK_K; len <<= 1)
        for (int i = 0; i < LB_QK_K; i += 2 * len)
            for (int j = i; j < i + len; j++) {
                float a = x[j], b = x[j + len];
                x[j] = a + b;
                x[j + len] = a - b;
            }
}

void lb__lbq_rotate(float *x)
{
    for (int i = 0; i < LB_QK_K; i++)
        x[i] *= sign_of(i);
    fwht256(x);
    for (int i = 0; i < LB_QK_K; i++)
        x[i] *= 0.0625f;   /* 1/sqrt(256): exact */
}

void lb__lbq_unrotate(float *x)
{
    fwht256(x);
    for (int i = 0; i < LB_QK_K; i++)
        x[i] *= 0.0625f * sign_of(i);
}

/* ---- unpacking: q[256] unsigned levels and sc[8] group multipliers (1..16) */

static void unpack_lbq2(const lb_block_lbq2 *b, uint8_t *q, int *sc)
{
    for (int e = 0; e < LB_QK_K; e++) {
        int n = e / 128, j = (e % 128) / 32, l = e % 32;
        q[e] = (uint8_t)((b->qs[32 * n + l] >> (2 * j)) & 3);
    }
    for (int g = 0; g < 8; g++)
        sc[g] = ((b->scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1;
}

static void unpack_lbq3(const lb_block_lbq3 *b, uint8_t *q, int *sc)
{
    for (int e = 0; e < LB_QK_K; e++) {
        int n = e / 128, j = (e % 128) / 32, l = e % 32;
        int lo = (b->qs[32 * n + l] >> (2 * j)) & 3;
        int hi = (b->hmask[e % 32] >> (e / 32)) & 1;
        q[e] = (uint8_t)(lo | hi << 2);
    }
    for (int g = 0; g < 8; g++)
        sc[g] = ((b->scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1;
}

static void unpack_lbq4(const lb_block_lbq4 *b, uint8_t *q, int *sc)
{
    for (int e = 0; e < LB_QK_K; e++) {
        int n = e / 64, h = (e % 64) / 32, l = e % 32;
        q[e] = (uint8_t)((b->qs[32 * n + l] >> (4 * h)) & 0xF);
    }
    for (int g = 0; g < 8; g++)
        sc[g] = ((b->scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1;
}

static void dequant_block(const uint8_t *q, const int *sc, float d, int nlev, float *y)
{
    for (int e = 0; e < LB_QK_K; e++)
        y[e] = d * (float)(sc[e / 32] * (2 * q[e] - (nlev - 1)));
    lb__lbq_unrotate(y);
}

static void dequant_lbq2(const void *src, float *dst, int64_t n)
{
    const lb_block_lbq2 *b = src;
    uint8_t q[LB_QK_K];
    int sc[8];
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        unpack_lbq2(&b[i], q, sc);
        dequant_block(q, sc, lb_f16_to_f32(b[i].d), 4, dst + i * LB_QK_K);
    }
}

static void dequant_lbq3(const void *src, float *dst, int64_t n)
{
    const lb_block_lbq3 *b = src;
    uint8_t q[LB_QK_K];
    int sc[8];
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        unpack_lbq3(&b[i], q, sc);
        dequant_block(q, sc, lb_f16_to_f32(b[i].d), 8, dst + i * LB_QK_K);
    }
}

static void dequant_lbq4(const void *src, float *dst, int64_t n)
{
    const lb_block_lbq4 *b = src;
    uint8_t q[LB_QK_K];
    int sc[8];
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        unpack_lbq4(&b[i], q, sc);
        float d = lb_f16_to_f32(b[i].d) * 0.0078125f, *y = dst + i * LB_QK_K;
        for (int e = 0; e < LB_QK_K; e++)
            y[e] = d * (float)(sc[e / 32] * lb__lbq4_levels[q[e]]);
        lb__lbq_unrotate(y);
    }
}

/* ---- dot products against A8_H.  Per block the integer sum
 *   isum = sum_g sc_g * (2 * sum(q * a) - (nlev - 1) * sum(a))
 * is exact (|isum| <= 16 * 8 * 32 * 15 * 128 < 2^23); then
 *   acc += (d_a * d_w) * isum,
 * blocks in order.  SIMD kernels do the same float operations. */
static int32_t isum_block(const uint8_t *q, const int *sc, int nlev, const lb_block_a8_K *a)
{
    int32_t is = 0;
    for (int g = 0; g < 8; g++) {
        int32_t qa = 0;
        for (int e = 32 * g; e < 32 * g + 32; e++)
            qa += (int32_t)q[e] * a->qs[e];
        int32_t as = a->bsums[2 * g] + a->bsums[2 * g + 1];
        is += sc[g] * (2 * qa - (nlev - 1) * as);
    }
    return is;
}

static void dot_lbq2(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbq2 *b = w;
    const lb_block_a8_K *a = act;
    uint8_t q[LB_QK_K];
    int sc[8];
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        unpack_lbq2(&b[i], q, sc);
        float dd = a[i].d * lb_f16_to_f32(b[i].d);
        acc = acc + dd * (float)isum_block(q, sc, 4, &a[i]);
    }
    *s = acc;
}

static void dot_lbq3(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbq3 *b = w;
    const lb_block_a8_K *a = act;
    uint8_t q[LB_QK_K];
    int sc[8];
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        unpack_lbq3(&b[i], q, sc);
        float dd = a[i].d * lb_f16_to_f32(b[i].d);
        acc = acc + dd * (float)isum_block(q, sc, 8, &a[i]);
    }
    *s = acc;
}

static void dot_lbq4(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbq4 *b = w;
    const lb_block_a8_K *a = act;
    uint8_t q[LB_QK_K];
    int sc[8];
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        unpack_lbq4(&b[i], q, sc);
        /* |isum| <= 16 * 8 * 32 * 127 * 127 < 2^31; exact in integers */
        int32_t is = 0;
        for (int g = 0; g < 8; g++) {
            int32_t qa = 0;
            for (int e = 32 * g; e < 32 * g + 32; e++)
                qa += (int32_t)lb__lbq4_levels[q[e]] * a[i].qs[e];
            is += sc[g] * qa;
        }
        float dd = a[i].d * lb_f16_to_f32(b[i].d) * 0.0078125f;
        acc = acc + dd * (float)is;
    }
    *s = acc;
}

/* ---- A8_H: A8_K of the rotated activations.  Uses the K-quant reference's
 * A8_K quantizer so the two cannot drift apart. */
static lb_quant_fn a8_K_ref;

static void quant_a8_H(const float *src, void *dst, int64_t n)
{
    float x[LB_QK_K]; /* [256] one rotated block */
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        memcpy(x, src + i * LB_QK_K, sizeof x);
        lb__lbq_rotate(x);
        a8_K_ref(x, (lb_block_a8_K *)dst + i, LB_QK_K);
    }
}

/* The rotated values (what the dot products see), not the original x. */
static void dequant_a8_H(const void *src, float *dst, int64_t n)
{
    const lb_block_a8_K *b = src;
    for (int64_t i = 0; i < n / LB_QK_K; i++)
        for (int e = 0; e < LB_QK_K; e++)
            dst[i * LB_QK_K + e] = b[i].d * (float)b[i].qs[e];
}

/* ---- plain reference quantizer: rotate, group scale from the largest
 * magnitude, round to nearest.  For tests and tools; files use lb_quantize_row. */
static void quant_plain(const float *src, int nlev, float *d_out, int *sc, uint8_t *q)
{
    float x[LB_QK_K]; /* [256] rotated block */
    memcpy(x, src, sizeof x);
    lb__lbq_rotate(x);
    float gmax[8], mx = 0;
    for (int g = 0; g < 8; g++) {
        gmax[g] = 0;
        for (int e = 32 * g; e < 32 * g + 32; e++)
            gmax[g] = fmaxf(gmax[g], fabsf(x[e]));
        mx = fmaxf(mx, gmax[g]);
    }
    float d = lb_f16_to_f32(lb_f32_to_f16(mx / (float)(nlev - 1) / 16.0f));
    *d_out = d;
    for (int g = 0; g < 8; g++) {
        int s = d > 0 ? (int)lrintf(gmax[g] / (float)(nlev - 1) / d) : 1;
        s = s < 1 ? 1 : s > 16 ? 16 : s;
        sc[g] = s;
        float step = d * (float)s;
        for (int e = 32 * g; e < 32 * g + 32; e++) {
            int v = step > 0 ? (int)lrintf((x[e] / step + (float)(nlev - 1)) * 0.5f) : 0;
            q[e] = (uint8_t)(v < 0 ? 0 : v > nlev - 1 ? nlev - 1 : v);
        }
    }
}

static void pack_scales(uint8_t *out, const int *sc)
{
    for (int g = 0; g < 4; g++)
        out[g] = (uint8_t)((sc[2 * g] - 1) | (sc[2 * g + 1] - 1) << 4);
}

static void quant_lbq2(const float *src, void *dst, int64_t n)
{
    lb_block_lbq2 *out = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        uint8_t q[LB_QK_K];
        int sc[8];
        float d;
        quant_plain(src + i * LB_QK_K, 4, &d, sc, q);
        out[i].d = lb_f32_to_f16(d);
        pack_scales(out[i].scales, sc);
        memset(out[i].qs, 0, sizeof out[i].qs);
        for (int e = 0; e < LB_QK_K; e++)
            out[i].qs[32 * (e / 128) + e % 32] |= (uint8_t)(q[e] << (2 * ((e % 128) / 32)));
    }
}

static void quant_lbq3(const float *src, void *dst, int64_t n)
{
    lb_block_lbq3 *out = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        uint8_t q[LB_QK_K];
        int sc[8];
        float d;
        quant_plain(src + i * LB_QK_K, 8, &d, sc, q);
        out[i].d = lb_f32_to_f16(d);
        pack_scales(out[i].scales, sc);
        memset(out[i].qs, 0, sizeof out[i].qs);
        memset(out[i].hmask, 0, sizeof out[i].hmask);
        for (int e = 0; e < LB_QK_K; e++) {
            out[i].qs[32 * (e / 128) + e % 32] |= (uint8_t)((q[e] & 3) << (2 * ((e % 128) / 32)));
            out[i].hmask[e % 32] |= (uint8_t)((q[e] >> 2) << (e / 32));
        }
    }
}

static void quant_lbq4(const float *src, void *dst, int64_t n)
{
    lb_block_lbq4 *out = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        uint8_t q[LB_QK_K];
        int sc[8];
        float d;
        /* the even 16-level grid picks d and the scales: its extreme level
         * (15 steps) is where the table has 127 */
        quant_plain(src + i * LB_QK_K, 16, &d, sc, q);
        d = lb_f16_to_f32(lb_f32_to_f16(d * 15.0f / 127.0f * 128.0f)) * 0.0078125f;
        float x[LB_QK_K]; /* [256] rotated block */
        memcpy(x, src + i * LB_QK_K, sizeof x);
        lb__lbq_rotate(x);
        for (int e = 0; e < LB_QK_K; e++) {
            float t = d > 0 ? x[e] / (d * (float)sc[e / 32]) : 0;
            int best = 0;
            for (int k = 1; k < 16; k++)
                if (fabsf(t - lb__lbq4_levels[k]) < fabsf(t - lb__lbq4_levels[best]))
                    best = k;
            q[e] = (uint8_t)best;
        }
        out[i].d = lb_f32_to_f16(d * 128.0f);
        pack_scales(out[i].scales, sc);
        memset(out[i].qs, 0, sizeof out[i].qs);
        for (int e = 0; e < LB_QK_K; e++)
            out[i].qs[32 * (e / 64) + e % 32] |= (uint8_t)(q[e] << (4 * ((e % 64) / 32)));
    }
}

void lb__quant_ref_register_lbq(lb_quant_traits *t)
{
    a8_K_ref = t[LB_TYPE_A8_K].quantize;
    t[LB_TYPE_LBQ2] = (lb_quant_traits){LB_TYPE_A8_H, dequant_lbq2, quant_lbq2, dot_lbq2};
    t[LB_TYPE_LBQ3] = (lb_quant_traits){LB_TYPE_A8_H, dequant_lbq3, quant_lbq3, dot_lbq3};
    t[LB_TYPE_LBQ4] = (lb_quant_traits){LB_TYPE_A8_H, dequant_lbq4, quant_lbq4, dot_lbq4};
    t[LB_TYPE_A8_H] = (lb_quant_traits){LB_TYPE_A8_H, dequant_a8_H, quant_a8_H, NULL};
}
