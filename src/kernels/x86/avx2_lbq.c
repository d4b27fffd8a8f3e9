/* AVX2 kernels for lowbit's LBQ2/LBQ3/LBQ4 weights: dot products against A8_H
 * (one activation row, and four rows per weight row for prefill) and the A8_H
 * activation quantizer.  Same bits as the scalar reference in
 * quant/lbq.c: the integer sums are exact and the float combination per
 * block is done in the reference's order. */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/lbq.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define UNROLL _Pragma("GCC unroll 8")

static inline __m256i load32(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

static inline int32_t hsum_i32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* sum_g sc_g * sum(a of group g), from the activation's 16-element partial sums. */
static inline int32_t scaled_asum(const uint8_t *scales, const int16_t *bsums)
{
    int32_t s = 0;
    UNROLL
    for (int g = 0; g < 8; g++)
        s += (((scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1) * (bsums[2 * g] + bsums[2 * g + 1]);
    return s;
}

/* q (unsigned, 32 elements of one group) times a, scaled by the group's sc, added to acc. */
static inline __m256i group_dot(__m256i acc, __m256i q, const int8_t *a, int sc)
{
    __m256i p = _mm256_maddubs_epi16(q, load32(a)); /* |q*a| pairs <= 2 * 15 * 128: no saturation */
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16((short)sc)));
}

static void dot_lbq2(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbq2 *b = w;
    const lb_block_a8_K *a = act;
    const __m256i m3 = _mm256_set1_epi8(3);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m256i sum = _mm256_setzero_si256();
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i qs = load32(b[i].qs + 32 * h);
            UNROLL
            for (int j = 0; j < 4; j++) {
                int g = 4 * h + j;
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * j), m3);
                sum = group_dot(sum, q, a[i].qs + 32 * g, ((b[i].scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1);
            }
        }
        int32_t isum = 2 * hsum_i32(sum) - 3 * scaled_asum(b[i].scales, a[i].bsums);
        float dd = a[i].d * _cvtsh_ss(b[i].d);
        acc = acc + dd * (float)isum;
    }
    *s = acc;
}

static void dot_lbq3(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbq3 *b = w;
    const lb_block_a8_K *a = act;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m256i sum = _mm256_setzero_si256();
        __m256i hm = load32(b[i].hmask);
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i qs = load32(b[i].qs + 32 * h);
            UNROLL
            for (int j = 0; j < 4; j++) {
                int g = 4 * h + j;
                __m256i lo = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * j), m3);
                /* bit g of each hmask byte to bit 2 */
                __m256i hi = g >= 2 ? _mm256_srli_epi16(hm, g - 2) : _mm256_slli_epi16(hm, 2 - g);
                __m256i q = _mm256_or_si256(lo, _mm256_and_si256(hi, m4));
                sum = group_dot(sum, q, a[i].qs + 32 * g, ((b[i].scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1);
            }
        }
        int32_t isum = 2 * hsum_i32(sum) - 7 * scaled_asum(b[i].scales, a[i].bsums);
        float dd = a[i].d * _cvtsh_ss(b[i].d);
        acc = acc + dd * (float)isum;
    }
    *s = acc;
}

static void dot_lbq4(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbq4 *b = w;
    const lb_block_a8_K *a = act;
    const __m256i m15 = _mm256_set1_epi8(15);
    const __m256i levels = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lb__lbq4_levels));
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m256i sum = _mm256_setzero_si256();
        UNROLL
        for (int p = 0; p < 4; p++) {
            __m256i qs = load32(b[i].qs + 32 * p);
            UNROLL
            for (int h = 0; h < 2; h++) {
                int g = 2 * p + h;
                __m256i v = _mm256_shuffle_epi8(levels, _mm256_and_si256(h ? _mm256_srli_epi16(qs, 4) : qs, m15));
                /* maddubs wants an unsigned operand: |v| times a with v's sign;
                 * activations lie in -127..127, so negating them cannot wrap */
                __m256i p2 = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(load32(a[i].qs + 32 * g), v));
                int sc = ((b[i].scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1;
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p2, _mm256_set1_epi16((short)sc)));
            }
        }
        int32_t isum = hsum_i32(sum);
        float dd = a[i].d * _cvtsh_ss(b[i].d) * 0.0078125f;
        acc = acc + dd * (float)isum;
    }
    *s = acc;
}

