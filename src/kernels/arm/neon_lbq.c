/* Arm NEON (AArch64) kernels for lowbit's LBQ2/LBQ3/LBQ4/LBQV weights: dot products
 * against A8_H (one activation row, and four per weight row for prefill) and
 * the A8_H activation quantizer, with the bits of the scalar
 * reference in quant/lbq.c.
 *
 * The integer sum of each block is exact on every path, so any order of
 * additions gives the reference's value: without the dot-product extension,
 * int8 products are widened to int16 (vmull/vmlal, at most four LBQ2/LBQ3 or
 * two LBQ4 products per lane, which cannot overflow) and then multiplied by
 * the group scale into int32 (vmlal_n / vmlaq_n); built for SDOT
 * (neon_lbq_dotprod.c includes this file with LB_NEON_DOTPROD set) four
 * products go straight to int32.  The float combination per block is the
 * reference's, operation by operation (ISO C mode: no contraction to FMA). */
#include "kernels/kernels.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/lbq.h"
#include "quant/lbqv.h"

#if !defined(LB_NEON_DOTPROD)
#define LB_NEON_DOTPROD 0
#endif

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Group scale sc_g + 1 (4 bits each). */
static inline int32_t group_scale(const uint8_t *scales, int g) { return ((scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1; }

/* sum_g sc_g * sum(a of group g), from the activation's 16-element partial sums. */
static inline int32_t scaled_asum(const uint8_t *scales, const int16_t *bsums)
{
    int32_t s = 0;
    for (int g = 0; g < 8; g++)
        s += group_scale(scales, g) * (bsums[2 * g] + bsums[2 * g + 1]);
    return s;
}

/* acc + sc * sum(q * a) over one 32-element group held as q0|q1 and a0|a1.
 * The quants are small (|q| <= 7), so the plain path sums four products per
 * int16 lane (|.| <= 4 * 7 * 127) before the widening multiply by sc. */
static inline int32x4_t group_dot_small(int32x4_t acc, int8x16_t q0, int8x16_t q1, const int8_t *a, int32_t sc)
{
    int8x16_t a0 = vld1q_s8(a), a1 = vld1q_s8(a + 16);
#if LB_NEON_DOTPROD
    return vmlaq_n_s32(acc, vdotq_s32(vdotq_s32(vdupq_n_s32(0), q0, a0), q1, a1), sc);
#else
    int16x8_t p = vmull_s8(vget_low_s8(q0), vget_low_s8(a0));
    p = vmlal_high_s8(p, q0, a0);
    p = vmlal_s8(p, vget_low_s8(q1), vget_low_s8(a1));
    p = vmlal_high_s8(p, q1, a1);
    acc = vmlal_n_s16(acc, vget_low_s16(p), (int16_t)sc);
    return vmlal_high_n_s16(acc, p, (int16_t)sc);
#endif
}

/* As group_dot_small for LBQ4's levels (|v| <= 127): only two products fit
 * an int16 lane (2 * 127 * 127 < 2^15), so pairs are widened before scaling. */
static inline int32x4_t group_dot_wide(int32x4_t acc, int8x16_t v0, int8x16_t v1, const int8_t *a, int32_t sc)
{
    int8x16_t a0 = vld1q_s8(a), a1 = vld1q_s8(a + 16);
#if LB_NEON_DOTPROD
    return vmlaq_n_s32(acc, vdotq_s32(vdotq_s32(vdupq_n_s32(0), v0, a0), v1, a1), sc);
#else
    int32x4_t g = vpaddlq_s16(vmlal_high_s8(vmull_s8(vget_low_s8(v0), vget_low_s8(a0)), v0, a0));
    g = vpadalq_s16(g, vmlal_high_s8(vmull_s8(vget_low_s8(v1), vget_low_s8(a1)), v1, a1));
    return vmlaq_n_s32(acc, g, sc);
#endif
}

/* The R (1 or 4) A8_H rows act_stride bytes apart. */
static inline void rows_of(const lb_block_a8_K *a[4], const void *act, size_t act_stride, int R)
{
    for (int j = 0; j < R; j++)
        a[j] = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
}

/* One LBQ2 (m = 3) or LBQ3 (m = 7) weight row against R = 1 or 4 activation
 * rows: each group's quants are unpacked once for all R, and per row the
 * integer sum and the float update are the same, so s[j * s_stride] has the
 * bits of the one-row dot for row j.  w_stride is the weight block's size (d,
 * scales and qs sit at the same offsets in both layouts). */
static inline void dot_lbq23(int64_t n, float *s, int64_t s_stride, const uint8_t *w, size_t w_stride,
                             const void *act, size_t act_stride, int m, int R)
{
    const lb_block_a8_K *a[4];   /* [R] activation rows, each [n / 256] blocks */
    rows_of(a, act, act_stride, R);
    const uint8x16_t m3 = vdupq_n_u8(3), four = vdupq_n_u8(4);
    float acc[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const lb_block_lbq2 *b = (const lb_block_lbq2 *)(w + (size_t)i * w_stride);
        const uint8_t *hmask = m == 7 ? ((const lb_block_lbq3 *)b)->hmask : NULL;
        int32x4_t sum[4];
        for (int j = 0; j < R; j++)
            sum[j] = vdupq_n_s32(0);
        uint8x16_t hma = hmask ? vld1q_u8(hmask) : m3, hmb = hmask ? vld1q_u8(hmask + 16) : m3;
        for (int h = 0; h < 2; h++) {
            uint8x16_t qa = vld1q_u8(b->qs + 32 * h), qb = vld1q_u8(b->qs + 32 * h + 16);
            for (int k = 0; k < 4; k++) {
                /* element 32g + l: bits 2k of qs[32h + l], g = 4h + k; for
                 * LBQ3 bit g of hmask[l] as bit 2 */
                int g = 4 * h + k;
                const int8x16_t sh = vdupq_n_s8((int8_t)(-2 * k));
                uint8x16_t q0 = vandq_u8(vshlq_u8(qa, sh), m3), q1 = vandq_u8(vshlq_u8(qb, sh), m3);
                if (hmask) {
                    const int8x16_t hsh = vdupq_n_s8((int8_t)(2 - g));
                    q0 = vorrq_u8(q0, vandq_u8(vshlq_u8(hma, hsh), four));
                    q1 = vorrq_u8(q1, vandq_u8(vshlq_u8(hmb, hsh), four));
                }
                int32_t sc = group_scale(b->scales, g);
                for (int j = 0; j < R; j++)
                    sum[j] = group_dot_small(sum[j], vreinterpretq_s8_u8(q0), vreinterpretq_s8_u8(q1),
                                             a[j][i].qs + 32 * g, sc);
            }
        }
        float dw = lb_f16_to_f32(b->d);
        for (int j = 0; j < R; j++) {
            int32_t isum = 2 * vaddvq_s32(sum[j]) - m * scaled_asum(b->scales, a[j][i].bsums);
            float dd = a[j][i].d * dw;
            acc[j] = acc[j] + dd * (float)isum;
        }
    }
    for (int j = 0; j < R; j++)
        s[j * s_stride] = acc[j];
}

/* As dot_lbq23 for LBQ4. */
static inline void dot_lbq4_rows(int64_t n, float *s, int64_t s_stride, const void *w, const void *act,
                                 size_t act_stride, int R)
{
    const lb_block_lbq4 *b = w;
    const lb_block_a8_K *a[4];   /* [R] activation rows, each [n / 256] blocks */
    rows_of(a, act, act_stride, R);
    const uint8x16_t m15 = vdupq_n_u8(15);
    const int8x16_t levels = vld1q_s8(lb__lbq4_levels);
    float acc[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        int32x4_t sum[4];
        for (int j = 0; j < R; j++)
            sum[j] = vdupq_n_s32(0);
        for (int p = 0; p < 4; p++) {
            /* element 64p + 32h + l: nibble h of qs[32p + l], group 2p + h */
            uint8x16_t qa = vld1q_u8(b[i].qs + 32 * p), qb = vld1q_u8(b[i].qs + 32 * p + 16);
            int8x16_t lo0 = vqtbl1q_s8(levels, vandq_u8(qa, m15)), lo1 = vqtbl1q_s8(levels, vandq_u8(qb, m15));
            int8x16_t hi0 = vqtbl1q_s8(levels, vshrq_n_u8(qa, 4)), hi1 = vqtbl1q_s8(levels, vshrq_n_u8(qb, 4));
            int32_t sc0 = group_scale(b[i].scales, 2 * p), sc1 = group_scale(b[i].scales, 2 * p + 1);
            for (int j = 0; j < R; j++) {
                sum[j] = group_dot_wide(sum[j], lo0, lo1, a[j][i].qs + 64 * p, sc0);
                sum[j] = group_dot_wide(sum[j], hi0, hi1, a[j][i].qs + 64 * p + 32, sc1);
            }
        }
        float dw = lb_f16_to_f32(b[i].d);
        for (int j = 0; j < R; j++) {
            float dd = a[j][i].d * dw * 0.0078125f;
            acc[j] = acc[j] + dd * (float)vaddvq_s32(sum[j]);
        }
    }
    for (int j = 0; j < R; j++)
        s[j * s_stride] = acc[j];
}

/* LBQV codewords k and k + 1 of a block as 16 int8 values (quant/lbqv.h):
 * table magnitudes, signs from sg with the 8th the parity of the other
 * seven, then the +-1 shift.  |c| <= 11, so group_dot_small's four
 * products per int16 lane still cannot overflow. */
static inline int8x16_t lbqv_pair(const uint8_t *idx, const uint8_t *sg)
{
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8_t s2[2];
    for (int j = 0; j < 2; j++) {
        unsigned s = sg[j] & 0x7Fu, p = s;
        p ^= p >> 4;
        p ^= p >> 2;
        p ^= p >> 1;
        s2[j] = (uint8_t)(s | (p & 1u) << 7);
    }
    int8x16_t mag = vcombine_s8(vld1_s8(lb__lbqv_grid[idx[0]]), vld1_s8(lb__lbqv_grid[idx[1]]));
    int8x16_t neg = vreinterpretq_s8_u8(vtstq_u8(vcombine_u8(vdup_n_u8(s2[0]), vdup_n_u8(s2[1])), vld1q_u8(bit)));
    int8x16_t shift = vcombine_s8(vdup_n_s8(sg[0] & 0x80u ? 1 : -1), vdup_n_s8(sg[1] & 0x80u ? 1 : -1));
    return vaddq_s8(vsubq_s8(veorq_s8(mag, neg), neg), shift);
}

/* One LBQV weight row against R = 1 or 4 activation rows, codewords decoded
 * once for all R; the float update per block is the reference's. */
static inline void dot_lbqv_rows(int64_t n, float *s, int64_t s_stride, const void *w, const void *act,
                                 size_t act_stride, int R)
{
    const lb_block_lbqv *b = w;
    const lb_block_a8_K *a[4];   /* [R] activation rows, each [n / 256] blocks */
    rows_of(a, act, act_stride, R);
    float acc[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        int32x4_t sum[4];
        for (int j = 0; j < R; j++)
            sum[j] = vdupq_n_s32(0);
        for (int g = 0; g < 8; g++) {
            int8x16_t q0 = lbqv_pair(b[i].idx + 4 * g, b[i].sg + 4 * g);
            int8x16_t q1 = lbqv_pair(b[i].idx + 4 * g + 2, b[i].sg + 4 * g + 2);
            int32_t sc = group_scale(b[i].scales, g);
            for (int j = 0; j < R; j++)
                sum[j] = group_dot_small(sum[j], q0, q1, a[j][i].qs + 32 * g, sc);
        }
        float dw = lb_f16_to_f32(b[i].d);
        for (int j = 0; j < R; j++) {
            float dd = a[j][i].d * dw * 0.0625f;
            acc[j] = acc[j] + dd * (float)vaddvq_s32(sum[j]);
        }
    }
    for (int j = 0; j < R; j++)
        s[j * s_stride] = acc[j];
}

static void dot_lbqv(int64_t n, float *s, const void *w, const void *act) { dot_lbqv_rows(n, s, 0, w, act, 0, 1); }

static void dot4_lbqv(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dot_lbqv_rows(n, s, s_stride, w, act, act_stride, 4);
}

static void dot_lbq2(int64_t n, float *s, const void *w, const void *act)
{
    dot_lbq23(n, s, 0, w, sizeof(lb_block_lbq2), act, 0, 3, 1);
}

static void dot_lbq3(int64_t n, float *s, const void *w, const void *act)
{
    dot_lbq23(n, s, 0, w, sizeof(lb_block_lbq3), act, 0, 7, 1);
}

static void dot_lbq4(int64_t n, float *s, const void *w, const void *act)
{
    dot_lbq4_rows(n, s, 0, w, act, 0, 1);
}

/* Four activation rows per weight row (prefill, batched decode). */
static void dot4_lbq2(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dot_lbq23(n, s, s_stride, w, sizeof(lb_block_lbq2), act, act_stride, 3, 4);
}

static void dot4_lbq3(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dot_lbq23(n, s, s_stride, w, sizeof(lb_block_lbq3), act, act_stride, 7, 4);
}

static void dot4_lbq4(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dot_lbq4_rows(n, s, s_stride, w, act, act_stride, 4);
}

#if LB_NEON_DOTPROD
void lb__kernels_register_neon_dotprod_lbq(lb_kernel_set *k)
{
    k->vec_dot[LB_TYPE_LBQ2] = dot_lbq2;
    k->vec_dot[LB_TYPE_LBQ3] = dot_lbq3;
    k->vec_dot[LB_TYPE_LBQ4] = dot_lbq4;
    k->vec_dot4[LB_TYPE_LBQ2] = dot4_lbq2;
    k->vec_dot4[LB_TYPE_LBQ3] = dot4_lbq3;
    k->vec_dot4[LB_TYPE_LBQ4] = dot4_lbq4;
    k->vec_dot[LB_TYPE_LBQV] = dot_lbqv;
    k->vec_dot4[LB_TYPE_LBQV] = dot4_lbqv;
}
#else
/* The A8_K quantizer of this kernel set, taken at registration. */
static lb_quant_fn a8_K_fast;

/* Rotation in the shared scalar code (one float sequence for every ISA, so
 * the bits match the reference), then this set's A8_K quantizer. */
static void quant_a8_H(const float *src, void *dst, int64_t n)
{
    float x[LB_QK_K]; /* [256] one rotated block */
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        memcpy(x, src + i * LB_QK_K, sizeof x);
        lb__lbq_rotate(x);
        a8_K_fast(x, (lb_block_a8_K *)dst + i, LB_QK_K);
    }
}

/* Call after lb__kernels_register_neon_k: the A8_H quantizer reuses its A8_K one. */
void lb__kernels_register_neon_lbq(lb_kernel_set *k)
{
    a8_K_fast = k->quantize[LB_TYPE_A8_K];
    k->vec_dot[LB_TYPE_LBQ2] = dot_lbq2;
    k->vec_dot[LB_TYPE_LBQ3] = dot_lbq3;
    k->vec_dot[LB_TYPE_LBQ4] = dot_lbq4;
    k->vec_dot4[LB_TYPE_LBQ2] = dot4_lbq2;
    k->vec_dot4[LB_TYPE_LBQ3] = dot4_lbq3;
    k->vec_dot4[LB_TYPE_LBQ4] = dot4_lbq4;
    k->vec_dot[LB_TYPE_LBQV] = dot_lbqv;
    k->vec_dot4[LB_TYPE_LBQV] = dot4_lbqv;
    k->quantize[LB_TYPE_A8_H] = quant_a8_H;
}
#endif
#endif
