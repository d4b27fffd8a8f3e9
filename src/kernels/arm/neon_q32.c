/* Arm NEON (AArch64) kernels for the 32-element families (Q4_0 Q4_1 Q5_0
 * Q5_1 Q8_0): dot products against A8_32 activations and the A8_32
 * quantizer.
 *
 * int8 x int8 products are exact in int16 (vmull), pairs of them exact in
 * int32 (vpadal) -- or, built for the dot-product extension
 * (neon_q32_dotprod.c includes this file with LB_NEON_DOTPROD set), four
 * products summed exactly by SDOT -- so each block's integer sum is exact; blocks are combined
 * in four float lanes with fused multiply-adds, which rounds differently
 * from the reference's one running sum (tests/unit/test_kernels_q32.c states
 * the bound).  The quantizer performs the reference's float operations and
 * rounds half to even (vcvtnq), so its bytes equal the reference's. */
#include "kernels/kernels.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>

#if !defined(LB_NEON_DOTPROD)
#define LB_NEON_DOTPROD 0
#endif
#include <string.h>

#include "quant/blocks.h"

static inline float f16(lb_f16 h) { return lb_f16_to_f32(h); }

/* acc + the four int32 partial sums of x[j] * y[j] over 16 int8 pairs (no
 * pair may be -128 * -128; activations are within +-127). */
static inline int32x4_t dot_s8(int32x4_t acc, int8x16_t x, int8x16_t y)
{
#if LB_NEON_DOTPROD
    return vdotq_s32(acc, x, y);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(x), vget_low_s8(y)));
    return vpadalq_s16(acc, vmull_high_s8(x, y));
#endif
}

/* 0xff in byte j of *lo (elements 0..15) and *hi (16..31) where bit j of the
 * little-endian 32-bit qh is set. */
static inline void bits_to_bytes(const uint8_t *qh, uint8x16_t *lo, uint8x16_t *hi)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    static const uint8_t sel0[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    static const uint8_t sel1[16] = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t v = vreinterpretq_u8_u32(vdupq_n_u32(h)), bit = vld1q_u8(bits);
    *lo = vtstq_u8(vqtbl1q_u8(v, vld1q_u8(sel0)), bit);
    *hi = vtstq_u8(vqtbl1q_u8(v, vld1q_u8(sel1)), bit);
}

/* Per-block integer products: four int32 lanes whose total is exactly
 * sum_j w_j * a_j, w the block's quant with its offset removed. */
static inline int32x4_t prod_q4(const uint8_t *qs, const int8_t *a, int off)
{
    uint8x16_t b = vld1q_u8(qs);
    int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0f)));
    int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(b, 4));
    lo = vsubq_s8(lo, vdupq_n_s8((int8_t)off));
    hi = vsubq_s8(hi, vdupq_n_s8((int8_t)off));
    return dot_s8(dot_s8(vdupq_n_s32(0), lo, vld1q_s8(a)), hi, vld1q_s8(a + 16));
}

static inline int32x4_t prod_q5(const uint8_t *qs, const uint8_t *qh, const int8_t *a, int off)
{
    uint8x16_t b = vld1q_u8(qs), hl, hh;
    bits_to_bytes(qh, &hl, &hh);
    const uint8x16_t b4 = vdupq_n_u8(0x10);
    int8x16_t lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b, vdupq_n_u8(0x0f)), vandq_u8(hl, b4)));
    int8x16_t hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(b, 4), vandq_u8(hh, b4)));
    lo = vsubq_s8(lo, vdupq_n_s8((int8_t)off));
    hi = vsubq_s8(hi, vdupq_n_s8((int8_t)off));
    return dot_s8(dot_s8(vdupq_n_s32(0), lo, vld1q_s8(a)), hi, vld1q_s8(a + 16));
}

static inline int32x4_t prod_q4_0(const lb_block_q4_0 *b, const lb_block_a8_32 *y) { return prod_q4(b->qs, y->qs, 8); }
static inline int32x4_t prod_q4_1(const lb_block_q4_1 *b, const lb_block_a8_32 *y) { return prod_q4(b->qs, y->qs, 0); }
static inline int32x4_t prod_q5_0(const lb_block_q5_0 *b, const lb_block_a8_32 *y) { return prod_q5(b->qs, b->qh, y->qs, 16); }
static inline int32x4_t prod_q5_1(const lb_block_q5_1 *b, const lb_block_a8_32 *y) { return prod_q5(b->qs, b->qh, y->qs, 0); }
static inline int32x4_t prod_q8_0(const lb_block_q8_0 *b, const lb_block_a8_32 *y)
{
    int32x4_t p = dot_s8(vdupq_n_s32(0), vld1q_s8(b->qs), vld1q_s8(y->qs));
    return dot_s8(p, vld1q_s8(b->qs + 16), vld1q_s8(y->qs + 16));
}

