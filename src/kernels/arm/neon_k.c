/* Arm NEON (AArch64) kernels for the K-quants: dot products against A8_K and
 * the A8_K activation quantizer, each giving the same bits as the scalar
 * reference in quant/ref_k.c.
 *
 * Integer work: int8 x int8 products are exact in int16 (vmull), and their
 * pair sums times a sub-block scale exact in int32 -- or, built for the
 * dot-product extension (neon_k_dotprod.c includes this file with
 * LB_NEON_DOTPROD set), sums of four products by SDOT, exact in int32 -- so
 * every integer sum equals the reference's.  Float work follows the reference operation by
 * operation: Q2_K/Q3_K/Q5_K combine one super-block at a time (combine_k);
 * Q4_K/Q6_K keep the 8-lane accumulators of the reference's lane contract
 * and update them with fused multiply-adds (vfmaq), as the reference's fmaf. */
#include "kernels/kernels.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>

#if !defined(LB_NEON_DOTPROD)
#define LB_NEON_DOTPROD 0
#endif
#include <string.h>

#include "quant/blocks.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static inline float h2f(lb_f16 h) { return lb_f16_to_f32(h); }

/* The float combination of one super-block, identical to the reference's. */
static inline float combine_k(float acc, float da, float d, float dmin, int32_t isum, int32_t msum)
{
    float dd = da * d;
    float dm = da * dmin;
    return acc + (dd * (float)isum - dm * (float)msum);
}

/* acc + sc * (x[j] * y[j] summed in pairs) over 16 elements, as four int32
 * lanes; |x * y| must fit in int16 (quants of at most 6 bits times int8). */
static inline int32x4_t dot16_scaled(int32x4_t acc, int8x16_t x, int8x16_t y, int32_t sc)
{
#if LB_NEON_DOTPROD
    return vmlaq_n_s32(acc, vdotq_s32(vdupq_n_s32(0), x, y), sc);
#else
    int16x8_t p = vaddq_s16(vmull_s8(vget_low_s8(x), vget_low_s8(y)), vmull_high_s8(x, y));
    return vmlaq_n_s32(acc, vpaddlq_s16(p), sc);
#endif
}

/* The reference's reduction of the 8 float lanes: (hi4 + lo4), then (0+2) + (1+3). */
static inline float hsum8(float32x4_t lo, float32x4_t hi)
{
    float32x4_t r = vaddq_f32(hi, lo);
    return (vgetq_lane_f32(r, 0) + vgetq_lane_f32(r, 2)) + (vgetq_lane_f32(r, 1) + vgetq_lane_f32(r, 3));
}

/* Q4_K/Q5_K packed scales and mins: out[0..7] scales, out[8..15] mins. */
static inline void q4_K_scales_mins(const uint8_t *packed, uint8_t out[16])
{
    uint32_t u[3], r[4];
    memcpy(u, packed, 12);
    r[0] = u[0] & 0x3f3f3f3fu;
    r[1] = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);
    r[2] = u[1] & 0x3f3f3f3fu;
    r[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u);
    memcpy(out, r, 16);
}

/* Q3_K's sixteen 6-bit scales minus their offset 32. */
static inline void q3_K_scales(const uint8_t *packed, int8_t out[16])
{
    uint32_t u[3], r[4];
    memcpy(u, packed, 12);
    r[0] = (u[0] & 0x0f0f0f0fu) | ((u[2] << 4) & 0x30303030u);
    r[1] = (u[1] & 0x0f0f0f0fu) | ((u[2] << 2) & 0x30303030u);
    r[2] = ((u[0] >> 4) & 0x0f0f0f0fu) | (u[2] & 0x30303030u);
    r[3] = ((u[1] >> 4) & 0x0f0f0f0fu) | ((u[2] >> 2) & 0x30303030u);
    vst1q_s8(out, vsubq_s8(vreinterpretq_s8_u32(vld1q_u32(r)), vdupq_n_s8(32)));
}

/* The lane contract's lane k holds l = 4k .. 4k+3 (l = e mod 32).  Without
 * SDOT, X[m] lane j accumulates sc * (p[2j] + p[2j+1]) for l = 8m .. 8m+7,
 * so lanes 0-3 are the pair sums of X[0] and X[1] (lanes8); SDOT sums four
 * consecutive products, so X[g] holds lanes 4g .. 4g+3 directly. */
