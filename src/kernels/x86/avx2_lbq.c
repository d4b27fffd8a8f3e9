/* AVX2 kernels for lowbit's LBQ2/LBQ3/LBQ4 weights: dot products against A8_H
 * and the A8_H activation quantizer.  Same bits as the scalar reference in
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
    k->quantize[LB_TYPE_A8_H] = quant_a8_H;
}
