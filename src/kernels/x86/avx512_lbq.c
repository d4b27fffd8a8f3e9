/* AVX-512 VNNI dot products of lowbit's LBQ2/LBQ3/LBQ4 weights against A8_H
 * (one activation row, and four for prefill): VPDPWSSD applies each group's
 * scale and accumulates in one instruction, and the offset term costs one
 * more multiply-add per block.  (A byte table of 2 * sc * q looked up per group
 * with VPDPBUSD measured 7% slower for LBQ2: the shuffles are the scarcer
 * unit on Zen 4.)  Same bits as the reference in quant/lbq.c: the
 * integer sums are exact and the float update per block is the reference's. */
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

/* The 8 group scales (nibble g % 2 of scales[g / 2], plus 1) as 8 bytes. */
static inline __m128i group_scales(const uint8_t *scales)
{
    uint32_t u;
    memcpy(&u, scales, 4);
    __m128i v = _mm_cvtsi32_si128((int)u);
    const __m128i m15 = _mm_set1_epi8(15);
    __m128i sc = _mm_unpacklo_epi8(_mm_and_si128(v, m15), _mm_and_si128(_mm_srli_epi16(v, 4), m15));
    return _mm_add_epi8(sc, _mm_set1_epi8(1));
}

/* Scale g as words for bsums 2g and 2g+1, times -m: with the activation's
 * 16-element sums this gives the offset term -m * sum_g sc_g * sum(a of g). */
static inline __m256i offset_weights(const uint8_t *scales, int m)
{
    __m128i sc = group_scales(scales);
    __m256i w = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sc, sc));
    return _mm256_mullo_epi16(w, _mm256_set1_epi16((short)-m));
}

/* 32 unsigned quants of group g (0..7) of an LBQ2 or, with hmask, LBQ3 block. */
static inline __m256i unpack_q23(__m256i qs, __m256i hm, bool has_hmask, int g)
{
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    __m256i q = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * (g % 4)), m3);
    if (!has_hmask)
        return q;
    /* bit g of each hmask byte to bit 2 */
    __m256i hi = g >= 2 ? _mm256_srli_epi16(hm, g - 2) : _mm256_slli_epi16(hm, 2 - g);
    return _mm256_or_si256(q, _mm256_and_si256(hi, m4));
}

/* The 8 group scales as words, in both 128-bit lanes (for scale_word). */
static inline __m256i scale_vec(const uint8_t *scales)
{
    return _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(group_scales(scales)));
}

/* Group g's scale in every word, for VPDPWSSD: one shuffle instead of a
 * scalar extract and broadcast per group. */
static inline __m256i scale_word(__m256i sv, int g)
{
    return _mm256_shuffle_epi8(sv, _mm256_set1_epi16((short)((2 * g) | ((2 * g + 1) << 8))));
}