static inline void acc_scaled(int32x4_t X[4], int g, int8x16_t q, int8x16_t a, int32_t sc)
{
#if LB_NEON_DOTPROD
    X[g] = vmlaq_n_s32(X[g], vdotq_s32(vdupq_n_s32(0), q, a), sc);
#else
    X[2 * g] = vmlaq_n_s32(X[2 * g], vpaddlq_s16(vmull_s8(vget_low_s8(q), vget_low_s8(a))), sc);
    X[2 * g + 1] = vmlaq_n_s32(X[2 * g + 1], vpaddlq_s16(vmull_high_s8(q, a)), sc);
#endif
}

/* Lanes 0-3 and 4-7 of the contract from what acc_scaled accumulated. */
static inline int32x4_t lanes_lo(const int32x4_t X[4])
{
#if LB_NEON_DOTPROD
    return X[0];
#else
    return vpaddq_s32(X[0], X[1]);
#endif
}

static inline int32x4_t lanes_hi(const int32x4_t X[4])
{
#if LB_NEON_DOTPROD
    return X[1];
#else
    return vpaddq_s32(X[2], X[3]);
#endif
}

/* ---- dot products */

static void dot_q4_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q4_K *b = w;
    const lb_block_a8_K *a = act;
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    float32x4_t acc_lo = vdupq_n_f32(0), acc_hi = vdupq_n_f32(0), accm = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        uint8_t sm[16];   /* [8 scales, 8 mins] */
        q4_K_scales_mins(b[i].scales, sm);
        int32x4_t X[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
        for (int c = 0; c < 4; c++)
            for (int g = 0; g < 2; g++) {
                uint8x16_t q = vld1q_u8(b[i].qs + 32 * c + 16 * g);
                int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(q, m4)), hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
                acc_scaled(X, g, lo, vld1q_s8(a[i].qs + 64 * c + 16 * g), sm[2 * c]);
                acc_scaled(X, g, hi, vld1q_s8(a[i].qs + 64 * c + 32 + 16 * g), sm[2 * c + 1]);
            }
        float d = a[i].d * h2f(b[i].d);
        float dmin = -a[i].d * h2f(b[i].dmin);
        acc_lo = vfmaq_n_f32(acc_lo, vcvtq_f32_s32(lanes_lo(X)), d);
        acc_hi = vfmaq_n_f32(acc_hi, vcvtq_f32_s32(lanes_hi(X)), d);
        /* lane r: mins of sub-blocks 2r, 2r+1 times their activation sums */
        int16x8_t bs = vpaddq_s16(vld1q_s16(a[i].bsums), vld1q_s16(a[i].bsums + 8));   /* 8 sub-block sums */
        int16x8_t mn = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(sm + 8)));
        int32x4_t m = vpaddq_s32(vmull_s16(vget_low_s16(mn), vget_low_s16(bs)), vmull_high_s16(mn, bs));
        accm = vfmaq_n_f32(accm, vcvtq_f32_s32(m), dmin);
    }
    *s = hsum8(acc_lo, acc_hi) +
         ((vgetq_lane_f32(accm, 0) + vgetq_lane_f32(accm, 2)) + (vgetq_lane_f32(accm, 1) + vgetq_lane_f32(accm, 3)));
}

