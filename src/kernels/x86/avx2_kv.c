/* AVX2+FMA+F16C variants of the quantized-KV kernels (kernels/kvq.h): the
 * 64 codes of a row are unpacked into two vectors of 32 bytes with shifts and
 * masks, widened to floats eight at a time and used in fused multiply-adds
 * that keep the 64 running sums in eight registers. */
#include <immintrin.h>
#include <string.h>

#include "kernels/kvq.h"

/* Codes 0..31 into *lo and 32..63 into *hi, one byte each. */
static inline void unpack(int bits, const uint8_t *p, __m256i *lo, __m256i *hi)
{
    if (bits == 8) {
        *lo = _mm256_loadu_si256((const __m256i *)p);
        *hi = _mm256_loadu_si256((const __m256i *)(p + 32));
        return;
    }
    if (bits == 4) {
        const __m256i m4 = _mm256_set1_epi8(15);
        __m256i x = _mm256_loadu_si256((const __m256i *)p);
        *lo = _mm256_and_si256(x, m4);
        *hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
        return;
    }
    const __m256i m2 = _mm256_set1_epi8(3);
    __m128i x = _mm_loadu_si128((const __m128i *)p);
    *lo = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 2), x), m2);
    *hi = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 6), _mm_srli_epi16(x, 4)), m2);
    if (bits == 3) {
        uint32_t h[2];
        memcpy(h, p + 16, 8);
        /* byte i of a half takes byte i / 8 of its 32 high bits, then tests bit i % 8 */
        const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                             2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
        const __m256i four = _mm256_set1_epi8(4);
        for (int k = 0; k < 2; k++) {
            __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h[k]), sel);
            __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
            __m256i *dst = k ? hi : lo;
            *dst = _mm256_or_si256(*dst, _mm256_and_si256(set, four));
        }
    }
}

/* The eight bytes starting at byte 8*k of a 32-byte vector, as floats. */
static inline __m256 widen(__m256i v, int k)
{
    __m128i h = k < 2 ? _mm256_castsi256_si128(v) : _mm256_extracti128_si256(v, 1);
    if (k & 1)
        h = _mm_srli_si128(h, 8);
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(h));
}

static void k_scores_avx2(int bits, int dim, const uint8_t *codes, size_t stride, const lb_f16 *scale,
                          const lb_f16 *min, const float *q, float *s)
{
    float qs[8];
    __m256 acc[8], c0 = _mm256_setzero_ps();
    for (int k = 0; k < 8; k++)
        acc[k] = _mm256_setzero_ps();
    for (int d0 = 0; d0 < dim; d0 += 8) {
        __m256 qv = _mm256_loadu_ps(q + d0);
        c0 = _mm256_fmadd_ps(qv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(min + d0))), c0);
        _mm256_storeu_ps(qs, _mm256_mul_ps(qv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scale + d0)))));
        for (int e = 0; e < 8; e++) {
            __m256i lo, hi;
            unpack(bits, codes + (size_t)(d0 + e) * stride, &lo, &hi);
            const __m256 w = _mm256_set1_ps(qs[e]);
            for (int k = 0; k < 4; k++) {
                acc[k] = _mm256_fmadd_ps(w, widen(lo, k), acc[k]);
                acc[k + 4] = _mm256_fmadd_ps(w, widen(hi, k), acc[k + 4]);
            }
        }
    }
    /* horizontal sum of c0 */
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(c0), _mm256_extractf128_ps(c0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    const __m256 cb = _mm256_set1_ps(_mm_cvtss_f32(h));
    for (int k = 0; k < 8; k++)
        _mm256_storeu_ps(s + 8 * k, _mm256_add_ps(acc[k], cb));
}

static void v_accum_avx2(int bits, int n, const uint8_t *rows, size_t stride, const float *p, float *out)
{
    const int rb = lb_kvq_row_bytes(bits);
    __m256 acc[8];
    for (int k = 0; k < 8; k++)
        acc[k] = _mm256_loadu_ps(out + 8 * k);
    float c0 = 0;
    for (int t = 0; t < n; t++) {
        const uint8_t *r = rows + (size_t)t * stride;
        uint16_t d16, m16;
        memcpy(&d16, r + rb, 2);
        memcpy(&m16, r + rb + 2, 2);
        c0 += p[t] * _cvtsh_ss(m16);
        const __m256 w = _mm256_set1_ps(p[t] * _cvtsh_ss(d16));
        __m256i lo, hi;
        unpack(bits, r, &lo, &hi);
        for (int k = 0; k < 4; k++) {
            acc[k] = _mm256_fmadd_ps(w, widen(lo, k), acc[k]);
            acc[k + 4] = _mm256_fmadd_ps(w, widen(hi, k), acc[k + 4]);
        }
    }
    const __m256 cb = _mm256_set1_ps(c0);
    for (int k = 0; k < 8; k++)
        _mm256_storeu_ps(out + 8 * k, _mm256_add_ps(acc[k], cb));
}

void lb__kvq_register_avx2(lb_kvq_kernels *k)
{
    k->k_scores = k_scores_avx2;
    k->v_accum = v_accum_avx2;
}
