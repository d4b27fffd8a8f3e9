/* WebAssembly SIMD128 kernels for lowbit's LBQ2/LBQ3/LBQ4 weights: dot products
 * against A8_H (one activation row, and four per weight row for prefill) and
 * the A8_H activation quantizer, with the bits of the scalar
 * reference in quant/lbq.c (exact integer sums, then the reference's float
 * combination per block). */
#include "kernels/kernels.h"

#if defined(__wasm_simd128__)
#include <string.h>
#include <wasm_simd128.h>

#include "base/fp16.h"
#include "quant/lbq.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static inline v128_t ld(const void *p) { return wasm_v128_load(p); }

static inline int32_t hsum_i32(v128_t v)
{
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
}

/* Group scale sc_g + 1 (4 bits each). */
static inline int group_scale(const uint8_t *scales, int g) { return ((scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1; }

/* sum_g sc_g * sum(a of group g), from the activation's 16-element partial sums. */
static inline int32_t scaled_asum(const uint8_t *scales, const int16_t *bsums)
{
    int32_t s = 0;
    for (int g = 0; g < 8; g++)
        s += group_scale(scales, g) * (bsums[2 * g] + bsums[2 * g + 1]);
    return s;
}

/* The 2-bit fields at bit sh of the even and odd bytes of 16 bytes qs, times
 * the even and odd activations of a, as 8 16-bit lanes of pair sums. */
static inline v128_t pair_dot_2bit(v128_t qs, int sh, v128_t a)
{
    const v128_t m3 = wasm_i16x8_splat(3);
    v128_t qe = wasm_v128_and(wasm_u16x8_shr(qs, sh), m3), qo = wasm_v128_and(wasm_u16x8_shr(qs, sh + 8), m3);
    v128_t ae = wasm_i16x8_shr(wasm_i16x8_shl(a, 8), 8), ao = wasm_i16x8_shr(a, 8);
    return wasm_i16x8_add(wasm_i16x8_mul(qe, ae), wasm_i16x8_mul(qo, ao));
}

static void dot_lbq2(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbq2 *b = w;
    const lb_block_a8_K *a = act;
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        v128_t sum = wasm_i32x4_splat(0);
        /* h rolled (unrolled, clang hoists all loads and V8 spills them); j
         * unrolled so that the shift counts are constants */
#if defined(__clang__)
#pragma clang loop unroll(disable)
#endif
        for (int h = 0; h < 2; h++) {
            v128_t q0 = ld(b[i].qs + 32 * h), q1 = ld(b[i].qs + 32 * h + 16);
            for (int j = 0; j < 4; j++) {
                /* element 32g + l: bits 2j of qs[32h + l], g = 4h + j */
                int g = 4 * h + j;
                const int8_t *ag = a[i].qs + 32 * g;
                v128_t p = wasm_i16x8_add(pair_dot_2bit(q0, 2 * j, ld(ag)), pair_dot_2bit(q1, 2 * j, ld(ag + 16)));
                sum = wasm_i32x4_add(sum, wasm_i32x4_dot_i16x8(p, wasm_i16x8_splat((int16_t)group_scale(b[i].scales, g))));
            }
        }
        int32_t isum = 2 * hsum_i32(sum) - 3 * scaled_asum(b[i].scales, a[i].bsums);
        float dd = a[i].d * lb_f16_to_f32(b[i].d);
        acc = acc + dd * (float)isum;
    }
    *s = acc;
}

/* As pair_dot_2bit with bit 2 of each quant from bit k of the bytes of hm. */
static inline v128_t pair_dot_3bit(v128_t qs, v128_t hm, int sh, int k, v128_t a)
{
    const v128_t m3 = wasm_i16x8_splat(3), m4 = wasm_i16x8_splat(4);
    v128_t he = k >= 2 ? wasm_u16x8_shr(hm, k - 2) : wasm_i16x8_shl(hm, 2 - k);
    v128_t qe = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(qs, sh), m3), wasm_v128_and(he, m4));
    v128_t qo = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(qs, sh + 8), m3), wasm_v128_and(wasm_u16x8_shr(hm, k + 6), m4));
    v128_t ae = wasm_i16x8_shr(wasm_i16x8_shl(a, 8), 8), ao = wasm_i16x8_shr(a, 8);
    return wasm_i16x8_add(wasm_i16x8_mul(qe, ae), wasm_i16x8_mul(qo, ao));
}