static void dot_q6_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q6_K *b = w;
    const lb_block_a8_K *a = act;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m2h = vdupq_n_u8(0x30);
    const int8x16_t k32 = vdupq_n_s8(32);
    float32x4_t acc_lo = vdupq_n_f32(0), acc_hi = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        int32x4_t X[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 2; g++) {
                /* l = 16g .. 16g+15 of the four 32-element chunks k of half h */
                uint8x16_t q0 = vld1q_u8(b[i].ql + 64 * h + 16 * g), q1 = vld1q_u8(b[i].ql + 64 * h + 32 + 16 * g);
                uint8x16_t qh = vld1q_u8(b[i].qh + 32 * h + 16 * g);
                uint8x16_t v[4];
                v[0] = vorrq_u8(vandq_u8(q0, m4), vandq_u8(vshlq_n_u8(qh, 4), m2h));
                v[1] = vorrq_u8(vandq_u8(q1, m4), vandq_u8(vshlq_n_u8(qh, 2), m2h));
                v[2] = vorrq_u8(vshrq_n_u8(q0, 4), vandq_u8(qh, m2h));
                v[3] = vorrq_u8(vshrq_n_u8(q1, 4), vandq_u8(vshrq_n_u8(qh, 2), m2h));
                for (int k = 0; k < 4; k++) {
                    int8x16_t q = vsubq_s8(vreinterpretq_s8_u8(v[k]), k32);
                    acc_scaled(X, g, q, vld1q_s8(a[i].qs + 128 * h + 32 * k + 16 * g), b[i].scales[8 * h + 2 * k + g]);
                }
            }
        float d = a[i].d * h2f(b[i].d);
        acc_lo = vfmaq_n_f32(acc_lo, vcvtq_f32_s32(lanes_lo(X)), d);
        acc_hi = vfmaq_n_f32(acc_hi, vcvtq_f32_s32(lanes_hi(X)), d);
    }
    *s = hsum8(acc_lo, acc_hi);
}

static void dot_q5_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q5_K *b = w;
    const lb_block_a8_K *a = act;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), b4 = vdupq_n_u8(0x10);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        uint8_t sm[16];
        q4_K_scales_mins(b[i].scales, sm);
        int32x4_t isum = vdupq_n_s32(0);
        for (int g = 0; g < 2; g++) {
            uint8x16_t qh = vld1q_u8(b[i].qh + 16 * g);
            for (int c = 0; c < 4; c++) {
                uint8x16_t q = vld1q_u8(b[i].qs + 32 * c + 16 * g);
                /* element 64c + 32h + l takes bit 2c + h of qh[l] as its bit 4 */
                uint8x16_t h0 = vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)(4 - 2 * c))), b4);
                uint8x16_t h1 = vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)(3 - 2 * c))), b4);
                int8x16_t lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, m4), h0));
                int8x16_t hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), h1));
                isum = dot16_scaled(isum, lo, vld1q_s8(a[i].qs + 64 * c + 16 * g), sm[2 * c]);
                isum = dot16_scaled(isum, hi, vld1q_s8(a[i].qs + 64 * c + 32 + 16 * g), sm[2 * c + 1]);
            }
        }
        int16x8_t bs = vpaddq_s16(vld1q_s16(a[i].bsums), vld1q_s16(a[i].bsums + 8));
        int16x8_t mn = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(sm + 8)));
        int32_t ms = vaddvq_s32(vaddq_s32(vmull_s16(vget_low_s16(mn), vget_low_s16(bs)), vmull_high_s16(mn, bs)));
        acc = combine_k(acc, a[i].d, h2f(b[i].d), h2f(b[i].dmin), vaddvq_s32(isum), ms);
    }
    *s = acc;
}

static void dot_q2_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q2_K *b = w;
    const lb_block_a8_K *a = act;
    const uint8x16_t m2 = vdupq_n_u8(3);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const uint8_t *sc = b[i].scales;
        int32x4_t isum = vdupq_n_s32(0);
        for (int nn = 0; nn < 2; nn++)
            for (int g = 0; g < 2; g++) {
                uint8x16_t q = vld1q_u8(b[i].qs + 32 * nn + 16 * g);
                for (int j = 0; j < 4; j++) {
                    /* elements 128nn + 32j + 16g .. +15: sub-block 8nn + 2j + g */
                    int8x16_t v = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q, vdupq_n_s8((int8_t)(-2 * j))), m2));
                    isum = dot16_scaled(isum, v, vld1q_s8(a[i].qs + 128 * nn + 32 * j + 16 * g),
                                        sc[8 * nn + 2 * j + g] & 0xF);
                }
            }
        /* sum of min * bsum over the 16 sub-blocks */
        uint8x16_t mins = vshrq_n_u8(vld1q_u8(sc), 4);
        int16x8_t m0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mins)));
        int16x8_t m1 = vreinterpretq_s16_u16(vmovl_high_u8(mins));
        int16x8_t b0 = vld1q_s16(a[i].bsums), b1 = vld1q_s16(a[i].bsums + 8);
        int32x4_t ms = vmull_s16(vget_low_s16(m0), vget_low_s16(b0));
        ms = vmlal_high_s16(ms, m0, b0);
        ms = vmlal_s16(ms, vget_low_s16(m1), vget_low_s16(b1));
        ms = vmlal_high_s16(ms, m1, b1);
        acc = combine_k(acc, a[i].d, h2f(b[i].d), h2f(b[i].dmin), vaddvq_s32(isum), vaddvq_s32(ms));
    }
    *s = acc;
}

