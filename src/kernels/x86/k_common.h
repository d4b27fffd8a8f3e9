/* Small helpers shared by the x86 K-quant kernels (avx2_k.c, avx2_gemm.c,
 * avx512_k.c): block-format unpacking and the reductions whose order the
 * bit-exactness with the scalar reference depends on.  Needs AVX2+F16C. */
#ifndef LB_KERNELS_X86_K_COMMON_H
#define LB_KERNELS_X86_K_COMMON_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/blocks.h"

/* combine_k's a*b - c*d must round like the reference's (no fused
 * multiply-add): gcc in ISO C mode does not contract, clang must be told,
 * here as well as in each including file. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static inline __m256i load32(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* F16C conversion: exact, so the same value as the reference's lb_f16_to_f32. */
static inline float h2f(lb_f16 h) { return _cvtsh_ss(h); }

/* The float combination of one super-block, identical to the reference's. */
static inline float combine_k(float acc, float da, float d, float dmin, int32_t isum, int32_t msum)
{
    float dd = da * d;
    float dm = da * dmin;
    return acc + (dd * (float)isum - dm * (float)msum);
}

/* Horizontal sums of two int32x8 vectors at once (one shared reduction tree). */
static inline void hsum2_i32(__m256i a, __m256i b, int32_t *sa, int32_t *sb)
{
    __m256i h = _mm256_hadd_epi32(a, b);
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    s = _mm_hadd_epi32(s, s);
    *sa = _mm_cvtsi128_si32(s);
    *sb = _mm_extract_epi32(s, 1);
}

/* Moves bit `from` of every byte to bit `to` and clears the rest. */
static inline __m256i move_bit(__m256i v, int from, int to)
{
    __m256i mask = _mm256_set1_epi8((char)(1 << to));
    if (from < to)
        v = _mm256_slli_epi16(v, to - from);
    else if (from > to)
        v = _mm256_srli_epi16(v, from - to);
    return _mm256_and_si256(v, mask);
}

static inline __m256i pair_word(int k)
{
    __m128i lo = _mm_set1_epi16((short)((4 * k) | ((4 * k + 1) << 8)));
    __m128i hi = _mm_set1_epi16((short)((4 * k + 2) | ((4 * k + 3) << 8)));
    return _mm256_set_m128i(hi, lo);
}

/* The unsigned 6-bit quants (0..63) of half hf of a Q6_K block, one vector
 * per 32-element chunk: low nibbles from ql, bits 4..5 from qh (the layout
 * is in quant/ref_k.c's dot_q6_K). */
static inline void q6_K_unpack(const lb_block_q6_K *b, int hf, __m256i v[4])
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m2h = _mm256_set1_epi8(0x30);
    const __m256i q0 = load32(b->ql + 64 * hf), q1 = load32(b->ql + 64 * hf + 32), hb = load32(b->qh + 32 * hf);
    v[0] = _mm256_or_si256(_mm256_and_si256(q0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m2h));
    v[1] = _mm256_or_si256(_mm256_and_si256(q1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m2h));
    v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q0, 4), m4), _mm256_and_si256(hb, m2h));
    v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q1, 4), m4),
                           _mm256_and_si256(_mm256_srli_epi16(hb, 2), m2h));
}

/* Q4_K/Q5_K packed scales and mins as two 8-byte groups, via 32-bit word
 * masks instead of eight get-scale calls.  out[0..7] scales, out[8..15] mins. */
static inline __m128i q4_K_scales_mins(const uint8_t *packed)
{
    const __m128i u = _mm_loadu_si128((const __m128i *)(const void *)packed);   /* u0 u1 u2, then 4 quant bytes */
    const __m128i a = _mm_srlv_epi32(_mm_shuffle_epi32(u, _MM_SHUFFLE(2, 1, 2, 0)), _mm_setr_epi32(0, 0, 0, 4));
    const __m128i hi = _mm_srli_epi32(_mm_shuffle_epi32(u, _MM_SHUFFLE(1, 1, 0, 0)), 2);   /* u0>>2 u0>>2 u1>>2 u1>>2 */
    return _mm_or_si128(_mm_and_si128(a, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f)),
                        _mm_and_si128(hi, _mm_setr_epi32(0, 0x30303030, 0, 0x30303030)));
}

/* Q3_K's sixteen 6-bit scales, minus their offset 32, as int8. */
static inline __m128i q3_K_scales(const uint8_t *packed)
{
    uint32_t u[3];
    memcpy(u, packed, 12);
    uint32_t s0 = (u[0] & 0x0f0f0f0fu) | ((u[2] << 4) & 0x30303030u);
    uint32_t s1 = (u[1] & 0x0f0f0f0fu) | ((u[2] << 2) & 0x30303030u);
    uint32_t s2 = ((u[0] >> 4) & 0x0f0f0f0fu) | (u[2] & 0x30303030u);
    uint32_t s3 = ((u[1] >> 4) & 0x0f0f0f0fu) | ((u[2] >> 2) & 0x30303030u);
    return _mm_sub_epi8(_mm_set_epi32((int)s3, (int)s2, (int)s1, (int)s0), _mm_set1_epi8(32));
}

/* Q4_K and Q6_K: the 8-lane float order of the scalar reference (quant/ref_k.c). */
static inline float hsum8(__m256 v)
{
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
}

static inline float hsum4(__m128 r)
{
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
}

/* hsum8 of eight vectors at once, the same pairs added in the same order
 * (hi half + lo half, lanes (0+2) and (1+3), their sum) by shuffles: lanes
 * [v0, v2, v4, v6 | v1, v3, v5, v7].  Eight serial reductions cost more than
 * the work of a short row before them (avx2_gemm.c, avx2_fmath.c). */
static inline __m256 hsum8x8(const __m256 v[8])
{
    __m256 t[4];   /* [rows 2p | 2p+1]: lanes k + (k+4) */
    for (int p = 0; p < 4; p++)
        t[p] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * p], v[2 * p + 1], 0x31),
                             _mm256_permute2f128_ps(v[2 * p], v[2 * p + 1], 0x20));
    /* [rows 0, 2 | 1, 3] and [4, 6 | 5, 7]: lanes (0+2), (1+3) of each */
    __m256 u01 = _mm256_add_ps(_mm256_shuffle_ps(t[0], t[1], 0x44), _mm256_shuffle_ps(t[0], t[1], 0xee));
    __m256 u23 = _mm256_add_ps(_mm256_shuffle_ps(t[2], t[3], 0x44), _mm256_shuffle_ps(t[2], t[3], 0xee));
    return _mm256_add_ps(_mm256_shuffle_ps(u01, u23, 0x88), _mm256_shuffle_ps(u01, u23, 0xdd));
}

#endif