/* ---- four activation rows per weight row (prefill, batched decode): each
 * group's quants are unpacked once and used for all four rows; per row the
 * integer sum and the float update are dot_lbq*'s, so s[j * s_stride] has
 * exactly the bits vec_dot gives for row j. */

/* The four A8_H rows act_stride bytes apart. */
static inline void rows4(const lb_block_a8_K *a[4], const void *act, size_t act_stride)
{
    for (int j = 0; j < 4; j++)
        a[j] = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
}

/* The eight group scales sc_g + 1 of a block as 16-bit lanes. */
static inline __m128i scales16(const uint8_t *scales)
{
    uint32_t raw;
    memcpy(&raw, scales, sizeof raw);
    const __m128i m15 = _mm_set1_epi8(15);
    __m128i s = _mm_cvtsi32_si128((int)raw);
    __m128i g = _mm_unpacklo_epi8(_mm_and_si128(s, m15), _mm_and_si128(_mm_srli_epi16(s, 4), m15));
    return _mm_add_epi16(_mm_cvtepu8_epi16(g), _mm_set1_epi16(1));
}

/* A block's isum = 2 * (the lanes of sum) - m * sum_g sc_g * sum(a of group g),
 * the second term from the activation's 16-element sums (16-bit sums and
 * products are exact: |group sum| <= 32 * 127, sc <= 16). */
static inline int32_t block_isum(__m256i sum, __m128i sc16, const int16_t *bsums, int m)
{
    __m128i v = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)bsums), _mm_loadu_si128((const __m128i *)(bsums + 8)));
    __m128i ms = _mm_madd_epi16(bs, sc16);
    __m128i t = _mm_sub_epi32(_mm_add_epi32(v, v), _mm_mullo_epi32(ms, _mm_set1_epi32(m)));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
    return _mm_cvtsi128_si32(t);
}

/* The quants (0..7) of group g times their group scale (<= 16), still one
 * byte each: a 16-bit multiply is exact per byte because the low byte's
 * product stays below 256.  sc256 is scales16 in both 128-bit halves. */
static inline __m256i scale_quants(__m256i q, __m256i sc256, int g)
{
    __m256i sc = _mm256_shuffle_epi8(sc256, _mm256_set1_epi16((short)(0x8000 | (2 * g))));
    return _mm256_mullo_epi16(q, sc);
}

/* LBQ2 and LBQ3 share everything but the unpacking of group g's quants. */
static inline __m256i unpack_q23(const uint8_t *qs, const uint8_t *hmask, int g)
{
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    int h = g / 4, j = g % 4;
    __m256i q = _mm256_and_si256(_mm256_srli_epi16(load32(qs + 32 * h), 2 * j), m3);
    if (!hmask)
        return q;
    __m256i hm = load32(hmask);
    __m256i hi = g >= 2 ? _mm256_srli_epi16(hm, g - 2) : _mm256_slli_epi16(hm, 2 - g);
    return _mm256_or_si256(q, _mm256_and_si256(hi, m4));
}

/* m = 3 (LBQ2, hmask NULL) or 7 (LBQ3); w_stride the weight block's size.
 * Per row and group: maddubs of the scaled quants (sc * q <= 112, so a pair
 * of products stays below 2^15) and a pair-sum to 32 bits; for LBQ2
 * (sc * q <= 48) two groups share the pair-sum. */
