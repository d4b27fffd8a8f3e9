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

/* Codes 16*qt .. 16*qt+15 of a packed row, one byte each. */
static inline __m128i unpack16(int bits, const uint8_t *p, int qt)
{
    switch (bits) {
    case 8: return _mm_loadu_si128((const __m128i *)(p + 16 * qt));
    case 4: {
        __m128i x = _mm_loadu_si128((const __m128i *)(p + 16 * (qt & 1)));
        return _mm_and_si128(qt >= 2 ? _mm_srli_epi16(x, 4) : x, _mm_set1_epi8(15));
    }
    default: {
        __m128i x = _mm_and_si128(_mm_srl_epi16(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128(2 * qt)),
                                  _mm_set1_epi8(3));
        if (bits == 3) {
            /* bit 2 of code 16*qt + i is bit i % 8 of byte 16 + 2*qt + i / 8 */
            uint16_t h;
            memcpy(&h, p + 16 + 2 * qt, 2);
            const __m128i sel = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
            const __m128i bit = _mm_set1_epi64x((long long)0x8040201008040201ULL);
            __m128i b = _mm_shuffle_epi8(_mm_set1_epi16((short)h), sel);
            __m128i set = _mm_cmpeq_epi8(_mm_and_si128(b, bit), bit);
            x = _mm_or_si128(x, _mm_and_si128(set, _mm_set1_epi8(4)));
        }
        return x;
    }
    }
}

static inline void widen16(__m128i c, __m256 *lo, __m256 *hi)
{
    *lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c));
    *hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c, 8)));
}

static inline float hsum(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* Up to 4 heads at a time, 16 tokens at a time: 8 accumulators, and every
 * channel's 16 codes are unpacked once for all the heads. */
static void k_scores_n_avx2(int bits, int dim, const uint8_t *codes, size_t stride, const lb_f16 *scale,
                            const lb_f16 *min, const float *q, size_t q_stride, int nq, float *s, size_t s_stride)
{
    float qs[4][256];   /* [head][dim]: q * scale */
    float c0[4];
    for (int g0 = 0; g0 < nq; g0 += 4) {
        const int ng = nq - g0 < 4 ? nq - g0 : 4;
        for (int g = 0; g < ng; g++) {
            const float *qg = q + (size_t)(g0 + g) * q_stride;
            __m256 m = _mm256_setzero_ps();
            for (int d0 = 0; d0 < dim; d0 += 8) {
                __m256 qv = _mm256_loadu_ps(qg + d0);
                m = _mm256_fmadd_ps(qv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(min + d0))), m);
                _mm256_storeu_ps(qs[g] + d0,
                                 _mm256_mul_ps(qv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scale + d0)))));
            }
            c0[g] = hsum(m);
        }
        for (int qt = 0; qt < 4; qt++) {
            __m256 acc[4][2];
            for (int g = 0; g < 4; g++)
                acc[g][0] = acc[g][1] = _mm256_setzero_ps();
            for (int d = 0; d < dim; d++) {
                __m256 lo, hi;
                widen16(unpack16(bits, codes + (size_t)d * stride, qt), &lo, &hi);
                for (int g = 0; g < ng; g++) {
                    const __m256 w = _mm256_broadcast_ss(&qs[g][d]);
                    acc[g][0] = _mm256_fmadd_ps(w, lo, acc[g][0]);
                    acc[g][1] = _mm256_fmadd_ps(w, hi, acc[g][1]);
                }
            }
            for (int g = 0; g < ng; g++) {
                float *o = s + (size_t)(g0 + g) * s_stride + 16 * qt;
                const __m256 cb = _mm256_set1_ps(c0[g]);
                _mm256_storeu_ps(o, _mm256_add_ps(acc[g][0], cb));
                _mm256_storeu_ps(o + 8, _mm256_add_ps(acc[g][1], cb));
            }
        }
    }
}

/* Up to 4 heads at a time, 16 channels at a time; each row's scale and
 * min are folded into the weights first. */
static void v_accum_n_avx2(int bits, int n, const uint8_t *rows, size_t stride, const float *p, size_t p_stride,
                           int nq, float *out, size_t out_stride)
{
    const int rb = lb_kvq_row_bytes(bits);
    float a[4][128];   /* [head][token]: p * scale (n <= 128 per call) */
    float c0[4];
    for (int t0 = 0; t0 < n; t0 += 128) {
        const int nt = n - t0 < 128 ? n - t0 : 128;
        const uint8_t *rw = rows + (size_t)t0 * stride;
        for (int g0 = 0; g0 < nq; g0 += 4) {
            const int ng = nq - g0 < 4 ? nq - g0 : 4;
            for (int g = 0; g < ng; g++) {
                const float *pg = p + (size_t)(g0 + g) * p_stride + t0;
                float m = 0;
                for (int t = 0; t < nt; t++) {
                    const uint8_t *r = rw + (size_t)t * stride;
                    uint16_t d16, m16;
                    memcpy(&d16, r + rb, 2);
                    memcpy(&m16, r + rb + 2, 2);
                    m += pg[t] * _cvtsh_ss(m16);
                    a[g][t] = pg[t] * _cvtsh_ss(d16);
                }
                c0[g] = m;
            }
            for (int qc = 0; qc < 4; qc++) {
                __m256 acc[4][2];
                for (int g = 0; g < ng; g++) {
                    const float *o = out + (size_t)(g0 + g) * out_stride + 16 * qc;
                    acc[g][0] = _mm256_loadu_ps(o);
                    acc[g][1] = _mm256_loadu_ps(o + 8);
                }
                for (int t = 0; t < nt; t++) {
                    __m256 lo, hi;
                    widen16(unpack16(bits, rw + (size_t)t * stride, qc), &lo, &hi);
                    for (int g = 0; g < ng; g++) {
                        const __m256 w = _mm256_broadcast_ss(&a[g][t]);
                        acc[g][0] = _mm256_fmadd_ps(w, lo, acc[g][0]);
                        acc[g][1] = _mm256_fmadd_ps(w, hi, acc[g][1]);
                    }
                }
                for (int g = 0; g < ng; g++) {
                    float *o = out + (size_t)(g0 + g) * out_stride + 16 * qc;
                    _mm256_storeu_ps(o, acc[g][0]);
                    _mm256_storeu_ps(o + 8, acc[g][1]);
                }
            }
            for (int g = 0; g < ng; g++) {
                const __m256 cb = _mm256_set1_ps(c0[g]);
                float *o = out + (size_t)(g0 + g) * out_stride;
                for (int k = 0; k < 8; k++)
                    _mm256_storeu_ps(o + 8 * k, _mm256_add_ps(_mm256_loadu_ps(o + 8 * k), cb));
            }
        }
    }
}

void lb__kvq_register_avx2(lb_kvq_kernels *k)
{
    k->k_scores = k_scores_avx2;
    k->v_accum = v_accum_avx2;
    k->k_scores_n = k_scores_n_avx2;
    k->v_accum_n = v_accum_n_avx2;
}
