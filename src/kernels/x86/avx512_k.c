/* AVX-512 VNNI kernels for the K-quants (Q2_K Q3_K Q4_K Q6_K) against A8_K:
 * the AVX2 kernels' shapes with VPDPWSSD fusing each scale multiply and its
 * accumulation.  Same bits as the scalar reference in quant/ref_k.c. */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/blocks.h"
#include "kernels/x86/k_common.h"

/* Bit-exactness with the reference needs every a*b+c rounded twice unless
 * the reference itself fuses it: gcc in ISO C mode does not contract, clang
 * must be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Shift counts and shuffle masks become immediates only when the inner
 * loops are unrolled. */
#define UNROLL _Pragma("GCC unroll 8")

/* The row-count templates must be inlined for their constant R to unroll
 * the row loops into registers (as a call they ran 25% slower). */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Why 256-bit registers: on Zen 4 a 512-bit operation occupies a 256-bit
 * unit for two cycles, so the wider form saves decode slots but no
 * execution time, while the narrow one keeps the reference's 8-lane order
 * without folding.  VNNI on 256-bit registers needs only AVX512VL. */

/* acc += madd(p, sc): int16 pairs times int16 scales, summed into int32
 * lanes (no saturation: the products of a maddubs result and a 6-bit scale
 * stay far inside int32). */
static inline __m256i dpw(__m256i acc, __m256i p, __m256i sc) { return _mm256_dpwssd_epi32(acc, p, sc); }

/* ---- Q4_K: lane k of the integer sum holds bytes 4k..4k+3 of every
 * 32-byte chunk, which is what maddubs followed by a word-pair dot gives. */

/* The 8 sub-blocks' min-weighted activation sums in 4 lanes (pairs). */
static inline __m128i q4_K_msum(__m128i mn16, const int16_t *bsums)
{
    __m256i bs = load32(bsums);
    __m128i sub = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    return _mm_madd_epi16(mn16, sub);
}

static void dot_q4_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q4_K *b = w;      /* [n / 256] */
    const lb_block_a8_K *a = act;    /* [n / 256] */
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sm = q4_K_scales_mins(b[i].scales);
        uint8_t scb[16];   /* [8 scales, 8 mins] */
        _mm_storeu_si128((__m128i *)scb, sm);
        __m128i mn16 = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));
        /* two chains: VPDPWSSD's accumulator latency would otherwise bound the loop */
        __m256i is0 = _mm256_setzero_si256(), is1 = _mm256_setzero_si256();
        _Pragma("GCC unroll 4")
        for (int c = 0; c < 4; c++) {
            __m256i q = load32(b[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            is0 = dpw(is0, _mm256_maddubs_epi16(lo, load32(a[i].qs + 64 * c)), _mm256_set1_epi16(scb[2 * c]));
            is1 = dpw(is1, _mm256_maddubs_epi16(hi, load32(a[i].qs + 64 * c + 32)), _mm256_set1_epi16(scb[2 * c + 1]));
        }
        __m256i isum = _mm256_add_epi32(is0, is1);
        float d = a[i].d * h2f(b[i].d);
        float dmin = -a[i].d * h2f(b[i].dmin);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
        accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(q4_K_msum(mn16, a[i].bsums)), accm);
    }
    *s = hsum8(acc) + hsum4(accm);
}

/* R (4 or 8) activation rows per weight row: each block is unpacked once;
 * every row's operations are dot_q4_K's in the same order.  Sixteen more
 * registers than AVX2 hold eight rows' accumulators without spilling. */
