/* AVX2 kernels for the float weight types F32, F16 and BF16: dot products
 * against F32 activations and dequantizers.
 *
 * The dots keep four independent FMA accumulators (32 elements per
 * iteration) to hide FMA latency, then one vector step and a scalar tail, so
 * any n >= 0 works.  Conversions (F16C vcvtph2ps, bf16 shift) are exact, so
 * the dequantizers match the scalar reference bit for bit. */
#include "kernels/kernels.h"

#include <immintrin.h>

#include "base/fp16.h"

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 load_f32(const void *p) { return _mm256_loadu_ps(p); }
static inline __m256 load_f16(const void *p) { return _mm256_cvtph_ps(_mm_loadu_si128(p)); }
static inline __m256 load_bf16(const void *p)
{
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

static inline float one_f32(const void *p, int64_t i) { return ((const float *)p)[i]; }
static inline float one_f16(const void *p, int64_t i) { return lb_f16_to_f32(((const lb_f16 *)p)[i]); }
static inline float one_bf16(const void *p, int64_t i) { return lb_bf16_to_f32(((const lb_bf16 *)p)[i]); }

#define DOT_FLOAT(NAME, ELEM, LOAD, ONE)                                                  \
    static void NAME(int64_t n, float *s, const void *w, const void *a)                   \
    {                                                                                     \
        const ELEM *x = w;      /* [n] */                                                 \
        const float *y = a;     /* [n] */                                                 \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                    \
        __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();                    \
        int64_t i = 0;                                                                    \
        for (; i + 32 <= n; i += 32) {                                                    \
            acc0 = _mm256_fmadd_ps(LOAD(x + i), _mm256_loadu_ps(y + i), acc0);            \
            acc1 = _mm256_fmadd_ps(LOAD(x + i + 8), _mm256_loadu_ps(y + i + 8), acc1);    \
            acc2 = _mm256_fmadd_ps(LOAD(x + i + 16), _mm256_loadu_ps(y + i + 16), acc2);  \
            acc3 = _mm256_fmadd_ps(LOAD(x + i + 24), _mm256_loadu_ps(y + i + 24), acc3);  \
        }                                                                                 \
        for (; i + 8 <= n; i += 8)                                                        \
            acc0 = _mm256_fmadd_ps(LOAD(x + i), _mm256_loadu_ps(y + i), acc0);            \
        float tail = 0.0f;                                                                \
        for (; i < n; i++)                                                                \
            tail += ONE(x, i) * y[i];                                                     \
        __m256 acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)); \
        *s = hsum_ps(acc) + tail;                                                         \
    }

DOT_FLOAT(dot_f32, float, load_f32, one_f32)
DOT_FLOAT(dot_f16, lb_f16, load_f16, one_f16)
DOT_FLOAT(dot_bf16, lb_bf16, load_bf16, one_bf16)

static void dequant_f16(const void *src, float *dst, int64_t n)
{
    const lb_f16 *h = src;     /* [n] */
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, load_f16(h + i));
    for (; i < n; i++)
        dst[i] = lb_f16_to_f32(h[i]);
}

static void dequant_bf16(const void *src, float *dst, int64_t n)
{
    const lb_bf16 *h = src;    /* [n] */
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, load_bf16(h + i));
    for (; i < n; i++)
        dst[i] = lb_bf16_to_f32(h[i]);
}

/* Same operation order per element as the scalar version (one multiply,
 * one add; no fused multiply-add), so results are bit-identical. */
static void axpy_f32(int64_t n, float a, const float *x, float *y)
{
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++)
        y[i] += a * x[i];
}

void lb__kernels_register_avx2_float(lb_kernel_set *k)
{
    k->axpy_f32 = axpy_f32;
    k->vec_dot[LB_TYPE_F32] = dot_f32;
    k->vec_dot[LB_TYPE_F16] = dot_f16;
    k->vec_dot[LB_TYPE_BF16] = dot_bf16;
    k->dequant[LB_TYPE_F16] = dequant_f16;
    k->dequant[LB_TYPE_BF16] = dequant_bf16;
}
