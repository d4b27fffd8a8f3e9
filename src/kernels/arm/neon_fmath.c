/* Arm NEON (AArch64) variants of the fixed-rounding float kernels
 * (kernels/fmath.h).  A 16-lane vector of the contract is held as four
 * float32x4_t (lanes 0-3, 4-7, 8-11, 12-15); each variant performs the
 * reference's operations in the reference's order with fused multiply-adds
 * where the reference uses fmaf, so the results are equal bit for bit. */
#include "kernels/kernels.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Four f16 values to float: exact (FCVTL), NaNs quieted as the reference does. */
static inline float32x4_t ld4(const lb_f16 *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

/* The 16-lane reduction of the contract: l + l+8, then + the upper 4, then (0+2) + (1+3). */
static inline float reduce16(const float32x4_t v[4])
{
    float32x4_t t4 = vaddq_f32(vaddq_f32(v[3], v[1]), vaddq_f32(v[2], v[0]));
    return (vgetq_lane_f32(t4, 0) + vgetq_lane_f32(t4, 2)) + (vgetq_lane_f32(t4, 1) + vgetq_lane_f32(t4, 3));
}

/* acc[k] += a * b for the 16 elements at a, b (the products are exact). */
static inline void mac16(float32x4_t acc[4], const lb_f16 *a, const lb_f16 *b)
{
    for (int k = 0; k < 4; k++)
        acc[k] = vfmaq_f32(acc[k], ld4(a + 4 * k), ld4(b + 4 * k));
}

static float dot16(int64_t n, const lb_f16 *a, const lb_f16 *b)
{
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        mac16(acc, a + i, b + i);
    if (i < n) {
        lb_f16 ta[16] = {0}, tb[16] = {0};   /* the tail, zero-padded */
        memcpy(ta, a + i, (size_t)(n - i) * sizeof *a);
        memcpy(tb, b + i, (size_t)(n - i) * sizeof *b);
        mac16(acc, ta, tb);
    }
    return reduce16(acc);
}

static float dot64(int64_t n, int64_t n_vec, const lb_f16 *a, const lb_f16 *b)
{
    float32x4_t acc[16];   /* [4 vectors of 16][4 quarters] */
    for (int j = 0; j < 16; j++)
        acc[j] = vdupq_n_f32(0);
    int64_t nv = n_vec < n ? n_vec : n, i = 0;
    for (; i + 64 <= nv; i += 64)
        for (int v = 0; v < 4; v++)
            mac16(acc + 4 * v, a + i + 16 * v, b + i + 16 * v);
    if (i < nv) {
        lb_f16 ta[64] = {0}, tb[64] = {0};
        memcpy(ta, a + i, (size_t)(nv - i) * sizeof *a);
        memcpy(tb, b + i, (size_t)(nv - i) * sizeof *b);
        for (int v = 0; v < 4; v++)
            mac16(acc + 4 * v, ta + 16 * v, tb + 16 * v);
    }
    float32x4_t r[4];
    for (int k = 0; k < 4; k++)
        r[k] = vaddq_f32(vaddq_f32(acc[k], acc[8 + k]), vaddq_f32(acc[4 + k], acc[12 + k]));
    double sum = reduce16(r);
    /* the tail one product at a time in double, as in the reference */
    float prod[4];
    for (i = n_vec; i + 4 <= n; i += 4) {
        vst1q_f32(prod, vmulq_f32(ld4(a + i), ld4(b + i)));
        for (int j = 0; j < 4; j++)
            sum += (double)prod[j];
    }
    for (; i < n; i++)
        sum += (double)(lb_f16_to_f32(a[i]) * lb_f16_to_f32(b[i]));
    return (float)sum;
}

/* lb_expf on 4 lanes (see fmath.c for the method). */
static inline float32x4_t exp4(float32x4_t x)
{
    const float32x4_t shift = vdupq_n_f32(0x1.8p23f);
    float32x4_t z = vfmaq_f32(shift, x, vdupq_n_f32(0x1.715476p+0f));
    float32x4_t n = vsubq_f32(z, shift);
    float32x4_t r = vfmsq_f32(vfmsq_f32(x, n, vdupq_n_f32(0x1.62e4p-1f)), n, vdupq_n_f32(0x1.7f7d1cp-20f));
    float32x4_t r2 = vmulq_f32(r, r);
    float32x4_t p54 = vfmaq_f32(vdupq_n_f32(0x1.573e2ep-5f), vdupq_n_f32(0x1.0e4020p-7f), r);
    float32x4_t p32 = vfmaq_f32(vdupq_n_f32(0x1.fffdb6p-2f), vdupq_n_f32(0x1.555e66p-3f), r);
    float32x4_t p10 = vfmaq_f32(vdupq_n_f32(1.0f), vdupq_n_f32(0x1.ffffecp-1f), r);
    float32x4_t p = vfmaq_f32(p10, vfmaq_f32(p32, p54, r2), r2);
    /* p * 2^k1 * 2^(k-k1), k1 = k/2 toward zero; n clamped so the exponent
     * arithmetic stays valid where the selects below override it */
    float32x4_t nc = vminq_f32(vmaxq_f32(n, vdupq_n_f32(-192.0f)), vdupq_n_f32(192.0f));
    int32x4_t k = vcvtq_s32_f32(nc);
    int32x4_t k1 = vshrq_n_s32(vsubq_s32(k, vshrq_n_s32(k, 31)), 1);
    int32x4_t bias = vdupq_n_s32(127);
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k1, bias), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vsubq_s32(k, k1), bias), 23));
    float32x4_t res = vmulq_f32(vmulq_f32(p, s1), s2);
    uint32x4_t big = vcagtq_f32(n, vdupq_n_f32(192.0f));
    float32x4_t alt = vbslq_f32(vclezq_f32(n), vdupq_n_f32(0.0f), vdupq_n_f32(__builtin_inff()));
    res = vbslq_f32(big, alt, res);
    /* NaN in, NaN out (the clamp above turned n's NaN into a number) */
    return vbslq_f32(vceqq_f32(n, n), res, n);
}