ALWAYS_INLINE void dotR_q4_K(int R, int64_t n, float *s, int64_t s_stride, const void *w, const void *act,
                             size_t act_stride)
{
    const lb_block_q4_K *b = w;
    const lb_block_a8_K *a[8];   /* [R] activation rows, each [n / 256] blocks */
    for (int j = 0; j < R; j++)
        a[j] = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc[8];
    __m128 accm[8];
    for (int j = 0; j < R; j++) {
        acc[j] = _mm256_setzero_ps();
        accm[j] = _mm_setzero_ps();
    }
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sm = q4_K_scales_mins(b[i].scales);
        uint8_t scb[16];   /* [8 scales, 8 mins] */
        _mm_storeu_si128((__m128i *)scb, sm);
        __m128i mn16 = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));
        __m256i isum[8];
        for (int j = 0; j < R; j++)
            isum[j] = _mm256_setzero_si256();
        _Pragma("GCC unroll 4")
        for (int c = 0; c < 4; c++) {
            __m256i q = load32(b[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i s0 = _mm256_set1_epi16(scb[2 * c]);
            __m256i s1 = _mm256_set1_epi16(scb[2 * c + 1]);
            UNROLL
            for (int j = 0; j < R; j++) {
                isum[j] = dpw(isum[j], _mm256_maddubs_epi16(lo, load32(a[j][i].qs + 64 * c)), s0);
                isum[j] = dpw(isum[j], _mm256_maddubs_epi16(hi, load32(a[j][i].qs + 64 * c + 32)), s1);
            }
        }
        float dw = h2f(b[i].d), dmw = h2f(b[i].dmin);
        UNROLL
        for (int j = 0; j < R; j++) {
            float d = a[j][i].d * dw;
            float dmin = -a[j][i].d * dmw;
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum[j]), acc[j]);
            accm[j] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(q4_K_msum(mn16, a[j][i].bsums)), accm[j]);
        }
    }
    for (int j = 0; j < R; j++)
        s[j * s_stride] = hsum8(acc[j]) + hsum4(accm[j]);
}

static void dot4_q4_K(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dotR_q4_K(4, n, s, s_stride, w, act, act_stride);
}

static void dot8_q4_K(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dotR_q4_K(8, n, s, s_stride, w, act, act_stride);
}

/* ---- Q6_K: the quants are q - 32; the unsigned q goes through maddubs and
 * 32 * a is taken off in int16 (exact), per lane as the reference sums. */

/* Scales of sub-blocks sb (bytes 0-15) and sb+1 (bytes 16-31) as words. */
static inline __m256i q6_K_scale_pair(__m128i sc8, int sb)
{
    __m128i sel = _mm_set_epi64x((long long)(0x0101010101010101ull * (unsigned)(sb + 1)),
                                 (long long)(0x0101010101010101ull * (unsigned)sb));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, sel));
}

static void dot_q6_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q6_K *b = w;      /* [n / 256] */
    const lb_block_a8_K *a = act;    /* [n / 256] */
    const __m256i k32 = _mm256_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)b[i].scales);
        __m256i is[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        _Pragma("GCC unroll 2")
        for (int h = 0; h < 2; h++) {
            __m256i v[4];
            q6_K_unpack(&b[i], h, v);
            _Pragma("GCC unroll 4")
            for (int k = 0; k < 4; k++) {
                __m256i a8 = load32(a[i].qs + 128 * h + 32 * k);
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(v[k], a8), _mm256_maddubs_epi16(k32, a8));
                is[k % 2] = dpw(is[k % 2], p, q6_K_scale_pair(sc8, 8 * h + 2 * k));
            }
        }
        __m256i isum = _mm256_add_epi32(is[0], is[1]);
        float d = a[i].d * h2f(b[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = hsum8(acc);
}

ALWAYS_INLINE void dotR_q6_K(int R, int64_t n, float *s, int64_t s_stride, const void *w, const void *act,
                             size_t act_stride)
{
    const lb_block_q6_K *b = w;
    const lb_block_a8_K *a[8];   /* [R] activation rows, each [n / 256] blocks */
    for (int j = 0; j < R; j++)
        a[j] = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
    const __m256i k32 = _mm256_set1_epi8(32);
    __m256 acc[8];
    for (int j = 0; j < R; j++)
        acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)b[i].scales);
        __m256i isum[8];
        for (int j = 0; j < R; j++)
            isum[j] = _mm256_setzero_si256();
        _Pragma("GCC unroll 2")
        for (int h = 0; h < 2; h++) {
            __m256i v[4];
            q6_K_unpack(&b[i], h, v);
            _Pragma("GCC unroll 4")
            for (int k = 0; k < 4; k++) {
                __m256i scl = q6_K_scale_pair(sc8, 8 * h + 2 * k);
                UNROLL
                for (int j = 0; j < R; j++) {
                    __m256i a8 = load32(a[j][i].qs + 128 * h + 32 * k);
                    __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(v[k], a8), _mm256_maddubs_epi16(k32, a8));
                    isum[j] = dpw(isum[j], p, scl);
                }
            }
        }
        float dw = h2f(b[i].d);
        UNROLL
        for (int j = 0; j < R; j++) {
            float d = a[j][i].d * dw;
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum[j]), acc[j]);
        }
    }
    for (int j = 0; j < R; j++)
        s[j * s_stride] = hsum8(acc[j]);
}