static void dot_lbq3(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbq3 *b = w;
    const lb_block_a8_K *a = act;
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        v128_t sum = wasm_i32x4_splat(0);
        v128_t hm0 = ld(b[i].hmask), hm1 = ld(b[i].hmask + 16);
        /* h rolled, j unrolled: as in dot_lbq2 */
#if defined(__clang__)
#pragma clang loop unroll(disable)
#endif
        /* hm0/hm1 advance by 4 bits per h, so that every shift count is a
         * constant: clang 14 scalarizes a vector shift whose count varies */
        for (int h = 0; h < 2; h++, hm0 = wasm_u16x8_shr(hm0, 4), hm1 = wasm_u16x8_shr(hm1, 4)) {
            v128_t q0 = ld(b[i].qs + 32 * h), q1 = ld(b[i].qs + 32 * h + 16);
#if defined(__clang__)
#pragma clang loop unroll(full)
#endif
            for (int j = 0; j < 4; j++) {
                /* element 32g + l: bits 2j of qs[32h + l], bit g of hmask[l], g = 4h + j */
                int g = 4 * h + j;
                const int8_t *ag = a[i].qs + 32 * g;
                v128_t p = wasm_i16x8_add(pair_dot_3bit(q0, hm0, 2 * j, j, ld(ag)),
                                          pair_dot_3bit(q1, hm1, 2 * j, j, ld(ag + 16)));   /* |p| <= 3584 */
                sum = wasm_i32x4_add(sum, wasm_i32x4_dot_i16x8(p, wasm_i16x8_splat((int16_t)group_scale(b[i].scales, g))));
            }
        }
        int32_t isum = 2 * hsum_i32(sum) - 7 * scaled_asum(b[i].scales, a[i].bsums);
        float dd = a[i].d * lb_f16_to_f32(b[i].d);
        acc = acc + dd * (float)isum;
    }
    *s = acc;
}

/* sc * sum(v * a) over 16 elements as 4 int32 lanes: v * a is exact in int16
 * (|LBQ4 level| <= 127), a low and a high product summed still fits
 * (2 * 127 * 127 < 2^15), and the multiply by sc <= 16 pairs them into int32. */
static inline v128_t level_dot16(v128_t v, const int8_t *a, v128_t sc)
{
    v128_t av = ld(a);
    v128_t p = wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16(v, av), wasm_i16x8_extmul_high_i8x16(v, av));
    return wasm_i32x4_dot_i16x8(p, sc);
}

static void dot_lbq4(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbq4 *b = w;
    const lb_block_a8_K *a = act;
    const v128_t levels = wasm_v128_load(lb__lbq4_levels), m15 = wasm_i8x16_splat(15);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        v128_t sum = wasm_i32x4_splat(0);
        /* p rolled: as h in dot_lbq2 */
#if defined(__clang__)
#pragma clang loop unroll(disable)
#endif
        for (int p = 0; p < 4; p++) {
            /* element 64p + 32h + l: nibble h of qs[32p + l], group 2p + h;
             * the 16-entry level table is looked up with swizzle */
            v128_t q0 = ld(b[i].qs + 32 * p), q1 = ld(b[i].qs + 32 * p + 16);
            const int8_t *ag = a[i].qs + 64 * p;
            v128_t s0 = wasm_i16x8_splat((int16_t)group_scale(b[i].scales, 2 * p));
            v128_t s1 = wasm_i16x8_splat((int16_t)group_scale(b[i].scales, 2 * p + 1));
            sum = wasm_i32x4_add(sum, level_dot16(wasm_i8x16_swizzle(levels, wasm_v128_and(q0, m15)), ag, s0));
            sum = wasm_i32x4_add(sum, level_dot16(wasm_i8x16_swizzle(levels, wasm_v128_and(q1, m15)), ag + 16, s0));
            sum = wasm_i32x4_add(sum, level_dot16(wasm_i8x16_swizzle(levels, wasm_u8x16_shr(q0, 4)), ag + 32, s1));
            sum = wasm_i32x4_add(sum, level_dot16(wasm_i8x16_swizzle(levels, wasm_u8x16_shr(q1, 4)), ag + 48, s1));
        }
        int32_t isum = hsum_i32(sum);
        float dd = a[i].d * lb_f16_to_f32(b[i].d) * 0.0078125f;
        acc = acc + dd * (float)isum;
    }
    *s = acc;
}

