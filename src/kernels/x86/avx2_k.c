/* AVX2 kernels for the K-quants: dot products against A8_K, dequantization and
 * the A8_K activation quantizer.  Each produces the same bits as the scalar
 * reference in quant/ref_k.c (the integer sums are exact and the few float
 * operations per super-block are done in the reference's order). */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/blocks.h"
#include "kernels/x86/k_common.h"

/* Bit-exactness between reference and SIMD needs every a*b+c rounded twice,
 * never fused: gcc in ISO C mode does not contract, clang must be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- shared helpers */

/* The inner loops must be fully unrolled: shift counts and shuffle masks
 * then become immediates and constants instead of per-iteration work. */
#define UNROLL _Pragma("GCC unroll 8")

/* Shuffle masks that spread one int16 scale over a register.  bcast_word[j]:
 * word j of each 128-bit lane everywhere (sub-blocks of 32: one scale per
 * register).  pair_word[k]: word 2k in the low lane and word 2k+1 in the high
 * lane (sub-blocks of 16: a 32-byte register spans two scales). */
static inline __m256i bcast_word(int j)
{
    return _mm256_set1_epi16((short)((2 * j) | ((2 * j + 1) << 8)));
}

/* ---- dot products */

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

static void dot_q5_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q5_K *b = w;
    const lb_block_a8_K *a = act;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sm = q4_K_scales_mins(b[i].scales);
        __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
        __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
        __m256i msum = _mm256_madd_epi16(load32(a[i].bsums), mins16);
        __m256i qh = load32(b[i].qh);
        __m256i isum = _mm256_setzero_si256();
        UNROLL
        for (int c = 0; c < 4; c++) {
            __m256i q = load32(b[i].qs + 32 * c);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), move_bit(qh, 2 * c, 4));
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), move_bit(qh, 2 * c + 1, 4));
            __m256i p0 = _mm256_maddubs_epi16(lo, load32(a[i].qs + 64 * c));
            __m256i p1 = _mm256_maddubs_epi16(hi, load32(a[i].qs + 64 * c + 32));
            p0 = _mm256_madd_epi16(p0, _mm256_shuffle_epi8(sc16, bcast_word(2 * c)));
            p1 = _mm256_madd_epi16(p1, _mm256_shuffle_epi8(sc16, bcast_word(2 * c + 1)));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(p0, p1));
        }
        int32_t is, ms;
        hsum2_i32(isum, msum, &is, &ms);
        acc = combine_k(acc, a[i].d, h2f(b[i].d), h2f(b[i].dmin), is, ms);
    }
    *s = acc;
}

static void dot_q2_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q2_K *b = w;
    const lb_block_a8_K *a = act;
    const __m256i m2 = _mm256_set1_epi8(3);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i raw = _mm_loadu_si128((const __m128i *)b[i].scales);
        __m128i sc8 = _mm_and_si128(raw, _mm_set1_epi8(0xF));
        __m128i m8 = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0xF));
        __m256i msum = _mm256_madd_epi16(load32(a[i].bsums), _mm256_cvtepu8_epi16(m8));
        __m256i isum = _mm256_setzero_si256();
        UNROLL
        for (int h = 0; h < 2; h++) {
            /* scales 8h..8h+7 as words in both lanes, for pair_word() */
            __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(h ? _mm_srli_si128(sc8, 8) : sc8));
            __m256i q = load32(b[i].qs + 32 * h);
            UNROLL
            for (int j = 0; j < 4; j++) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m2);
                __m256i p = _mm256_maddubs_epi16(v, load32(a[i].qs + 128 * h + 32 * j));
                p = _mm256_madd_epi16(p, _mm256_shuffle_epi8(sc16, pair_word(j)));
                isum = _mm256_add_epi32(isum, p);
            }
        }
        int32_t is, ms;
        hsum2_i32(isum, msum, &is, &ms);
        acc = combine_k(acc, a[i].d, h2f(b[i].d), h2f(b[i].dmin), is, ms);
    }
    *s = acc;
}