static void dot_q3_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q3_K *b = w;
    const lb_block_a8_K *a = act;
    const uint8x16_t m2 = vdupq_n_u8(3), four = vdupq_n_u8(4);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        int8_t sc[16];
        q3_K_scales(b[i].scales, sc);
        int32x4_t isum = vdupq_n_s32(0);
        for (int g = 0; g < 2; g++) {
            uint8x16_t hm = vld1q_u8(b[i].hmask + 16 * g);
            for (int nn = 0; nn < 2; nn++) {
                uint8x16_t q = vld1q_u8(b[i].qs + 32 * nn + 16 * g);
                for (int j = 0; j < 4; j++) {
                    /* a clear hmask bit (bit 4nn + j of hmask[l]) means "subtract 4" */
                    uint8x16_t hb = vandq_u8(vshlq_u8(hm, vdupq_n_s8((int8_t)(2 - 4 * nn - j))), four);
                    uint8x16_t lo = vandq_u8(vshlq_u8(q, vdupq_n_s8((int8_t)(-2 * j))), m2);
                    int8x16_t v = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, hb)), vreinterpretq_s8_u8(four));
                    isum = dot16_scaled(isum, v, vld1q_s8(a[i].qs + 128 * nn + 32 * j + 16 * g), sc[8 * nn + 2 * j + g]);
                }
            }
        }
        acc = combine_k(acc, a[i].d, h2f(b[i].d), 0.0f, vaddvq_s32(isum), 0);
    }
    *s = acc;
}

/* ---- A8_K quantizer: id = 127 / max|x|, q = round-half-even(x * id)
 * clamped to +-127 (a NaN element becomes -127, as in the reference). */
static void quant_a8_K(const float *src, void *dst, int64_t n)
{
    lb_block_a8_K *out = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const float *x = src + i * LB_QK_K;
        lb_block_a8_K *b = &out[i];
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int e = 0; e < LB_QK_K; e += 4)
            m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + e)));   /* a NaN lane keeps m */
        float amax = vmaxnmvq_f32(m);
        if (amax == 0) {
            memset(b, 0, sizeof *b);
            continue;
        }
        float id = 127.0f / amax;
        b->d = 1.0f / id;
        const float32x4_t lo = vdupq_n_f32(-127.0f), hi = vdupq_n_f32(127.0f);
        for (int g = 0; g < LB_QK_K / 16; g++) {
            int32x4_t q32[4];
            for (int k = 0; k < 4; k++) {
                float32x4_t v = vmulq_n_f32(vld1q_f32(x + 16 * g + 4 * k), id);
                v = vbslq_f32(vcgeq_f32(v, lo), v, lo);   /* false for NaN */
                v = vminq_f32(v, hi);
                q32[k] = vcvtnq_s32_f32(v);
            }
            int16x8_t l16 = vcombine_s16(vmovn_s32(q32[0]), vmovn_s32(q32[1]));
            int16x8_t h16 = vcombine_s16(vmovn_s32(q32[2]), vmovn_s32(q32[3]));
            vst1q_s8(b->qs + 16 * g, vcombine_s8(vmovn_s16(l16), vmovn_s16(h16)));
            b->bsums[g] = (int16_t)(vaddvq_s16(l16) + vaddvq_s16(h16));
        }
    }
}

#if LB_NEON_DOTPROD
void lb__kernels_register_neon_dotprod_k(lb_kernel_set *k)
#else
void lb__kernels_register_neon_k(lb_kernel_set *k)
#endif
{
    k->vec_dot[LB_TYPE_Q2_K] = dot_q2_K;
    k->vec_dot[LB_TYPE_Q3_K] = dot_q3_K;
    k->vec_dot[LB_TYPE_Q4_K] = dot_q4_K;
    k->vec_dot[LB_TYPE_Q5_K] = dot_q5_K;
    k->vec_dot[LB_TYPE_Q6_K] = dot_q6_K;
    k->quantize[LB_TYPE_A8_K] = quant_a8_K;
}
#endif
