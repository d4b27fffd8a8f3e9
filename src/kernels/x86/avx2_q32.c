/* AVX2 kernels for the 32-element families (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0): dot
 * products against A8_32 activations, the A8_32 quantizer and dequantizers.
 *
 * Integer work is exact (maddubs products of at most 2 * 128 * 127 fit in
 * int16); blocks are then combined in float with FMA, two blocks per
 * iteration into independent accumulators.  The quantizer and dequantizers
 * perform the same float operations as quant/ref_q32.c in the same order,
 * so their output is bit-identical to the reference. */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"

static inline float f16(lb_f16 h) { return _cvtsh_ss(h); }

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int32_t hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* 32 nibbles in element order: bytes 0..15 the low nibbles, 16..31 the high. */
static inline __m256i unpack_q4(const uint8_t *qs)
{
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* 0xff in byte j where bit j of the 32-bit little-endian qh is set, else 0. */
static inline __m256i bits_to_bytes(const uint8_t *qh)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    /* byte j takes byte j / 8 of h, then tests bit j % 8 of it */
    const __m256i pick = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), pick);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* Eight int32 partial sums of x*y for signed x, y (|y| <= 127).  maddubs
 * wants an unsigned operand, so x's sign moves onto y. */
static inline __m256i dot_s8(__m256i x, __m256i y)
{
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* The same for unsigned x (at most 31 here). */
static inline __m256i dot_u8(__m256i x, __m256i y)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
}

static inline __m256i load32(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Per-block products: eight int32 partial sums whose total is exactly
 * Σ w_j * a_j.  Q4_0 and Q5_0 store q = w + 8 (+ 16); multiplying the
 * unsigned q and taking 8 * Σa (16 * Σa) off one lane is exact and cheaper
 * than moving w's sign onto a. */
static inline __m256i minus_lane0(__m256i p, int32_t c)
{
    return _mm256_sub_epi32(p, _mm256_zextsi128_si256(_mm_cvtsi32_si128(c)));
}

static inline __m256i prod_q4_0(const lb_block_q4_0 *b, const lb_block_a8_32 *y)
{
    return minus_lane0(dot_u8(unpack_q4(b->qs), load32(y->qs)), 8 * y->sum);
}

static inline __m256i q5_bytes(const uint8_t *qs, const uint8_t *qh)
{
    __m256i hi = _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(unpack_q4(qs), hi);
}

static inline __m256i prod_q5_0(const lb_block_q5_0 *b, const lb_block_a8_32 *y)
{
    return minus_lane0(dot_u8(q5_bytes(b->qs, b->qh), load32(y->qs)), 16 * y->sum);
}

static inline __m256i prod_q8_0(const lb_block_q8_0 *b, const lb_block_a8_32 *y)
{
    return dot_s8(load32(b->qs), load32(y->qs));
}

/* One loop shape for every type: two blocks per iteration into separate
 * accumulators, an odd last block, then the per-block offset terms of the
 * asymmetric types (summed in float, as the reference does). */
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
DOT_SYMMETRIC(dot_q5_0, lb_block_q5_0, prod_q5_0)
DOT_SYMMETRIC(dot_q8_0, lb_block_q8_0, prod_q8_0)

static inline __m256i prod_q4_1(const lb_block_q4_1 *b, const lb_block_a8_32 *y)
{
    return dot_u8(unpack_q4(b->qs), load32(y->qs));
}

static inline __m256i prod_q5_1(const lb_block_q5_1 *b, const lb_block_a8_32 *y)
{
    return dot_u8(q5_bytes(b->qs, b->qh), load32(y->qs));
}

#define DOT_OFFSET(NAME, BLOCK, PROD)                                                     \
    static void NAME(int64_t n, float *s, const void *w, const void *a)                   \
    {                                                                                     \
        const BLOCK *x = w;             /* [n / 32] */                                    \
        const lb_block_a8_32 *y = a;    /* [n / 32] */                                    \
        const int64_t nb = n / LB_QK;                                                     \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                    \
        float summ0 = 0.0f, summ1 = 0.0f;                                                 \
        int64_t i = 0;                                                                    \
        for (; i + 1 < nb; i += 2) {                                                      \
            __m256i p0 = PROD(&x[i], &y[i]);                                              \
            __m256i p1 = PROD(&x[i + 1], &y[i + 1]);                                      \
            __m256 d0 = _mm256_set1_ps(f16(x[i].d) * y[i].d);                             \
            __m256 d1 = _mm256_set1_ps(f16(x[i + 1].d) * y[i + 1].d);                     \
            acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0);                     \
            acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), acc1);                     \
            summ0 += f16(x[i].m) * y[i].d * (float)y[i].sum;                              \
            summ1 += f16(x[i + 1].m) * y[i + 1].d * (float)y[i + 1].sum;                  \
        }                                                                                 \
        if (i < nb) {                                                                     \
            __m256i p0 = PROD(&x[i], &y[i]);                                              \
            __m256 d0 = _mm256_set1_ps(f16(x[i].d) * y[i].d);                             \
            acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0);                     \
            summ0 += f16(x[i].m) * y[i].d * (float)y[i].sum;                              \
        }                                                                                 \
        *s = hsum_ps(_mm256_add_ps(acc0, acc1)) + (summ0 + summ1);                        \
    }