static inline void dot4_lbq23(int64_t n, float *s, int64_t s_stride, const uint8_t *w, size_t w_stride,
                              const void *act, size_t act_stride, int m)
{
    const lb_block_a8_K *a[4];   /* [4] activation rows, each [n / 256] blocks */
    rows4(a, act, act_stride);
    const __m256i ones = _mm256_set1_epi16(1);
    float acc[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        /* d, scales and qs sit at the same offsets in both layouts */
        const lb_block_lbq2 *b = (const lb_block_lbq2 *)(w + (size_t)i * w_stride);
        const uint8_t *hmask = m == 7 ? ((const lb_block_lbq3 *)b)->hmask : NULL;
        __m128i sc16 = scales16(b->scales);
        __m256i sc256 = _mm256_broadcastsi128_si256(sc16);
        __m256i sum[4];
        for (int j = 0; j < 4; j++)
            sum[j] = _mm256_setzero_si256();
        UNROLL
        for (int g = 0; g < 8; g += 2) {
            __m256i q0 = scale_quants(unpack_q23(b->qs, hmask, g), sc256, g);
            __m256i q1 = scale_quants(unpack_q23(b->qs, hmask, g + 1), sc256, g + 1);
            UNROLL
            for (int j = 0; j < 4; j++) {
                __m256i p0 = _mm256_maddubs_epi16(q0, load32(a[j][i].qs + 32 * g));
                __m256i p1 = _mm256_maddubs_epi16(q1, load32(a[j][i].qs + 32 * g + 32));
                if (m == 3)
                    sum[j] = _mm256_add_epi32(sum[j], _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones));
                else
                    sum[j] = _mm256_add_epi32(sum[j], _mm256_add_epi32(_mm256_madd_epi16(p0, ones),
                                                                       _mm256_madd_epi16(p1, ones)));
            }
        }
        float dw = _cvtsh_ss(b->d);
        UNROLL
        for (int j = 0; j < 4; j++) {
            int32_t isum = block_isum(sum[j], sc16, a[j][i].bsums, m);
            float dd = a[j][i].d * dw;
            acc[j] = acc[j] + dd * (float)isum;
        }
    }
    for (int j = 0; j < 4; j++)
        s[j * s_stride] = acc[j];
}

static void dot4_lbq2(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dot4_lbq23(n, s, s_stride, w, sizeof(lb_block_lbq2), act, act_stride, 3);
}

static void dot4_lbq3(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dot4_lbq23(n, s, s_stride, w, sizeof(lb_block_lbq3), act, act_stride, 7);
}

static void dot4_lbq4(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    const lb_block_lbq4 *b = w;
    const lb_block_a8_K *a[4];   /* [4] activation rows, each [n / 256] blocks */
    rows4(a, act, act_stride);
    const __m256i m15 = _mm256_set1_epi8(15);
    const __m256i levels = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lb__lbq4_levels));
    float acc[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m256i sum[4];
        for (int j = 0; j < 4; j++)
            sum[j] = _mm256_setzero_si256();
        UNROLL
        for (int g = 0; g < 8; g++) {
            __m256i qs = load32(b[i].qs + 32 * (g / 2));
            __m256i v = _mm256_shuffle_epi8(levels, _mm256_and_si256(g % 2 ? _mm256_srli_epi16(qs, 4) : qs, m15));
            __m256i av = _mm256_sign_epi8(v, v);   /* |v| for maddubs; the sign goes to a, as in dot_lbq4 */
            __m256i sc = _mm256_set1_epi16((short)(((b[i].scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1));
            UNROLL
            for (int j = 0; j < 4; j++) {
                __m256i p = _mm256_maddubs_epi16(av, _mm256_sign_epi8(load32(a[j][i].qs + 32 * g), v));
                sum[j] = _mm256_add_epi32(sum[j], _mm256_madd_epi16(p, sc));
            }
        }
        float dw = _cvtsh_ss(b[i].d);
        UNROLL
        for (int j = 0; j < 4; j++) {
            float dd = a[j][i].d * dw * 0.0078125f;
            acc[j] = acc[j] + dd * (float)hsum_i32(sum[j]);
        }
    }
    for (int j = 0; j < 4; j++)
        s[j * s_stride] = acc[j];
}

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

void lb__kernels_register_avx2_lbq(lb_kernel_set *k)
{
    a8_K_fast = k->quantize[LB_TYPE_A8_K];
    k->vec_dot[LB_TYPE_LBQ2] = dot_lbq2;
    k->vec_dot[LB_TYPE_LBQ3] = dot_lbq3;
    k->vec_dot[LB_TYPE_LBQ4] = dot_lbq4;
    k->vec_dot4[LB_TYPE_LBQ2] = dot4_lbq2;
    k->vec_dot4[LB_TYPE_LBQ3] = dot4_lbq3;
    k->vec_dot4[LB_TYPE_LBQ4] = dot4_lbq4;
    k->quantize[LB_TYPE_A8_H] = quant_a8_H;
}
