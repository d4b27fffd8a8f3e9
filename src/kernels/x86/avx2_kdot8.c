/* AVX2 variants of the 8-lane Q4_K / Q6_K dot products (kernels/kdot8.h):
 * one __m256i of int32 lane sums per super-block (maddubs pairs bytes, madd
 * with the sub-block scale pairs words, so int32 lane k covers bytes
 * 4k..4k+3 of each 32-byte chunk), then one FMA into the float lanes. */
#include "kernels/kdot8.h"

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/blocks.h"

static inline __m256i load32(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

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

/* Q4_K's eight 6-bit scales (bytes 0-7) and mins (bytes 8-15). */
static inline __m128i q4_K_scales_mins(const uint8_t *packed)
{
    uint32_t u[3];
    memcpy(u, packed, 12);
    uint32_t sc_lo = u[0] & 0x3f3f3f3fu;
    uint32_t sc_hi = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);
    uint32_t m_lo = u[1] & 0x3f3f3f3fu;
    uint32_t m_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u);
    return _mm_set_epi32((int)m_hi, (int)m_lo, (int)sc_hi, (int)sc_lo);
}

static void dot_q4_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q4_K *b = w;
    const lb_block_a8_K *a = act;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sm = q4_K_scales_mins(b[i].scales);
        uint8_t scb[16];   /* [8 scales, 8 mins] */
        _mm_storeu_si128((__m128i *)scb, sm);
        __m128i mn16 = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));  /* 8 mins as words */
        __m256i isum = _mm256_setzero_si256();
        _Pragma("GCC unroll 4")
        for (int c = 0; c < 4; c++) {
            __m256i q = load32(b[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i s0 = _mm256_set1_epi16(scb[2 * c]);
            __m256i s1 = _mm256_set1_epi16(scb[2 * c + 1]);
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32(a[i].qs + 64 * c)), s0);
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load32(a[i].qs + 64 * c + 32)), s1);
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
        }
        float d = a[i].d * _cvtsh_ss(b[i].d);
        float dmin = -a[i].d * _cvtsh_ss(b[i].dmin);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
        /* activation sums of the 8 sub-blocks, then min-weighted in pairs */
        __m256i bs = load32(a[i].bsums);
        __m128i sub = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        __m128i m = _mm_madd_epi16(mn16, sub);
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(m), accm);
    }
    *s = hsum8(acc) + hsum4(accm);
}

static void dot_q6_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q6_K *b = w;
    const lb_block_a8_K *a = act;
    const __m256i m4 = _mm256_set1_epi8(0xF), m2h = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)b[i].scales);
        __m256i isum = _mm256_setzero_si256();
        _Pragma("GCC unroll 2")
        for (int h = 0; h < 2; h++) {
            __m256i q0 = load32(b[i].ql + 64 * h);
            __m256i q1 = load32(b[i].ql + 64 * h + 32);
            __m256i qh = load32(b[i].qh + 32 * h);
            __m256i v[4];   /* the unsigned 6-bit quants of the four 32-element chunks */
            v[0] = _mm256_or_si256(_mm256_and_si256(q0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2h));
            v[1] = _mm256_or_si256(_mm256_and_si256(q1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2h));
            v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q0, 4), m4), _mm256_and_si256(qh, m2h));
            v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2h));
            _Pragma("GCC unroll 4")
            for (int k = 0; k < 4; k++) {
                __m256i a8 = load32(a[i].qs + 128 * h + 32 * k);
                /* (q - 32) * a per byte pair: exact in int16 */
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(v[k], a8), _mm256_maddubs_epi16(k32, a8));
                /* sub-blocks 8h+2k (bytes 0-15) and 8h+2k+1 (bytes 16-31) */
                int sb = 8 * h + 2 * k;
                __m128i sel = _mm_set_epi64x((long long)(0x0101010101010101ull * (unsigned)(sb + 1)),
                                             (long long)(0x0101010101010101ull * (unsigned)sb));
                __m256i scl = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, sel));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scl));
            }
        }
        float d = a[i].d * _cvtsh_ss(b[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = hsum8(acc);
}

void lb__kdot8_register_avx2(lb_kernel_set *k)
{
    k->vec_dot[LB_TYPE_Q4_K] = dot_q4_K;
    k->vec_dot[LB_TYPE_Q6_K] = dot_q6_K;
}
