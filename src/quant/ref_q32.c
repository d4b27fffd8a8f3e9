/* Scalar reference for the 32-element families Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
 * and their int8 activation format A8_32.
 *
 * Layouts and rounding follow llama.cpp's reference quantizers, so blocks
 * written here read back the same in llama.cpp and vice versa.  The dot
 * products sum integers exactly within a block and then combine blocks in
 * float, in block order; that order is the definition the SIMD kernels are
 * compared with. */
#include "quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "quant/blocks.h"

/* Element j of a 4-bit block: low nibble of qs[j] for j < 16, high nibble
 * of qs[j - 16] otherwise. */
static inline int nib(const uint8_t *qs, int j)
{
    return j < LB_QK / 2 ? (qs[j] & 0x0f) : (qs[j - LB_QK / 2] >> 4);
}

/* The 5-bit value of element j: nibble plus bit j of qh as bit 4. */
static inline int q5(const uint8_t *qs, const uint8_t qh[4], int j)
{
    uint32_t h;
    memcpy(&h, qh, 4);                    /* little-endian, as on disk */
    return nib(qs, j) | (int)(((h >> j) & 1u) << 4);
}

/* Float to int with truncation toward zero, clamped to [0, hi].  llama.cpp
 * casts directly (undefined for NaN or huge values); clamping first gives
 * the same result for every finite in-range input and stays defined. */
static inline int trunc_clamp(float v, int hi)
{
    if (!(v > 0.0f))
        return 0;
    if (v >= (float)hi)
        return hi;
    return (int)v;
}

/* ---- dequantize: each element is (float)q * d (+ m), one rounding per op.
 * Products and sums sit in separate statements throughout this file so that
 * no compiler fuses them into an FMA (clang does so within an expression),
 * which would change the last bit against the SIMD kernels. */

static void dequant_q4_0(const void *src, float *dst, int64_t n)
{
    const lb_block_q4_0 *b = src;          /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        float d = lb_f16_to_f32(b[i].d);
        for (int j = 0; j < LB_QK; j++)
            dst[i * LB_QK + j] = (float)(nib(b[i].qs, j) - 8) * d;
    }
}

static void dequant_q4_1(const void *src, float *dst, int64_t n)
{
    const lb_block_q4_1 *b = src;          /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        float d = lb_f16_to_f32(b[i].d), m = lb_f16_to_f32(b[i].m);
        for (int j = 0; j < LB_QK; j++) {
            float v = (float)nib(b[i].qs, j) * d;
            dst[i * LB_QK + j] = v + m;
        }
    }
}

static void dequant_q5_0(const void *src, float *dst, int64_t n)
{
    const lb_block_q5_0 *b = src;          /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        float d = lb_f16_to_f32(b[i].d);
        for (int j = 0; j < LB_QK; j++)
            dst[i * LB_QK + j] = (float)(q5(b[i].qs, b[i].qh, j) - 16) * d;
    }
}

static void dequant_q5_1(const void *src, float *dst, int64_t n)
{
    const lb_block_q5_1 *b = src;          /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        float d = lb_f16_to_f32(b[i].d), m = lb_f16_to_f32(b[i].m);
        for (int j = 0; j < LB_QK; j++) {
            float v = (float)q5(b[i].qs, b[i].qh, j) * d;
            dst[i * LB_QK + j] = v + m;
        }
    }
}

static void dequant_q8_0(const void *src, float *dst, int64_t n)
{
    const lb_block_q8_0 *b = src;          /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        float d = lb_f16_to_f32(b[i].d);
        for (int j = 0; j < LB_QK; j++)
            dst[i * LB_QK + j] = (float)b[i].qs[j] * d;
    }
}

static void dequant_a8_32(const void *src, float *dst, int64_t n)
{
    const lb_block_a8_32 *b = src;         /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++)
        for (int j = 0; j < LB_QK; j++)
            dst[i * LB_QK + j] = (float)b[i].qs[j] * b[i].d;
}

/* ---- quantize */

/* The signed value of largest magnitude (first one on ties), as llama.cpp
 * picks it for the symmetric types: its sign fixes the sign of d so that
 * the extreme maps exactly to the most negative level. */