/* Q3_K and Q6_K quants are signed (q - 4, q - 32); the kernels multiply the
 * unsigned stored value (maddubs wants an unsigned operand) and subtract
 * offset * sum_s(scale_s * bsum_s) afterwards, which is the same integer. */
static void dot_q3_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q3_K *b = w;
    const lb_block_a8_K *a = act;
    const __m256i m2 = _mm256_set1_epi8(3);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sc8 = q3_K_scales(b[i].scales);
        __m256i bias = _mm256_madd_epi16(load32(a[i].bsums), _mm256_cvtepi8_epi16(sc8));
        __m256i hm = load32(b[i].hmask);
        __m256i isum = _mm256_setzero_si256();
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(h ? _mm_srli_si128(sc8, 8) : sc8));
            __m256i q = load32(b[i].qs + 32 * h);
            UNROLL
            for (int j = 0; j < 4; j++) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m2);
                v = _mm256_or_si256(v, move_bit(hm, 4 * h + j, 2));
                __m256i p = _mm256_maddubs_epi16(v, load32(a[i].qs + 128 * h + 32 * j));
                p = _mm256_madd_epi16(p, _mm256_shuffle_epi8(sc16, pair_word(j)));
                isum = _mm256_add_epi32(isum, p);
            }
        }
        int32_t is, bs;
        hsum2_i32(isum, bias, &is, &bs);
        acc = combine_k(acc, a[i].d, h2f(b[i].d), 0.0f, is - 4 * bs, 0);
    }
    *s = acc;
}

static void dot_q6_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q6_K *b = w;
    const lb_block_a8_K *a = act;
    const __m256i k32 = _mm256_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)b[i].scales);
        __m256i isum = _mm256_setzero_si256();
        _Pragma("GCC unroll 2")
        for (int h = 0; h < 2; h++) {
            __m256i v[4];   /* the unsigned 6-bit quants of the four 32-element chunks */
            q6_K_unpack(&b[i], h, v);
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

/* Q4_K against four activation rows at once: each weight block is unpacked
 * once for all four; every column's float operations are those of dot_q4_K
 * in the same order, so each result is bit-identical to it. */
static void dot4_q4_K(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    const lb_block_q4_K *b = w;
    const lb_block_a8_K *a[4];   /* [4] activation rows, each [n / 256] blocks */
    for (int j = 0; j < 4; j++)
        a[j] = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc[4];
    __m128 accm[4];
    for (int j = 0; j < 4; j++) {
        acc[j] = _mm256_setzero_ps();
        accm[j] = _mm_setzero_ps();
    }
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sm = q4_K_scales_mins(b[i].scales);
        uint8_t scb[16];   /* [8 scales, 8 mins] */
        _mm_storeu_si128((__m128i *)scb, sm);
        __m128i mn16 = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));  /* 8 mins as words */
        __m256i isum[4];
        for (int j = 0; j < 4; j++)
            isum[j] = _mm256_setzero_si256();
        _Pragma("GCC unroll 4")
        for (int c = 0; c < 4; c++) {
            __m256i q = load32(b[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i s0 = _mm256_set1_epi16(scb[2 * c]);
            __m256i s1 = _mm256_set1_epi16(scb[2 * c + 1]);
            _Pragma("GCC unroll 4")
            for (int j = 0; j < 4; j++) {
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32(a[j][i].qs + 64 * c)), s0);
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load32(a[j][i].qs + 64 * c + 32)), s1);
                isum[j] = _mm256_add_epi32(isum[j], _mm256_add_epi32(p0, p1));
            }
        }
        _Pragma("GCC unroll 4")
        for (int j = 0; j < 4; j++) {
            float d = a[j][i].d * _cvtsh_ss(b[i].d);
            float dmin = -a[j][i].d * _cvtsh_ss(b[i].dmin);
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum[j]), acc[j]);
            __m256i bs = load32(a[j][i].bsums);
            __m128i sub = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
            __m128i m = _mm_madd_epi16(mn16, sub);
            accm[j] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(m), accm[j]);
        }
    }
    for (int j = 0; j < 4; j++)
        s[j * s_stride] = hsum8(acc[j]) + hsum4(accm[j]);
}