/* Horizontal sums of 4 vectors into the 4 lanes of the result. */
static inline __m128i hsum4x8(const __m256i t[4])
{
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(t[0], t[1]), _mm256_hadd_epi32(t[2], t[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* LBQ2 (m = 3) and LBQ3 (m = 7, with hmask): the value is 2q - m, so a
 * block's integer sum is 2 * sum_g sc_g q.a - m * sum_g sc_g sum(a of g),
 * left in 8 int32 lanes. */
static inline __m256i isum_lbq23(const lb_block_lbq2 *b, const lb_block_a8_K *a, int m)
{
    bool h3 = m == 7;
    /* d, scales and qs sit at the same offsets in both layouts */
    __m256i hm = h3 ? load32(((const lb_block_lbq3 *)b)->hmask) : _mm256_setzero_si256();
    __m256i sv = scale_vec(b->scales);
    /* two chains: VPDPWSSD's accumulator latency would otherwise bound the loop */
    __m256i sum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    UNROLL
    for (int h = 0; h < 2; h++) {
        __m256i qs = load32(b->qs + 32 * h);
        UNROLL
        for (int j = 0; j < 4; j++) {
            int g = 4 * h + j;
            __m256i p = _mm256_maddubs_epi16(unpack_q23(qs, hm, h3, g), load32(a->qs + 32 * g));
            sum[g % 2] = _mm256_dpwssd_epi32(sum[g % 2], p, scale_word(sv, g));
        }
    }
    __m256i off = _mm256_madd_epi16(load32(a->bsums), offset_weights(b->scales, m));
    return _mm256_add_epi32(_mm256_slli_epi32(_mm256_add_epi32(sum[0], sum[1]), 1), off);
}

/* LBQ4's levels are signed: |v| is maddubs's unsigned operand and v's sign
 * moves onto a (activations lie in -127..127, so negation cannot wrap). */
static inline __m256i isum_lbq4(const lb_block_lbq4 *b, const lb_block_a8_K *a)
{
    const __m256i m15 = _mm256_set1_epi8(15);
    const __m256i levels = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lb__lbq4_levels));
    const __m256i alevels = _mm256_abs_epi8(levels);
    __m256i sv = scale_vec(b->scales);
    __m256i sum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    UNROLL
    for (int g = 0; g < 8; g++) {
        __m256i qs = load32(b->qs + 32 * (g / 2));
        __m256i idx = _mm256_and_si256(g % 2 ? _mm256_srli_epi16(qs, 4) : qs, m15);
        __m256i av = _mm256_sign_epi8(load32(a->qs + 32 * g), _mm256_shuffle_epi8(levels, idx));
        __m256i p = _mm256_maddubs_epi16(_mm256_shuffle_epi8(alevels, idx), av);
        sum[g % 2] = _mm256_dpwssd_epi32(sum[g % 2], p, scale_word(sv, g));
    }
    return _mm256_add_epi32(sum[0], sum[1]);
}

/* The block-float factor of the reference: a.d * w.d (LBQ4 also / 128). */
static inline float block_dd(const lb_block_a8_K *a, lb_f16 d, bool lbq4)
{
    float dd = a->d * _cvtsh_ss(d);
    return lbq4 ? dd * 0.0078125f : dd;
}

/* One row: acc = acc + dd_i * isum_i block after block, as the reference.
 * kind: 3 LBQ2, 7 LBQ3, 4 LBQ4.  Two blocks share one horizontal
 * reduction (eight at a time measured slower: register pressure). */
static inline void dot_lbq(int64_t n, float *s, const uint8_t *w, size_t w_stride, const void *act, int kind)
{
    const lb_block_a8_K *a = act;    /* [n / 256] */
    const int64_t nb = n / LB_QK_K;
    float acc = 0;
    int64_t i = 0;
    /* two blocks per step share one horizontal reduction */
    for (; i + 2 <= nb; i += 2) {
        const uint8_t *b0 = w + (size_t)i * w_stride, *b1 = b0 + w_stride;
        __m256i t0 = kind == 4 ? isum_lbq4((const lb_block_lbq4 *)b0, &a[i])
                               : isum_lbq23((const lb_block_lbq2 *)b0, &a[i], kind);
        __m256i t1 = kind == 4 ? isum_lbq4((const lb_block_lbq4 *)b1, &a[i + 1])
                               : isum_lbq23((const lb_block_lbq2 *)b1, &a[i + 1], kind);
        __m256i h = _mm256_hadd_epi32(t0, t1);   /* [t0 t0 t1 t1 | t0 t0 t1 t1] partial sums */
        __m128i r = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xB1));   /* lane 0: t0, lane 2: t1 */
        float dd0 = block_dd(&a[i], ((const lb_block_lbq2 *)b0)->d, kind == 4);
        float dd1 = block_dd(&a[i + 1], ((const lb_block_lbq2 *)b1)->d, kind == 4);
        acc = acc + dd0 * (float)_mm_cvtsi128_si32(r);
        acc = acc + dd1 * (float)_mm_extract_epi32(r, 2);
    }
    for (; i < nb; i++) {
        const uint8_t *b = w + (size_t)i * w_stride;
        __m256i t = kind == 4 ? isum_lbq4((const lb_block_lbq4 *)b, &a[i])
                              : isum_lbq23((const lb_block_lbq2 *)b, &a[i], kind);
        float dd = block_dd(&a[i], ((const lb_block_lbq2 *)b)->d, kind == 4);
        acc = acc + dd * (float)hsum_i32(t);
    }
    *s = acc;
}

static void dot_lbq2(int64_t n, float *s, const void *w, const void *act)
{
    dot_lbq(n, s, w, sizeof(lb_block_lbq2), act, 3);
}

static void dot_lbq3(int64_t n, float *s, const void *w, const void *act)
{
    dot_lbq(n, s, w, sizeof(lb_block_lbq3), act, 7);
}

static void dot_lbq4(int64_t n, float *s, const void *w, const void *act)
{
    dot_lbq(n, s, w, sizeof(lb_block_lbq4), act, 4);
}

/* ---- four activation rows per weight row: each group's quants are
 * unpacked once for all four; per row the integer sum and the float update
 * are the single-row kernel's, so s[j * s_stride] has vec_dot's bits (the
 * four rows' updates run side by side in one vector, lane j for row j).
 * An eight-row version measured slower than two calls of this one. */