static float signed_absmax(const float *x)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < LB_QK; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, float *mn, float *mx)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < LB_QK; j++) {
        if (x[j] < lo)
            lo = x[j];
        if (x[j] > hi)
            hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

static void quant_q4_0(const float *src, void *dst, int64_t n)
{
    lb_block_q4_0 *b = dst;                /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        const float *x = src + i * LB_QK;  /* [32] */
        float d = signed_absmax(x) / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = lb_f32_to_f16(d);
        for (int j = 0; j < LB_QK / 2; j++) {
            float vlo = x[j] * id, vhi = x[j + LB_QK / 2] * id;
            int lo = trunc_clamp(vlo + 8.5f, 15);
            int hi = trunc_clamp(vhi + 8.5f, 15);
            b[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void quant_q4_1(const float *src, void *dst, int64_t n)
{
    lb_block_q4_1 *b = dst;                /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        const float *x = src + i * LB_QK;  /* [32] */
        float mn, mx;
        min_max(x, &mn, &mx);
        float d = (mx - mn) / 15.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = lb_f32_to_f16(d);
        b[i].m = lb_f32_to_f16(mn);
        for (int j = 0; j < LB_QK / 2; j++) {
            float vlo = (x[j] - mn) * id, vhi = (x[j + LB_QK / 2] - mn) * id;
            int lo = trunc_clamp(vlo + 0.5f, 15);
            int hi = trunc_clamp(vhi + 0.5f, 15);
            b[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

/* Packs 32 five-bit values: low nibbles as Q4 does, bit 4 of element j into bit j of qh. */
static void pack5(const int q[LB_QK], uint8_t qs[LB_QK / 2], uint8_t qh[4])
{
    uint32_t h = 0;
    for (int j = 0; j < LB_QK / 2; j++)
        qs[j] = (uint8_t)((q[j] & 0x0f) | ((q[j + LB_QK / 2] & 0x0f) << 4));
    for (int j = 0; j < LB_QK; j++)
        h |= (uint32_t)((q[j] >> 4) & 1) << j;
    memcpy(qh, &h, 4);
}

static void quant_q5_0(const float *src, void *dst, int64_t n)
{
    lb_block_q5_0 *b = dst;                /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        const float *x = src + i * LB_QK;  /* [32] */
        float d = signed_absmax(x) / -16.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[LB_QK];
        for (int j = 0; j < LB_QK; j++) {
            float v = x[j] * id;
            q[j] = trunc_clamp(v + 16.5f, 31);
        }
        b[i].d = lb_f32_to_f16(d);
        pack5(q, b[i].qs, b[i].qh);
    }
}

static void quant_q5_1(const float *src, void *dst, int64_t n)
{
    lb_block_q5_1 *b = dst;                /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        const float *x = src + i * LB_QK;  /* [32] */
        float mn, mx;
        min_max(x, &mn, &mx);
        float d = (mx - mn) / 31.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[LB_QK];
        for (int j = 0; j < LB_QK; j++) {
            float v = (x[j] - mn) * id;
            q[j] = trunc_clamp(v + 0.5f, 31);
        }
        b[i].d = lb_f32_to_f16(d);
        b[i].m = lb_f32_to_f16(mn);
        pack5(q, b[i].qs, b[i].qh);
    }
}

static float absmax(const float *x)
{
    float amax = 0.0f;
    for (int j = 0; j < LB_QK; j++)
        if (fabsf(x[j]) > amax)
            amax = fabsf(x[j]);
    return amax;
}

/* Q8_0 rounds half away from zero (roundf), as llama.cpp's reference does. */
static void quant_q8_0(const float *src, void *dst, int64_t n)
{
    lb_block_q8_0 *b = dst;                /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        const float *x = src + i * LB_QK;  /* [32] */
        float d = absmax(x) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = lb_f32_to_f16(d);
        for (int j = 0; j < LB_QK; j++)
            b[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* A8_32 rounds half to even (nearbyintf in the default rounding mode), the
 * rounding of the SIMD float-to-int conversions, so every variant produces
 * the same bytes.  The scale rules follow llama.cpp's q8_0 activations
 * (q = round(x * 127/amax), scale amax/127 rounded to f16): int8 rounding
 * amplifies tiny upstream differences, so matching the reference engine's
 * rule is what lets greedy output on quantized files agree with it. */
static void quant_a8_32(const float *src, void *dst, int64_t n)
{
    lb_block_a8_32 *b = dst;               /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        const float *x = src + i * LB_QK;  /* [32] */
        float amax = absmax(x);
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < LB_QK; j++) {
            b[i].qs[j] = (int8_t)nearbyintf(x[j] * id);
            sum += b[i].qs[j];
        }
        b[i].d = lb_f16_to_f32(lb_f32_to_f16(amax / 127.0f));
        b[i].sum = sum;
    }
}

/* ---- dot products against A8_32 */

static void dot_q4_0(int64_t n, float *s, const void *w, const void *a)
{
    const lb_block_q4_0 *x = w;            /* [n / 32] */
    const lb_block_a8_32 *y = a;           /* [n / 32] */
    float acc = 0.0f;
    for (int64_t i = 0; i < n / LB_QK; i++) {
        int32_t isum = 0;
        for (int j = 0; j < LB_QK; j++)
            isum += (nib(x[i].qs, j) - 8) * y[i].qs[j];
        float t = lb_f16_to_f32(x[i].d) * y[i].d * (float)isum;
        acc += t;
    }
    *s = acc;
}

static void dot_q4_1(int64_t n, float *s, const void *w, const void *a)
{
    const lb_block_q4_1 *x = w;            /* [n / 32] */
    const lb_block_a8_32 *y = a;           /* [n / 32] */
    float acc = 0.0f;
    for (int64_t i = 0; i < n / LB_QK; i++) {
        int32_t isum = 0;
        for (int j = 0; j < LB_QK; j++)
            isum += nib(x[i].qs, j) * y[i].qs[j];
        float t = lb_f16_to_f32(x[i].d) * y[i].d * (float)isum;
        float u = lb_f16_to_f32(x[i].m) * y[i].d * (float)y[i].sum;
        acc += t + u;
    }
    *s = acc;
}

static void dot_q5_0(int64_t n, float *s, const void *w, const void *a)
{
    const lb_block_q5_0 *x = w;            /* [n / 32] */
    const lb_block_a8_32 *y = a;           /* [n / 32] */
    float acc = 0.0f;
    for (int64_t i = 0; i < n / LB_QK; i++) {
        int32_t isum = 0;
        for (int j = 0; j < LB_QK; j++)
            isum += (q5(x[i].qs, x[i].qh, j) - 16) * y[i].qs[j];
        float t = lb_f16_to_f32(x[i].d) * y[i].d * (float)isum;
        acc += t;
    }
    *s = acc;
}

static void dot_q5_1(int64_t n, float *s, const void *w, const void *a)
{
    const lb_block_q5_1 *x = w;            /* [n / 32] */
    const lb_block_a8_32 *y = a;           /* [n / 32] */
    float acc = 0.0f;
    for (int64_t i = 0; i < n / LB_QK; i++) {
        int32_t isum = 0;
        for (int j = 0; j < LB_QK; j++)
            isum += q5(x[i].qs, x[i].qh, j) * y[i].qs[j];
        float t = lb_f16_to_f32(x[i].d) * y[i].d * (float)isum;
        float u = lb_f16_to_f32(x[i].m) * y[i].d * (float)y[i].sum;
        acc += t + u;
    }
    *s = acc;
}

static void dot_q8_0(int64_t n, float *s, const void *w, const void *a)
{
    const lb_block_q8_0 *x = w;            /* [n / 32] */
    const lb_block_a8_32 *y = a;           /* [n / 32] */
    float acc = 0.0f;
    for (int64_t i = 0; i < n / LB_QK; i++) {
        int32_t isum = 0;
        for (int j = 0; j < LB_QK; j++)
            isum += x[i].qs[j] * y[i].qs[j];
        float t = lb_f16_to_f32(x[i].d) * y[i].d * (float)isum;
        acc += t;
    }
    *s = acc;
}

void lb__quant_ref_register_q32(lb_quant_traits *t)
{
    t[LB_TYPE_Q4_0] = (lb_quant_traits){LB_TYPE_A8_32, dequant_q4_0, quant_q4_0, dot_q4_0};
    t[LB_TYPE_Q4_1] = (lb_quant_traits){LB_TYPE_A8_32, dequant_q4_1, quant_q4_1, dot_q4_1};
    t[LB_TYPE_Q5_0] = (lb_quant_traits){LB_TYPE_A8_32, dequant_q5_0, quant_q5_0, dot_q5_0};
    t[LB_TYPE_Q5_1] = (lb_quant_traits){LB_TYPE_A8_32, dequant_q5_1, quant_q5_1, dot_q5_1};
    t[LB_TYPE_Q8_0] = (lb_quant_traits){LB_TYPE_A8_32, dequant_q8_0, quant_q8_0, dot_q8_0};
    t[LB_TYPE_A8_32] = (lb_quant_traits){LB_TYPE_A8_32, dequant_a8_32, quant_a8_32, NULL};
}