static double exp_sum(int64_t n, float *y, const float *x, float max)
{
    const float32x4_t mx = vdupq_n_f32(max);
    double sum = 0;
    for (int64_t i = 0; i < n; i += 16) {
        float t[16];
        float32x4_t v[4];
        int64_t m = n - i < 16 ? n - i : 16;
        if (m < 16) {
            for (int l = 0; l < 16; l++)
                t[l] = l < m ? x[i + l] : max;   /* placeholders, zeroed below */
        } else {
            memcpy(t, x + i, sizeof t);
        }
        for (int k = 0; k < 4; k++)
            v[k] = exp4(vsubq_f32(vld1q_f32(t + 4 * k), mx));
        if (m < 16) {
            for (int k = 0; k < 4; k++)
                vst1q_f32(t + 4 * k, v[k]);
            for (int l = 0; l < 16; l++) {
                if (l < m)
                    y[i + l] = t[l];
                else
                    t[l] = 0.0f;
            }
            for (int k = 0; k < 4; k++)
                v[k] = vld1q_f32(t + 4 * k);
        } else {
            for (int k = 0; k < 4; k++)
                vst1q_f32(y + i + 4 * k, v[k]);
        }
        sum += (double)reduce16(v);
    }
    return sum;
}

static void silu_mul(int64_t n, float *g, const float *u)
{
    const float32x4_t one = vdupq_n_f32(1.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t x = vld1q_f32(g + i);
        float32x4_t e = exp4(vsubq_f32(vdupq_n_f32(0.0f), x));
        float32x4_t s = vdivq_f32(x, vaddq_f32(one, e));
        vst1q_f32(g + i, vmulq_f32(s, vld1q_f32(u + i)));
    }
    for (; i < n; i++) {
        float s = g[i] / (1.0f + lb_expf(0.0f - g[i]));
        g[i] = s * u[i];
    }
}

static void to_f16(int64_t n, const float *x, lb_f16 *y)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++)
        y[i] = lb_f32_to_f16(x[i]);
}

void lb__fmath_register_neon(lb_fmath *f)
{
    f->dot16 = dot16;
    f->dot64 = dot64;
    f->exp_sum = exp_sum;
    f->silu_mul = silu_mul;
    f->to_f16 = to_f16;
}
#endif