/* Q6_K against four activation rows at once, bit-identical to dot_q6_K per column. */
static void dot4_q6_K(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    const lb_block_q6_K *b = w;
    const lb_block_a8_K *a[4];   /* [4] activation rows, each [n / 256] blocks */
    for (int j = 0; j < 4; j++)
        a[j] = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
    const __m256i k32 = _mm256_set1_epi8(32);
    __m256 acc[4];
    for (int j = 0; j < 4; j++)
        acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)b[i].scales);
        __m256i isum[4];
        for (int j = 0; j < 4; j++)
            isum[j] = _mm256_setzero_si256();
        _Pragma("GCC unroll 2")
        for (int h = 0; h < 2; h++) {
            __m256i v[4];   /* the unsigned 6-bit quants of the four 32-element chunks */
            q6_K_unpack(&b[i], h, v);
            _Pragma("GCC unroll 4")
            for (int k = 0; k < 4; k++) {
                int sb = 8 * h + 2 * k;
                __m128i sel = _mm_set_epi64x((long long)(0x0101010101010101ull * (unsigned)(sb + 1)),
                                             (long long)(0x0101010101010101ull * (unsigned)sb));
                __m256i scl = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, sel));
                _Pragma("GCC unroll 4")
                for (int j = 0; j < 4; j++) {
                    __m256i a8 = load32(a[j][i].qs + 128 * h + 32 * k);
                    __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(v[k], a8), _mm256_maddubs_epi16(k32, a8));
                    isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(p, scl));
                }
            }
        }
        _Pragma("GCC unroll 4")
        for (int j = 0; j < 4; j++) {
            float d = a[j][i].d * _cvtsh_ss(b[i].d);
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum[j]), acc[j]);
        }
    }
    for (int j = 0; j < 4; j++)
        s[j * s_stride] = hsum8(acc[j]);
}

/* ---- dequantization: y = (d * scale) * q - (dmin * min) with the scalar
 * products computed exactly as the reference does, then one vector multiply
 * and subtract per 8 elements (no FMA: it would round differently). */

/* Writes 16 int8 quants q[0..15] times dl minus ml. */
static inline void put16(__m128i q, float dl, float ml, float *y)
{
    __m256 vd = _mm256_set1_ps(dl), vm = _mm256_set1_ps(ml);
    __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(vd, f0), vm));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(vd, f1), vm));
}

/* The symmetric types have no min; dl * q - 0 is dl * q bit for bit. */
static inline void put16_sym(__m128i q, float dl, float *y)
{
    __m256 vd = _mm256_set1_ps(dl);
    _mm256_storeu_ps(y, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)))));
}

static void dequant_q4_K(const void *src, float *dst, int64_t n)
{
    const lb_block_q4_K *b = src;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        uint8_t sm[16];
        _mm_storeu_si128((__m128i *)sm, q4_K_scales_mins(b[i].scales));
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        float *y = dst + i * LB_QK_K;
        UNROLL
        for (int c = 0; c < 4; c++) {
            __m256i q = load32(b[i].qs + 32 * c);
            __m256i v[2] = {_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_srli_epi16(q, 4), m4)};
            UNROLL
            for (int h = 0; h < 2; h++) {
                int sub = 2 * c + h;
                float dl = d * (float)sm[sub], ml = dmin * (float)sm[8 + sub];
                put16(_mm256_castsi256_si128(v[h]), dl, ml, y + 32 * sub);
                put16(_mm256_extracti128_si256(v[h], 1), dl, ml, y + 32 * sub + 16);
            }
        }
    }
}

