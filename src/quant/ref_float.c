/* Scalar reference for the float types F32, F16 and BF16.  Their dot
 * products take F32 activations: converting activations down would only lose
 * precision, and these types are not the memory-bound case lowbit optimises. */
#include "quant.h"

#include <string.h>

#include "base/fp16.h"

static void dequant_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void quant_f32(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }

static void dequant_f16(const void *src, float *dst, int64_t n)
{
    const lb_f16 *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = lb_f16_to_f32(h[i]);
}

static void quant_f16(const float *src, void *dst, int64_t n)
{
    lb_f16 *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = lb_f32_to_f16(src[i]);
}

static void dequant_bf16(const void *src, float *dst, int64_t n)
{
    const lb_bf16 *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = lb_bf16_to_f32(h[i]);
}

static void quant_bf16(const float *src, void *dst, int64_t n)
{
    lb_bf16 *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = lb_f32_to_bf16(src[i]);
}

/* Accumulated in double so the reference is a trustworthy yardstick for the
 * float-tolerance checks of the SIMD versions. */
static void dot_f32(int64_t n, float *s, const void *w, const void *a)
{
    const float *x = w, *y = a;
    double acc = 0;
    for (int64_t i = 0; i < n; i++)
        acc += (double)x[i] * y[i];
    *s = (float)acc;
}

static void dot_f16(int64_t n, float *s, const void *w, const void *a)
{
    const lb_f16 *x = w;
    const float *y = a;
    double acc = 0;
    for (int64_t i = 0; i < n; i++)
        acc += (double)lb_f16_to_f32(x[i]) * y[i];
    *s = (float)acc;
}

static void dot_bf16(int64_t n, float *s, const void *w, const void *a)
{
    const lb_bf16 *x = w;
    const float *y = a;
    double acc = 0;
    for (int64_t i = 0; i < n; i++)
        acc += (double)lb_bf16_to_f32(x[i]) * y[i];
    *s = (float)acc;
}

void lb__quant_ref_register_float(lb_quant_traits *t)
{
    t[LB_TYPE_F32] = (lb_quant_traits){LB_TYPE_F32, dequant_f32, quant_f32, dot_f32};
    t[LB_TYPE_F16] = (lb_quant_traits){LB_TYPE_F32, dequant_f16, quant_f16, dot_f16};
    t[LB_TYPE_BF16] = (lb_quant_traits){LB_TYPE_F32, dequant_bf16, quant_bf16, dot_bf16};
}
