/* Arm NEON (AArch64) kernels for the float weight types F32, F16 and BF16:
 * dot products against F32 activations and dequantizers.
 *
 * The dots keep eight independent FMA accumulators (32 elements per
 * iteration) to hide FMA latency, then 8-element steps and a scalar tail,
 * so any n >= 0 works; the float rounding differs from the reference's
 * double sum within the bound of tests/unit/test_kernels_float.c.  The
 * conversions (FCVTL, the bf16 shift) are exact, so the dequantizers match
 * the scalar reference bit for bit. */
#include "kernels/kernels.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>

#include "base/fp16.h"

static inline float32x4_t load_f32(const void *p, int64_t i) { return vld1q_f32((const float *)p + i); }
static inline float32x4_t load_f16(const void *p, int64_t i)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)p + i)));
}
static inline float32x4_t load_bf16(const void *p, int64_t i)
{
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)p + i), 16));
}

static inline float one_f32(const void *p, int64_t i) { return ((const float *)p)[i]; }
static inline float one_f16(const void *p, int64_t i) { return lb_f16_to_f32(((const lb_f16 *)p)[i]); }
static inline float one_bf16(const void *p, int64_t i) { return lb_bf16_to_f32(((const lb_bf16 *)p)[i]); }

#define DOT_FLOAT(NAME, LOAD, ONE)                                                        \
    static void NAME(int64_t n, float *s, const void *w, const void *a)                   \
    {                                                                                     \
        const float *y = a;     /* [n] */                                                 \
        float32x4_t acc[8];                                                               \
        for (int k = 0; k < 8; k++)                                                       \
            acc[k] = vdupq_n_f32(0.0f);                                                   \
        int64_t i = 0;                                                                    \
        for (; i + 32 <= n; i += 32)                                                      \
            for (int k = 0; k < 8; k++)                                                   \
                acc[k] = vfmaq_f32(acc[k], LOAD(w, i + 4 * k), vld1q_f32(y + i + 4 * k)); \
        for (; i + 8 <= n; i += 8) {                                                      \
            acc[0] = vfmaq_f32(acc[0], LOAD(w, i), vld1q_f32(y + i));                     \
            acc[1] = vfmaq_f32(acc[1], LOAD(w, i + 4), vld1q_f32(y + i + 4));             \
        }                                                                                 \
        float tail = 0.0f;                                                                \
        for (; i < n; i++)                                                                \
            tail += ONE(w, i) * y[i];                                                     \
        for (int k = 0; k < 4; k++)                                                       \
            acc[k] = vaddq_f32(acc[k], acc[k + 4]);                                       \
        acc[0] = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));         \
        *s = vaddvq_f32(acc[0]) + tail;                                                   \
    }

DOT_FLOAT(dot_f32, load_f32, one_f32)
DOT_FLOAT(dot_f16, load_f16, one_f16)
DOT_FLOAT(dot_bf16, load_bf16, one_bf16)

static void dequant_f16(const void *src, float *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(dst + i, load_f16(src, i));
    for (; i < n; i++)
        dst[i] = one_f16(src, i);
}

static void dequant_bf16(const void *src, float *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(dst + i, load_bf16(src, i));
    for (; i < n; i++)
        dst[i] = one_bf16(src, i);
}

/* Same operations per element as the scalar version (a multiply, then an
 * add; no fused multiply-add), so results are bit-identical. */
static void axpy_f32(int64_t n, float a, const float *x, float *y)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_n_f32(vld1q_f32(x + i), a)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

void lb__kernels_register_neon_float(lb_kernel_set *k)
{
    k->axpy_f32 = axpy_f32;
    k->vec_dot[LB_TYPE_F32] = dot_f32;
    k->vec_dot[LB_TYPE_F16] = dot_f16;
    k->vec_dot[LB_TYPE_BF16] = dot_bf16;
    k->dequant[LB_TYPE_F16] = dequant_f16;
    k->dequant[LB_TYPE_BF16] = dequant_bf16;
}
#endif
