/* AVX-512 VNNI dot products of Q4_0 and Q8_0 against A8_32: VPDPBUSD does
 * maddubs + madd(1) in one instruction.  Every int32 lane and every float
 * operation is the AVX2 kernels' (kernels/x86/avx2_q32.c), so both sets give
 * the same bits. */
#include "kernels/kernels.h"

#include <immintrin.h>

#include "quant/blocks.h"

static inline float f16(lb_f16 h) { return _cvtsh_ss(h); }

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i load32(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* 32 nibbles in element order: bytes 0..15 the low nibbles, 16..31 the high
 * (the 16 bytes in both lanes, the high lane's words shifted by 4). */
static inline __m256i unpack_q4(const uint8_t *qs)
{
    __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    both = _mm256_srlv_epi16(both, _mm256_setr_epi64x(0, 0, 0x0004000400040004ll, 0x0004000400040004ll));
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* Q4_0 stores q = w + 8: the unsigned q times a, accumulated onto -8 * sum(a)
 * in lane 0 (where the AVX2 kernel takes it off: the same lanes). */
static inline __m256i prod_q4_0(const lb_block_q4_0 *b, const lb_block_a8_32 *y)
{
    __m256i init = _mm256_zextsi128_si256(_mm_cvtsi32_si128(-8 * y->sum));
    return _mm256_dpbusd_epi32(init, unpack_q4(b->qs), load32(y->qs));
}

/* Signed times signed: |w| is the unsigned operand and w's sign moves onto a
 * (|a| <= 127, so negating cannot wrap). */
static inline __m256i prod_q8_0(const lb_block_q8_0 *b, const lb_block_a8_32 *y)
{
    __m256i x = load32(b->qs);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(x), _mm256_sign_epi8(load32(y->qs), x));
}

/* Two blocks per iteration into separate accumulators, then an odd last
 * block: the AVX2 loop, float for float. */
#define DOT_SYMMETRIC(NAME, BLOCK, PROD)                                                  \
    static void NAME(int64_t n, float *s, const void *w, const void *a)                   \
    {                                                                                     \
        const BLOCK *x = w;             /* [n / 32] */                                    \
        const lb_block_a8_32 *y = a;    /* [n / 32] */                                    \
        const int64_t nb = n / LB_QK;                                                     \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                    \
        int64_t i = 0;                                                                    \
        for (; i + 1 < nb; i += 2) {                                                      \
            __m256i p0 = PROD(&x[i], &y[i]);                                              \
            __m256i p1 = PROD(&x[i + 1], &y[i + 1]);                                      \
            __m256 d0 = _mm256_set1_ps(f16(x[i].d) * y[i].d);                             \
            __m256 d1 = _mm256_set1_ps(f16(x[i + 1].d) * y[i + 1].d);                     \
            acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0);                     \
            acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), acc1);                     \
        }                                                                                 \
        if (i < nb) {                                                                     \
            __m256i p0 = PROD(&x[i], &y[i]);                                              \
            __m256 d0 = _mm256_set1_ps(f16(x[i].d) * y[i].d);                             \
            acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0);                     \
        }                                                                                 \
        *s = hsum_ps(_mm256_add_ps(acc0, acc1));                                          \
    }

DOT_SYMMETRIC(dot_q4_0, lb_block_q4_0, prod_q4_0)
DOT_SYMMETRIC(dot_q8_0, lb_block_q8_0, prod_q8_0)

/* ---- four activation rows per weight row (prefill, batched decoding): a
 * weight block is unpacked once for all four, and row j's float operations
 * are DOT_SYMMETRIC's in its order, so s[j * s_stride] has vec_dot's bits. */

/* Q4_0's unsigned quants of block b. */
static inline __m256i wq_q4_0(const lb_block_q4_0 *b) { return unpack_q4(b->qs); }
static inline __m256i prod4_q4_0(__m256i u, const lb_block_a8_32 *y)
{
    __m256i init = _mm256_zextsi128_si256(_mm_cvtsi32_si128(-8 * y->sum));
    return _mm256_dpbusd_epi32(init, u, load32(y->qs));
}

/* Q8_0's signed quants; prod4 needs |w| and w itself (for the sign). */
static inline __m256i wq_q8_0(const lb_block_q8_0 *b) { return load32(b->qs); }
static inline __m256i prod4_q8_0(__m256i x, const lb_block_a8_32 *y)
{
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(x), _mm256_sign_epi8(load32(y->qs), x));
}

#define DOT4_SYMMETRIC(NAME, BLOCK, WQ, PROD)                                             \
    static void NAME(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, \
                     size_t act_stride)                                                   \
    {                                                                                     \
        const BLOCK *x = w;               /* [n / 32] */                                  \
        const lb_block_a8_32 *y[4];       /* [4] rows, each [n / 32] */                   \
        for (int j = 0; j < 4; j++)                                                       \
            y[j] = (const lb_block_a8_32 *)((const char *)act + (size_t)j * act_stride);  \
        const int64_t nb = n / LB_QK;                                                     \
        __m256 acc0[4], acc1[4];                                                          \
        for (int j = 0; j < 4; j++)                                                       \
            acc0[j] = acc1[j] = _mm256_setzero_ps();                                      \
        int64_t i = 0;                                                                    \
        for (; i + 1 < nb; i += 2) {                                                      \
            __m256i u0 = WQ(&x[i]), u1 = WQ(&x[i + 1]);                                   \
            float dw0 = f16(x[i].d), dw1 = f16(x[i + 1].d);                               \
            _Pragma("GCC unroll 4")                                                       \
            for (int j = 0; j < 4; j++) {                                                 \
                __m256i p0 = PROD(u0, &y[j][i]);                                          \
                __m256i p1 = PROD(u1, &y[j][i + 1]);                                      \
                acc0[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw0 * y[j][i].d), _mm256_cvtepi32_ps(p0), acc0[j]); \
                acc1[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw1 * y[j][i + 1].d), _mm256_cvtepi32_ps(p1), acc1[j]); \
            }                                                                             \
        }                                                                                 \
        if (i < nb) {                                                                     \
            __m256i u0 = WQ(&x[i]);                                                       \
            float dw0 = f16(x[i].d);                                                      \
            for (int j = 0; j < 4; j++)                                                   \
                acc0[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw0 * y[j][i].d),                \
                                          _mm256_cvtepi32_ps(PROD(u0, &y[j][i])), acc0[j]); \
        }                                                                                 \
        for (int j = 0; j < 4; j++)                                                       \
            s[j * s_stride] = hsum_ps(_mm256_add_ps(acc0[j], acc1[j]));                   \
    }

DOT4_SYMMETRIC(dot4_q4_0, lb_block_q4_0, wq_q4_0, prod4_q4_0)
DOT4_SYMMETRIC(dot4_q8_0, lb_block_q8_0, wq_q8_0, prod4_q8_0)

void lb__kernels_register_avx512_q32(lb_kernel_set *k)
{
    k->vec_dot[LB_TYPE_Q4_0] = dot_q4_0;
    k->vec_dot[LB_TYPE_Q8_0] = dot_q8_0;
    k->vec_dot4[LB_TYPE_Q4_0] = dot4_q4_0;
    k->vec_dot4[LB_TYPE_Q8_0] = dot4_q8_0;
}