DOT_OFFSET(dot_q4_1, lb_block_q4_1, prod_q4_1)
DOT_OFFSET(dot_q5_1, lb_block_q5_1, prod_q5_1)

/* ---- A8_32 quantizer: the reference's operations, eight lanes at a time. */
static void quant_a8_32(const float *src, void *dst, int64_t n)
{
    lb_block_a8_32 *b = dst;               /* [n / 32] */
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    /* packs interleave 128-bit lanes; this puts the 32 bytes back in order */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < n / LB_QK; i++) {
        const float *x = src + i * LB_QK;  /* [32] */
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
        __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                                 _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        __m256i q = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        q = _mm256_permutevar8x32_epi32(q, order);
        _mm256_storeu_si256((__m256i *)b[i].qs, q);
        b[i].d = lb_f16_to_f32(lb_f32_to_f16(amax / 127.0f));
        b[i].sum = hsum_epi32(sum);
    }
}

/* ---- dequantizers: (float)q * d, then + m for the offset types. */

/* Stores 32 int32 values (four vectors in element order) as (float)q * d + m. */
static inline void store_affine(float *dst, const __m256i q[4], float d, float m, int has_m)
{
    __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
    for (int k = 0; k < 4; k++) {
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(q[k]), vd);
        if (has_m)
            v = _mm256_add_ps(v, vm);
        _mm256_storeu_ps(dst + 8 * k, v);
    }
}

/* 16 nibble bytes -> 32 int32 in element order. */
static inline void nibbles_i32(const uint8_t *qs, __m256i q[4])
{
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
    q[0] = _mm256_cvtepu8_epi32(lo);
    q[1] = _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8));
    q[2] = _mm256_cvtepu8_epi32(hi);
    q[3] = _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8));
}

/* Adds bit j of qh as bit 4 of element j. */
static inline void add_high_bits(const uint8_t *qh, __m256i q[4])
{
    uint32_t h;
    memcpy(&h, qh, 4);
    __m256i vh = _mm256_set1_epi32((int)h);
    __m256i shift = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int k = 0; k < 4; k++) {
        __m256i bit = _mm256_and_si256(_mm256_srlv_epi32(vh, shift), _mm256_set1_epi32(1));
        q[k] = _mm256_or_si256(q[k], _mm256_slli_epi32(bit, 4));
        shift = _mm256_add_epi32(shift, _mm256_set1_epi32(8));
    }
}

static inline void sub_all(__m256i q[4], int c)
{
    for (int k = 0; k < 4; k++)
        q[k] = _mm256_sub_epi32(q[k], _mm256_set1_epi32(c));
}

static void dequant_q4_0(const void *src, float *dst, int64_t n)
{
    const lb_block_q4_0 *b = src;          /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        __m256i q[4];
        nibbles_i32(b[i].qs, q);
        sub_all(q, 8);
        store_affine(dst + i * LB_QK, q, f16(b[i].d), 0.0f, 0);
    }
}

static void dequant_q4_1(const void *src, float *dst, int64_t n)
{
    const lb_block_q4_1 *b = src;          /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        __m256i q[4];
        nibbles_i32(b[i].qs, q);
        store_affine(dst + i * LB_QK, q, f16(b[i].d), f16(b[i].m), 1);
    }
}

static void dequant_q5_0(const void *src, float *dst, int64_t n)
{
    const lb_block_q5_0 *b = src;          /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        __m256i q[4];
        nibbles_i32(b[i].qs, q);
        add_high_bits(b[i].qh, q);
        sub_all(q, 16);
        store_affine(dst + i * LB_QK, q, f16(b[i].d), 0.0f, 0);
    }
}

static void dequant_q5_1(const void *src, float *dst, int64_t n)
{
    const lb_block_q5_1 *b = src;          /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        __m256i q[4];
        nibbles_i32(b[i].qs, q);
        add_high_bits(b[i].qh, q);
        store_affine(dst + i * LB_QK, q, f16(b[i].d), f16(b[i].m), 1);
    }
}

static void dequant_q8_0(const void *src, float *dst, int64_t n)
{
    const lb_block_q8_0 *b = src;          /* [n / 32] */
    for (int64_t i = 0; i < n / LB_QK; i++) {
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b[i].qs + 8 * k)));
        store_affine(dst + i * LB_QK, q, f16(b[i].d), 0.0f, 0);
    }
}

void lb__kernels_register_avx2_q32(lb_kernel_set *k)
{
    k->vec_dot[LB_TYPE_Q4_0] = dot_q4_0;
    k->vec_dot[LB_TYPE_Q4_1] = dot_q4_1;
    k->vec_dot[LB_TYPE_Q5_0] = dot_q5_0;
    k->vec_dot[LB_TYPE_Q5_1] = dot_q5_1;
    k->vec_dot[LB_TYPE_Q8_0] = dot_q8_0;
    k->dequant[LB_TYPE_Q4_0] = dequant_q4_0;
    k->dequant[LB_TYPE_Q4_1] = dequant_q4_1;
    k->dequant[LB_TYPE_Q5_0] = dequant_q5_0;
    k->dequant[LB_TYPE_Q5_1] = dequant_q5_1;
    k->dequant[LB_TYPE_Q8_0] = dequant_q8_0;
    k->quantize[LB_TYPE_A8_32] = quant_a8_32;
}