static void dequant_q5_K(const void *src, float *dst, int64_t n)
{
    const lb_block_q5_K *b = src;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        uint8_t sm[16];
        _mm_storeu_si128((__m128i *)sm, q4_K_scales_mins(b[i].scales));
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        float *y = dst + i * LB_QK_K;
        __m256i qh = load32(b[i].qh);
        UNROLL
        for (int c = 0; c < 4; c++) {
            __m256i q = load32(b[i].qs + 32 * c);
            __m256i v[2] = {
                _mm256_or_si256(_mm256_and_si256(q, m4), move_bit(qh, 2 * c, 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), move_bit(qh, 2 * c + 1, 4)),
            };
            UNROLL
            for (int h = 0; h < 2; h++) {
                int sub = 2 * c + h;
                float dl = d * (float)sm[sub], ml = dmin * (float)sm[8 + sub];
                put16(_mm256_castsi256_si128(v[h]), dl, ml, y + 32 * sub);
                put16(_mm256_extracti128_si256(v[h], 1), dl, ml, y + 32 * sub + 16);
            }
        }
    }
}

static void dequant_q2_K(const void *src, float *dst, int64_t n)
{
    const lb_block_q2_K *b = src;
    const __m256i m2 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        float *y = dst + i * LB_QK_K;
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i q = load32(b[i].qs + 32 * h);
            UNROLL
            for (int j = 0; j < 4; j++) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m2);
                int sub = 8 * h + 2 * j;
                uint8_t s0 = b[i].scales[sub], s1 = b[i].scales[sub + 1];
                put16(_mm256_castsi256_si128(v), d * (float)(s0 & 0xF), dmin * (float)(s0 >> 4), y + 16 * sub);
                put16(_mm256_extracti128_si256(v, 1), d * (float)(s1 & 0xF), dmin * (float)(s1 >> 4),
                      y + 16 * sub + 16);
            }
        }
    }
}

static void dequant_q3_K(const void *src, float *dst, int64_t n)
{
    const lb_block_q3_K *b = src;
    const __m256i m2 = _mm256_set1_epi8(3);
    const __m256i four = _mm256_set1_epi8(4);
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        int8_t sc[16];
        _mm_storeu_si128((__m128i *)sc, q3_K_scales(b[i].scales));
        float d = h2f(b[i].d);
        float *y = dst + i * LB_QK_K;
        __m256i hm = load32(b[i].hmask);
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i q = load32(b[i].qs + 32 * h);
            UNROLL
            for (int j = 0; j < 4; j++) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m2);
                v = _mm256_sub_epi8(_mm256_or_si256(v, move_bit(hm, 4 * h + j, 2)), four);
                int sub = 8 * h + 2 * j;
                put16_sym(_mm256_castsi256_si128(v), d * (float)sc[sub], y + 16 * sub);
                put16_sym(_mm256_extracti128_si256(v, 1), d * (float)sc[sub + 1], y + 16 * sub + 16);
            }
        }
    }
}

static void dequant_q6_K(const void *src, float *dst, int64_t n)
{
    const lb_block_q6_K *b = src;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const __m256i m2h = _mm256_set1_epi8(0x30);
    const __m256i off = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        float d = h2f(b[i].d);
        float *y = dst + i * LB_QK_K;
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i q0 = load32(b[i].ql + 64 * h);
            __m256i q1 = load32(b[i].ql + 64 * h + 32);
            __m256i qh = load32(b[i].qh + 32 * h);
            __m256i v[4];
            v[0] = _mm256_or_si256(_mm256_and_si256(q0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2h));
            v[1] = _mm256_or_si256(_mm256_and_si256(q1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2h));
            v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q0, 4), m4), _mm256_and_si256(qh, m2h));
            v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2h));
            UNROLL
            for (int k = 0; k < 4; k++) {
                __m256i sv = _mm256_sub_epi8(v[k], off);
                int sub = 8 * h + 2 * k;
                put16_sym(_mm256_castsi256_si128(sv), d * (float)b[i].scales[sub], y + 16 * sub);
                put16_sym(_mm256_extracti128_si256(sv, 1), d * (float)b[i].scales[sub + 1], y + 16 * sub + 16);
            }
        }
    }
}