/* ---- four activation rows per weight row (prefill, batched decode): the
 * quants of each group are unpacked and widened to 16 bits once for the four
 * rows; per row the integer sum and the float update are the one-row dot's,
 * so s[j * s_stride] has exactly the bits vec_dot gives for row j. */

/* The four A8_H rows act_stride bytes apart. */
static inline void rows4(const lb_block_a8_K *a[4], const void *act, size_t act_stride)
{
    for (int j = 0; j < 4; j++)
        a[j] = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
}

/* 16 int8 weights as their low and high 8 lanes in 16 bits. */
typedef struct {
    v128_t lo, hi;
} wide16;

static inline wide16 widen(v128_t q) { return (wide16){wasm_i16x8_extend_low_i8x16(q), wasm_i16x8_extend_high_i8x16(q)}; }

/* q * a over 16 elements as 8 int16 lane sums of two products. */
static inline v128_t prod16(wide16 q, v128_t a)
{
    return wasm_i16x8_add(wasm_i16x8_mul(q.lo, wasm_i16x8_extend_low_i8x16(a)),
                          wasm_i16x8_mul(q.hi, wasm_i16x8_extend_high_i8x16(a)));
}

/* LBQ2 (m = 3, hmask NULL) or LBQ3 (m = 7); w_stride the weight block's size
 * (d, scales and qs sit at the same offsets in both layouts). */
static inline void dot4_lbq23(int64_t n, float *s, int64_t s_stride, const uint8_t *w, size_t w_stride,
                              const void *act, size_t act_stride, int m)
{
    const lb_block_a8_K *a[4];   /* [4] activation rows, each [n / 256] blocks */
    rows4(a, act, act_stride);
    const v128_t m3 = wasm_i8x16_splat(3), m4 = wasm_i8x16_splat(4);
    float acc[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const lb_block_lbq2 *b = (const lb_block_lbq2 *)(w + (size_t)i * w_stride);
        const uint8_t *hmask = m == 7 ? ((const lb_block_lbq3 *)b)->hmask : NULL;
        v128_t sum[4];
        for (int j = 0; j < 4; j++)
            sum[j] = wasm_i32x4_splat(0);
        /* h rolled, k unrolled (constant shift counts), as in dot_lbq3 */
        v128_t ha = hmask ? ld(hmask) : m3, hb = hmask ? ld(hmask + 16) : m3;
#if defined(__clang__)
#pragma clang loop unroll(disable)
#endif
        for (int h = 0; h < 2; h++, ha = wasm_u16x8_shr(ha, 4), hb = wasm_u16x8_shr(hb, 4)) {
            v128_t qa = ld(b->qs + 32 * h), qb = ld(b->qs + 32 * h + 16);
            for (int k = 0; k < 4; k++) {
                /* element 32g + l: bits 2k of qs[32h + l], for LBQ3 bit g of
                 * hmask[l] (bit k of ha/hb) as bit 2; g = 4h + k */
                int g = 4 * h + k;
                v128_t q0 = wasm_v128_and(wasm_u8x16_shr(qa, 2 * k), m3);
                v128_t q1 = wasm_v128_and(wasm_u8x16_shr(qb, 2 * k), m3);
                if (hmask) {
                    q0 = wasm_v128_or(q0, wasm_v128_and(k >= 2 ? wasm_u8x16_shr(ha, k - 2) : wasm_i8x16_shl(ha, 2 - k), m4));
                    q1 = wasm_v128_or(q1, wasm_v128_and(k >= 2 ? wasm_u8x16_shr(hb, k - 2) : wasm_i8x16_shl(hb, 2 - k), m4));
                }
                wide16 w0 = widen(q0), w1 = widen(q1);
                v128_t sc = wasm_i16x8_splat((int16_t)group_scale(b->scales, g));
                for (int j = 0; j < 4; j++) {
                    const int8_t *ag = a[j][i].qs + 32 * g;
                    v128_t p = wasm_i16x8_add(prod16(w0, ld(ag)), prod16(w1, ld(ag + 16)));   /* |p| <= 4 * 7 * 127 */
                    sum[j] = wasm_i32x4_add(sum[j], wasm_i32x4_dot_i16x8(p, sc));
                }
            }
        }
        float dw = lb_f16_to_f32(b->d);
        for (int j = 0; j < 4; j++) {
            int32_t isum = 2 * hsum_i32(sum[j]) - m * scaled_asum(b->scales, a[j][i].bsums);
            float dd = a[j][i].d * dw;
            acc[j] = acc[j] + dd * (float)isum;
        }
    }
    for (int j = 0; j < 4; j++)
        s[j * s_stride] = acc[j];
}