static void dot4_q6_K(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dotR_q6_K(4, n, s, s_stride, w, act, act_stride);
}

static void dot8_q6_K(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    dotR_q6_K(8, n, s, s_stride, w, act, act_stride);
}

/* ---- Q2_K and Q3_K: one float accumulator, exact integer totals. */

static void dot_q2_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q2_K *b = w;      /* [n / 256] */
    const lb_block_a8_K *a = act;    /* [n / 256] */
    const __m256i m2 = _mm256_set1_epi8(3);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i raw = _mm_loadu_si128((const __m128i *)b[i].scales);
        __m128i sc8 = _mm_and_si128(raw, _mm_set1_epi8(0xF));
        __m128i m8 = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0xF));
        __m256i msum = _mm256_madd_epi16(load32(a[i].bsums), _mm256_cvtepu8_epi16(m8));
        __m256i is[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(h ? _mm_srli_si128(sc8, 8) : sc8));
            __m256i q = load32(b[i].qs + 32 * h);
            UNROLL
            for (int j = 0; j < 4; j++) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m2);
                __m256i p = _mm256_maddubs_epi16(v, load32(a[i].qs + 128 * h + 32 * j));
                is[j % 2] = dpw(is[j % 2], p, _mm256_shuffle_epi8(sc16, pair_word(j)));
            }
        }
        __m256i isum = _mm256_add_epi32(is[0], is[1]);
        int32_t si, ms;
        hsum2_i32(isum, msum, &si, &ms);
        acc = combine_k(acc, a[i].d, h2f(b[i].d), h2f(b[i].dmin), si, ms);
    }
    *s = acc;
}

/* Q3_K's quants are q - 4: the unsigned q is multiplied and 4 * the
 * scale-weighted activation sums taken off afterwards (the same integer). */
static void dot_q3_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q3_K *b = w;      /* [n / 256] */
    const lb_block_a8_K *a = act;    /* [n / 256] */
    const __m256i m2 = _mm256_set1_epi8(3);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sc8 = q3_K_scales(b[i].scales);
        __m256i bias = _mm256_madd_epi16(load32(a[i].bsums), _mm256_cvtepi8_epi16(sc8));
        __m256i hm = load32(b[i].hmask);
        __m256i is[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(h ? _mm_srli_si128(sc8, 8) : sc8));
            __m256i q = load32(b[i].qs + 32 * h);
            UNROLL
            for (int j = 0; j < 4; j++) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m2);
                v = _mm256_or_si256(v, move_bit(hm, 4 * h + j, 2));
                __m256i p = _mm256_maddubs_epi16(v, load32(a[i].qs + 128 * h + 32 * j));
                is[j % 2] = dpw(is[j % 2], p, _mm256_shuffle_epi8(sc16, pair_word(j)));
            }
        }
        __m256i isum = _mm256_add_epi32(is[0], is[1]);
        int32_t si, bs;
        hsum2_i32(isum, bias, &si, &bs);
        acc = combine_k(acc, a[i].d, h2f(b[i].d), 0.0f, si - 4 * bs, 0);
    }
    *s = acc;
}

/* Q2_K and Q3_K against four activation rows: the 8 unpacked 32-byte quant
 * chunks and their scale words are made once per block; row j's integer
 * sums and float update are dot_q2_K's / dot_q3_K's. */
static inline void rows4(const lb_block_a8_K *a[4], const void *act, size_t act_stride)
{
    for (int j = 0; j < 4; j++)
        a[j] = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
}