/* ---- A8_K quantizer: the reference's rule; _mm256_cvtps_epi32 rounds half
 * to even like nearbyintf in the default rounding mode.  Inputs must be finite. */
static void quant_a8_K(const float *src, void *dst, int64_t n)
{
    lb_block_a8_K *out = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const float *x = src + i * LB_QK_K;
        lb_block_a8_K *b = &out[i];
        __m256 mx = _mm256_setzero_ps();
        for (int e = 0; e < LB_QK_K; e += 8)
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + e)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        float amax = _mm_cvtss_f32(m4);
        if (amax == 0) {
            memset(b, 0, sizeof *b);
            continue;
        }
        float id = 127.0f / amax;
        b->d = 1.0f / id;
        __m256 vid = _mm256_set1_ps(id);
        __m256i part[8]; /* [8] per 32 quants: 4-element partial sums, two bsums per register */
        for (int g = 0; g < 8; g++) {
            __m256i q32[4];
            UNROLL
            for (int k = 0; k < 4; k++) {
                __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * k), vid));
                q32[k] = _mm256_max_epi32(nlim, _mm256_min_epi32(lim, v));
            }
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q32[0], q32[1]), _mm256_packs_epi32(q32[2], q32[3]));
            p = _mm256_permutevar8x32_epi32(p, perm);
            _mm256_storeu_si256((__m256i *)(b->qs + 32 * g), p);
            part[g] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, p), ones16);
        }
        /* reduce: X holds bsums 0,2,4,6 | 1,3,5,7 by lane, Y bsums 8..14 | 9..15 */
        __m256i X = _mm256_hadd_epi32(_mm256_hadd_epi32(part[0], part[1]), _mm256_hadd_epi32(part[2], part[3]));
        __m256i Y = _mm256_hadd_epi32(_mm256_hadd_epi32(part[4], part[5]), _mm256_hadd_epi32(part[6], part[7]));
        __m256i s16 = _mm256_packs_epi32(X, Y);
        __m128i even = _mm256_castsi256_si128(s16), odd = _mm256_extracti128_si256(s16, 1);
        _mm_storeu_si128((__m128i *)b->bsums, _mm_unpacklo_epi16(even, odd));
        _mm_storeu_si128((__m128i *)(b->bsums + 8), _mm_unpackhi_epi16(even, odd));
    }
}

void lb__kernels_register_avx2_k(lb_kernel_set *k)
{
    k->vec_dot[LB_TYPE_Q2_K] = dot_q2_K;
    k->vec_dot[LB_TYPE_Q3_K] = dot_q3_K;
    k->vec_dot[LB_TYPE_Q4_K] = dot_q4_K;
    k->vec_dot[LB_TYPE_Q5_K] = dot_q5_K;
    k->vec_dot[LB_TYPE_Q6_K] = dot_q6_K;
    k->vec_dot4[LB_TYPE_Q4_K] = dot4_q4_K;
    k->vec_dot4[LB_TYPE_Q6_K] = dot4_q6_K;
    k->dequant[LB_TYPE_Q2_K] = dequant_q2_K;
    k->dequant[LB_TYPE_Q3_K] = dequant_q3_K;
    k->dequant[LB_TYPE_Q4_K] = dequant_q4_K;
    k->dequant[LB_TYPE_Q5_K] = dequant_q5_K;
    k->dequant[LB_TYPE_Q6_K] = dequant_q6_K;
    k->quantize[LB_TYPE_A8_K] = quant_a8_K;
}