static inline void rows4(const lb_block_a8_K *a[4], const void *act, size_t act_stride)
{
    for (int j = 0; j < 4; j++)
        a[j] = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
}

static inline __m128 dd4(const lb_block_a8_K *a[4], int64_t i, lb_f16 d, bool lbq4)
{
    __m128 v = _mm_mul_ps(_mm_setr_ps(a[0][i].d, a[1][i].d, a[2][i].d, a[3][i].d), _mm_set1_ps(_cvtsh_ss(d)));
    return lbq4 ? _mm_mul_ps(v, _mm_set1_ps(0.0078125f)) : v;
}

static inline void dot4_lbq23(int64_t n, float *s, int64_t s_stride, const uint8_t *w, size_t w_stride,
                              const void *act, size_t act_stride, int m)
{
    const lb_block_a8_K *a[4];   /* [4] activation rows, each [n / 256] blocks */
    rows4(a, act, act_stride);
    __m128 acc = _mm_setzero_ps();   /* lane j: row j */
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const lb_block_lbq2 *b = (const lb_block_lbq2 *)(w + (size_t)i * w_stride);
        bool h3 = m == 7;
        __m256i hm = h3 ? load32(((const lb_block_lbq3 *)b)->hmask) : _mm256_setzero_si256();
        __m256i sv = scale_vec(b->scales);
        __m256i sum[4];
        for (int j = 0; j < 4; j++)
            sum[j] = _mm256_setzero_si256();
        UNROLL
        for (int g = 0; g < 8; g++) {
            __m256i q = unpack_q23(load32(b->qs + 32 * (g / 4)), hm, h3, g);
            __m256i sc = scale_word(sv, g);
            UNROLL
            for (int j = 0; j < 4; j++)
                sum[j] = _mm256_dpwssd_epi32(sum[j], _mm256_maddubs_epi16(q, load32(a[j][i].qs + 32 * g)), sc);
        }
        __m256i ow = offset_weights(b->scales, m);
        UNROLL
        for (int j = 0; j < 4; j++)
            sum[j] = _mm256_dpwssd_epi32(_mm256_slli_epi32(sum[j], 1), load32(a[j][i].bsums), ow);
        acc = _mm_add_ps(acc, _mm_mul_ps(dd4(a, i, b->d, false), _mm_cvtepi32_ps(hsum4x8(sum))));
    }
    float r[4];
    _mm_storeu_ps(r, acc);
    for (int j = 0; j < 4; j++)
        s[j * s_stride] = r[j];
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
    const __m256i alevels = _mm256_abs_epi8(levels);
    __m128 acc = _mm_setzero_ps();   /* lane j: row j */
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m256i sv = scale_vec(b[i].scales);
        __m256i sum[4];
        for (int j = 0; j < 4; j++)
            sum[j] = _mm256_setzero_si256();
        UNROLL
        for (int g = 0; g < 8; g++) {
            __m256i qs = load32(b[i].qs + 32 * (g / 2));
            __m256i idx = _mm256_and_si256(g % 2 ? _mm256_srli_epi16(qs, 4) : qs, m15);
            __m256i v = _mm256_shuffle_epi8(levels, idx), av = _mm256_shuffle_epi8(alevels, idx);
            __m256i sc = scale_word(sv, g);
            UNROLL
            for (int j = 0; j < 4; j++) {
                __m256i p = _mm256_maddubs_epi16(av, _mm256_sign_epi8(load32(a[j][i].qs + 32 * g), v));
                sum[j] = _mm256_dpwssd_epi32(sum[j], p, sc);
            }
        }
        acc = _mm_add_ps(acc, _mm_mul_ps(dd4(a, i, b[i].d, true), _mm_cvtepi32_ps(hsum4x8(sum))));
    }
    float r[4];
    _mm_storeu_ps(r, acc);
    for (int j = 0; j < 4; j++)
        s[j * s_stride] = r[j];
}

void lb__kernels_register_avx512_lbq(lb_kernel_set *k)
{
    k->vec_dot[LB_TYPE_LBQ2] = dot_lbq2;
    k->vec_dot[LB_TYPE_LBQ3] = dot_lbq3;
    k->vec_dot[LB_TYPE_LBQ4] = dot_lbq4;
    k->vec_dot4[LB_TYPE_LBQ2] = dot4_lbq2;
    k->vec_dot4[LB_TYPE_LBQ3] = dot4_lbq3;
    k->vec_dot4[LB_TYPE_LBQ4] = dot4_lbq4;
}