/* The offset term m * d_a * sum(a) of a block of the asymmetric types. */
static inline float off_none(const void *b, const lb_block_a8_32 *y) { (void)b; (void)y; return 0.0f; }
static inline float off_q4_1(const lb_block_q4_1 *b, const lb_block_a8_32 *y) { return f16(b->m) * y->d * (float)y->sum; }
static inline float off_q5_1(const lb_block_q5_1 *b, const lb_block_a8_32 *y) { return f16(b->m) * y->d * (float)y->sum; }

/* Two blocks per iteration into separate accumulators (hides the FMA
 * latency); the offset terms are summed in float on the side. */
#define DOT(NAME, BLOCK, PROD, OFF)                                                       \
    static void NAME(int64_t n, float *s, const void *w, const void *a)                   \
    {                                                                                     \
        const BLOCK *x = w;             /* [n / 32] */                                    \
        const lb_block_a8_32 *y = a;    /* [n / 32] */                                    \
        const int64_t nb = n / LB_QK;                                                     \
        float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);                   \
        float summ = 0.0f;                                                                \
        int64_t i = 0;                                                                    \
        for (; i + 1 < nb; i += 2) {                                                      \
            float32x4_t p0 = vcvtq_f32_s32(PROD(&x[i], &y[i]));                           \
            float32x4_t p1 = vcvtq_f32_s32(PROD(&x[i + 1], &y[i + 1]));                   \
            acc0 = vfmaq_n_f32(acc0, p0, f16(x[i].d) * y[i].d);                           \
            acc1 = vfmaq_n_f32(acc1, p1, f16(x[i + 1].d) * y[i + 1].d);                   \
            summ += OFF(&x[i], &y[i]) + OFF(&x[i + 1], &y[i + 1]);                        \
        }                                                                                 \
        if (i < nb) {                                                                     \
            float32x4_t p0 = vcvtq_f32_s32(PROD(&x[i], &y[i]));                           \
            acc0 = vfmaq_n_f32(acc0, p0, f16(x[i].d) * y[i].d);                           \
            summ += OFF(&x[i], &y[i]);                                                    \
        }                                                                                 \
        *s = vaddvq_f32(vaddq_f32(acc0, acc1)) + summ;                                    \
    }

DOT(dot_q4_0, lb_block_q4_0, prod_q4_0, off_none)
DOT(dot_q5_0, lb_block_q5_0, prod_q5_0, off_none)
DOT(dot_q8_0, lb_block_q8_0, prod_q8_0, off_none)
DOT(dot_q4_1, lb_block_q4_1, prod_q4_1, off_q4_1)
DOT(dot_q5_1, lb_block_q5_1, prod_q5_1, off_q5_1)

/* ---- A8_32 quantizer: the reference's rule, four lanes at a time. */
static void quant_a8_32(const float *src, void *dst, int64_t n)
{
    lb_block_a8_32 *b = dst;               /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        const float *x = src + i * LB_QK;  /* [32] */
        float32x4_t v[8];
        /* maxnm ignores a NaN lane, as the reference's comparison does */
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int k = 0; k < 8; k++) {
            v[k] = vld1q_f32(x + 4 * k);
            m = vmaxnmq_f32(m, vabsq_f32(v[k]));
        }
        float amax = vmaxnmvq_f32(m);
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32x4_t q32[8], sum = vdupq_n_s32(0);
        for (int k = 0; k < 8; k++) {
            q32[k] = vcvtnq_s32_f32(vmulq_n_f32(v[k], id));
            sum = vaddq_s32(sum, q32[k]);
        }
        for (int k = 0; k < 2; k++) {
            int16x8_t lo = vcombine_s16(vqmovn_s32(q32[4 * k]), vqmovn_s32(q32[4 * k + 1]));
            int16x8_t hi = vcombine_s16(vqmovn_s32(q32[4 * k + 2]), vqmovn_s32(q32[4 * k + 3]));
            vst1q_s8(b[i].qs + 16 * k, vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)));
        }
        b[i].d = lb_f16_to_f32(lb_f32_to_f16(amax / 127.0f));
        b[i].sum = vaddvq_s32(sum);
    }
}

#if LB_NEON_DOTPROD
void lb__kernels_register_neon_dotprod_q32(lb_kernel_set *k)
#else
void lb__kernels_register_neon_q32(lb_kernel_set *k)
#endif
{
    k->vec_dot[LB_TYPE_Q4_0] = dot_q4_0;
    k->vec_dot[LB_TYPE_Q4_1] = dot_q4_1;
    k->vec_dot[LB_TYPE_Q5_0] = dot_q5_0;
    k->vec_dot[LB_TYPE_Q5_1] = dot_q5_1;
    k->vec_dot[LB_TYPE_Q8_0] = dot_q8_0;
    k->quantize[LB_TYPE_A8_32] = quant_a8_32;
}
#endif