static void dot4_lbq2(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dot4_lbq23(n, s, s_stride, w, sizeof(lb_block_lbq2), act, act_stride, 3);
}

static void dot4_lbq3(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dot4_lbq23(n, s, s_stride, w, sizeof(lb_block_lbq3), act, act_stride, 7);
}

/* LBQ4: here extmul beats widening the levels once (V8, x86-64). */
static inline v128_t extprod16(v128_t v, v128_t a)
{
    return wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16(v, a), wasm_i16x8_extmul_high_i8x16(v, a));
}

static void dot4_lbq4(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    const lb_block_lbq4 *b = w;
    const lb_block_a8_K *a[4];   /* [4] activation rows, each [n / 256] blocks */
    rows4(a, act, act_stride);
    const v128_t levels = wasm_v128_load(lb__lbq4_levels), m15 = wasm_i8x16_splat(15);
    float acc[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        v128_t sum[4];
        for (int j = 0; j < 4; j++)
            sum[j] = wasm_i32x4_splat(0);
        for (int g = 0; g < 8; g++) {
            /* element 64p + 32h + l: nibble h of qs[32p + l], g = 2p + h */
            v128_t q0 = ld(b[i].qs + 32 * (g / 2)), q1 = ld(b[i].qs + 32 * (g / 2) + 16);
            q0 = g % 2 ? wasm_u8x16_shr(q0, 4) : wasm_v128_and(q0, m15);
            q1 = g % 2 ? wasm_u8x16_shr(q1, 4) : wasm_v128_and(q1, m15);
            v128_t v0 = wasm_i8x16_swizzle(levels, q0), v1 = wasm_i8x16_swizzle(levels, q1);
            v128_t sc = wasm_i16x8_splat((int16_t)group_scale(b[i].scales, g));
            for (int j = 0; j < 4; j++) {
                /* two products of at most 127 * 127 per lane: one lane-sum per 16 bytes */
                const int8_t *ag = a[j][i].qs + 32 * g;
                sum[j] = wasm_i32x4_add(sum[j], wasm_i32x4_add(wasm_i32x4_dot_i16x8(extprod16(v0, ld(ag)), sc),
                                                               wasm_i32x4_dot_i16x8(extprod16(v1, ld(ag + 16)), sc)));
            }
        }
        float dw = lb_f16_to_f32(b[i].d);
        for (int j = 0; j < 4; j++) {
            float dd = a[j][i].d * dw * 0.0078125f;
            acc[j] = acc[j] + dd * (float)hsum_i32(sum[j]);
        }
    }
    for (int j = 0; j < 4; j++)
        s[j * s_stride] = acc[j];
}

/* The A8_K quantizer of this kernel set, taken at registration. */
static lb_quant_fn a8_K_fast;

/* Rotation in the shared scalar code (one float sequence for every ISA), then
 * this set's A8_K quantizer. */
static void quant_a8_H(const float *src, void *dst, int64_t n)
{
    float x[LB_QK_K]; /* [256] one rotated block */
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        memcpy(x, src + i * LB_QK_K, sizeof x);
        lb__lbq_rotate(x);
        a8_K_fast(x, (lb_block_a8_K *)dst + i, LB_QK_K);
    }
}

/* Call after lb__kernels_register_wasm_k: the A8_H quantizer reuses its A8_K one. */
void lb__kernels_register_wasm_lbq(lb_kernel_set *k)
{
    a8_K_fast = k->quantize[LB_TYPE_A8_K];
    k->vec_dot[LB_TYPE_LBQ2] = dot_lbq2;
    k->vec_dot[LB_TYPE_LBQ3] = dot_lbq3;
    k->vec_dot[LB_TYPE_LBQ4] = dot_lbq4;
    k->vec_dot4[LB_TYPE_LBQ2] = dot4_lbq2;
    k->vec_dot4[LB_TYPE_LBQ3] = dot4_lbq3;
    k->vec_dot4[LB_TYPE_LBQ4] = dot4_lbq4;
    k->quantize[LB_TYPE_A8_H] = quant_a8_H;
}
#endif