static void dot4_q2_K(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    const lb_block_q2_K *b = w;
    const lb_block_a8_K *a[4];   /* [4] activation rows, each [n / 256] blocks */
    rows4(a, act, act_stride);
    const __m256i m2 = _mm256_set1_epi8(3);
    float acc[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i raw = _mm_loadu_si128((const __m128i *)b[i].scales);
        __m128i sc8 = _mm_and_si128(raw, _mm_set1_epi8(0xF));
        __m256i mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0xF)));
        __m256i isum[4];
        for (int j = 0; j < 4; j++)
            isum[j] = _mm256_setzero_si256();
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(h ? _mm_srli_si128(sc8, 8) : sc8));
            __m256i q = load32(b[i].qs + 32 * h);
            UNROLL
            for (int k = 0; k < 4; k++) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m2);
                __m256i sc = _mm256_shuffle_epi8(sc16, pair_word(k));
                UNROLL
                for (int j = 0; j < 4; j++)
                    isum[j] = dpw(isum[j], _mm256_maddubs_epi16(v, load32(a[j][i].qs + 128 * h + 32 * k)), sc);
            }
        }
        float dw = h2f(b[i].d), dmw = h2f(b[i].dmin);
        for (int j = 0; j < 4; j++) {
            int32_t si, ms;
            hsum2_i32(isum[j], _mm256_madd_epi16(load32(a[j][i].bsums), mins16), &si, &ms);
            acc[j] = combine_k(acc[j], a[j][i].d, dw, dmw, si, ms);
        }
    }
    for (int j = 0; j < 4; j++)
        s[j * s_stride] = acc[j];
}

static void dot4_q3_K(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    const lb_block_q3_K *b = w;
    const lb_block_a8_K *a[4];   /* [4] activation rows, each [n / 256] blocks */
    rows4(a, act, act_stride);
    const __m256i m2 = _mm256_set1_epi8(3);
    float acc[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sc8 = q3_K_scales(b[i].scales);
        __m256i scw = _mm256_cvtepi8_epi16(sc8);
        __m256i hm = load32(b[i].hmask);
        __m256i isum[4];
        for (int j = 0; j < 4; j++)
            isum[j] = _mm256_setzero_si256();
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(h ? _mm_srli_si128(sc8, 8) : sc8));
            __m256i q = load32(b[i].qs + 32 * h);
            UNROLL
            for (int k = 0; k < 4; k++) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m2);
                v = _mm256_or_si256(v, move_bit(hm, 4 * h + k, 2));
                __m256i sc = _mm256_shuffle_epi8(sc16, pair_word(k));
                UNROLL
                for (int j = 0; j < 4; j++)
                    isum[j] = dpw(isum[j], _mm256_maddubs_epi16(v, load32(a[j][i].qs + 128 * h + 32 * k)), sc);
            }
        }
        float dw = h2f(b[i].d);
        for (int j = 0; j < 4; j++) {
            int32_t si, bs;
            hsum2_i32(isum[j], _mm256_madd_epi16(load32(a[j][i].bsums), scw), &si, &bs);
            acc[j] = combine_k(acc[j], a[j][i].d, dw, 0.0f, si - 4 * bs, 0);
        }
    }
    for (int j = 0; j < 4; j++)
        s[j * s_stride] = acc[j];
}

void lb__kernels_register_avx512_k(lb_kernel_set *k)
{
    k->vec_dot4[LB_TYPE_Q2_K] = dot4_q2_K;
    k->vec_dot4[LB_TYPE_Q3_K] = dot4_q3_K;
    k->vec_dot[LB_TYPE_Q2_K] = dot_q2_K;
    k->vec_dot[LB_TYPE_Q3_K] = dot_q3_K;
    k->vec_dot[LB_TYPE_Q4_K] = dot_q4_K;
    k->vec_dot[LB_TYPE_Q6_K] = dot_q6_K;
    k->vec_dot4[LB_TYPE_Q4_K] = dot4_q4_K;
    k->vec_dot4[LB_TYPE_Q6_K] = dot4_q6_K;
    k->vec_dot8[LB_TYPE_Q4_K] = dot8_q4_K;
    k->vec_dot8[LB_TYPE_Q6_K] = dot8_q6_K;
}
