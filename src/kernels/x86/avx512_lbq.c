/* AVX-512 VNNI dot products of lowbit's LBQ2/LBQ3/LBQ4 weights against A8_H:
 * one activation row, four weight rows against one activation row (LBQ2,
 * decode) and one weight row against four activation rows (prefill).
 * VPDPWSSD applies each group's scale and accumulates in one instruction,
 * and the offset term costs one more multiply-add per block.  (A byte table
 * of 2 * sc * q looked up per group with VPDPBUSD measured 7% slower for
 * LBQ2, and a zmm form of the one-row loop 15% slower: on Zen 4 the vector
 * units, not the instruction count, are the limit.)  Same bits as the
 * reference in quant/lbq.c: the integer sums are exact and the float update
 * per block is the reference's. */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/lbq.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define UNROLL _Pragma("GCC unroll 8")
/* m is a constant at every call: the LBQ2 and LBQ3 loops are compiled apart */
#define INLINE static inline __attribute__((always_inline))

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

/* ---- one activation row (decode).  The single-row dot is compute-bound (a
 * 2-bit block is 70 bytes against 256 multiply-adds), so its group loop is
 * kept off the shuffle units: no shift for groups 1 and 3 of a 128-element
 * half (their q is masked in place, i.e. 4q, and their scale word is not
 * multiplied by 4 while the others' is), and each group's scale comes from
 * memory with an embedded broadcast instead of a VPSHUFB.  The integer sum is
 * then 4 * sum_g sc_g q.a exactly, and with the offset folded into the same
 * accumulator one arithmetic shift gives the reference's isum. */

/* Per group g: the scale word (sc_g + 1) in both halves of a dword, times 4
 * for even g % 4 (whose q is taken unshifted, 1q, not 4q). */
static inline __m256i scale_dwords(const uint8_t *scales)
{
    /* nibble g of the 32-bit scales word is group g's: a broadcast (a load)
     * and one variable shift put each in its dword */
    __m256i v = _mm256_srlv_epi32(_mm256_broadcastd_epi32(_mm_loadu_si32(scales)),
                                  _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    __m256i s32 = _mm256_add_epi32(_mm256_and_si256(v, _mm256_set1_epi32(15)), _mm256_set1_epi32(1));
    return _mm256_or_si256(s32, _mm256_slli_epi32(s32, 16));
}
/* One block's exact integer sum (LBQ2: m = 3; LBQ3: m = 7, with hmask) in 8
 * int32 lanes; sw is scale_dwords of its scales, already in memory. */
INLINE __m256i isum1_lbq23(const lb_block_lbq2 *b, const lb_block_a8_K *a, const int32_t *sw, __m256i offw,
                                  int m)
{
    const bool h3 = m == 7;
    const __m256i m03 = _mm256_set1_epi8(0x03), m0c = _mm256_set1_epi8(0x0c);
    const __m256i m04 = _mm256_set1_epi8(0x04), m10 = _mm256_set1_epi8(0x10);
    __m256i hm = h3 ? load32(((const lb_block_lbq3 *)b)->hmask) : _mm256_setzero_si256();
    /* four short chains: with VPDPWSSD's accumulator latency, long ones fill
     * the scheduler before the loads of later blocks can issue */
    __m256i sum[4] = {_mm256_madd_epi16(load32(a->bsums), offw), _mm256_setzero_si256(), _mm256_setzero_si256(),
                      _mm256_setzero_si256()};
    UNROLL
    for (int h = 0; h < 2; h++) {
        __m256i lo = load32(b->qs + 32 * h), hi = _mm256_srli_epi16(lo, 4);
        UNROLL
        for (int j = 0; j < 4; j++) {
            int g = 4 * h + j;
            /* j even: q (0..3 or 0..7); j odd: 4q, bits 2..3 (and 4) */
            __m256i q = _mm256_and_si256(j < 2 ? lo : hi, j % 2 ? m0c : m03);
            if (h3) {
                /* bit g of each hmask byte to bit 2 (j even) or 4 (j odd) */
                int to = j % 2 ? 4 : 2;
                __m256i hb = g >= to ? _mm256_srli_epi16(hm, g - to) : _mm256_slli_epi16(hm, to - g);
                q = _mm256_or_si256(q, _mm256_and_si256(hb, j % 2 ? m10 : m04));
            }
            __m256i p = _mm256_maddubs_epi16(q, load32(a->qs + 32 * g));   /* |p| <= 2 * 28 * 127 */
            sum[j] = _mm256_dpwssd_epi32(sum[j], p, _mm256_set1_epi32(sw[g]));
        }
    }
    /* 4 sum_g sc_g q.a - 2m sum_g sc_g sum(a of g), halved: 2 sum sc q.a - m sum sc a */
    __m256i t = _mm256_add_epi32(_mm256_add_epi32(sum[0], sum[1]), _mm256_add_epi32(sum[2], sum[3]));
    return _mm256_srai_epi32(t, 1);
}

/* Blocks i .. i+3 of a row: their integer sums in the 4 lanes of the result. */
INLINE __m128i isum4_lbq23(const uint8_t *w, size_t w_stride, const lb_block_a8_K *a, int m)
{
    /* [4 blocks][8 groups] scale dwords, read back by embedded broadcasts */
    _Alignas(32) int32_t sw[4][8];
    __m256i offw[4], t[4];
    const __m256i mult = _mm256_setr_epi32(2, 0, 2, 0, 2, 0, 2, 0);
    UNROLL
    for (int k = 0; k < 4; k++) {
        __m256i s = scale_dwords(((const lb_block_lbq2 *)(w + (size_t)k * w_stride))->scales);
        _mm256_store_si256((__m256i *)sw[k], _mm256_sllv_epi32(s, mult));
        offw[k] = _mm256_mullo_epi16(s, _mm256_set1_epi16((short)(-2 * m)));
    }
    /* Keeps the compiler from taking them from registers with a shuffle each:
     * read back from memory they cost a load port, which is idle. */
    __asm__("" : "+m"(sw));
    UNROLL
    for (int k = 0; k < 4; k++)
        t[k] = isum1_lbq23((const lb_block_lbq2 *)(w + (size_t)k * w_stride), &a[k], sw[k], offw[k], m);
    return hsum4x8(t);
}

static inline float isum1_lbq23_scalar(const uint8_t *b, const lb_block_a8_K *a, int m)
{
    _Alignas(32) int32_t sw[8];
    __m256i s = scale_dwords(((const lb_block_lbq2 *)b)->scales);
    _mm256_store_si256((__m256i *)sw, _mm256_sllv_epi32(s, _mm256_setr_epi32(2, 0, 2, 0, 2, 0, 2, 0)));
    __m256i offw = _mm256_mullo_epi16(s, _mm256_set1_epi16((short)(-2 * m)));
    __asm__("" : "+m"(sw));
    return (float)hsum_i32(isum1_lbq23((const lb_block_lbq2 *)b, a, sw, offw, m));
}

/* One row of LBQ2 (m = 3) or LBQ3 (m = 7): acc = acc + dd_i * isum_i block
 * after block, as the reference; four blocks share one horizontal
 * reduction and one vector of dd products (each lane rounded as the
 * reference's scalar product). */
INLINE void dot_lbq23(int64_t n, float *s, const uint8_t *w, size_t w_stride, const void *act, int m)
{
    const lb_block_a8_K *a = act;    /* [n / 256] */
    const int64_t nb = n / LB_QK_K;
    float acc = 0;
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        const uint8_t *b = w + (size_t)i * w_stride;
        __m128 isum = _mm_cvtepi32_ps(isum4_lbq23(b, w_stride, &a[i], m));
        __m128i dw = _mm_setr_epi16((short)((const lb_block_lbq2 *)b)->d,
                                    (short)((const lb_block_lbq2 *)(b + w_stride))->d,
                                    (short)((const lb_block_lbq2 *)(b + 2 * w_stride))->d,
                                    (short)((const lb_block_lbq2 *)(b + 3 * w_stride))->d, 0, 0, 0, 0);
        __m128 dd = _mm_mul_ps(_mm_setr_ps(a[i].d, a[i + 1].d, a[i + 2].d, a[i + 3].d), _mm_cvtph_ps(dw));
        __m128 p = _mm_mul_ps(dd, isum);
        acc = acc + _mm_cvtss_f32(p);
        acc = acc + _mm_cvtss_f32(_mm_movehdup_ps(p));
        acc = acc + _mm_cvtss_f32(_mm_movehl_ps(p, p));
        acc = acc + _mm_cvtss_f32(_mm_shuffle_ps(p, p, 3));
    }
    for (; i < nb; i++) {
        const uint8_t *b = w + (size_t)i * w_stride;
        float dd = a[i].d * _cvtsh_ss(((const lb_block_lbq2 *)b)->d);
        acc = acc + dd * isum1_lbq23_scalar(b, &a[i], m);
    }
    *s = acc;
}

/* Four LBQ2 (m = 3) or LBQ3 (m = 7) weight rows (w_stride bytes apart, blocks
 * bsz bytes) against one activation row (decode): the activation block's
 * loads, its dd factor's conversion and the float updates are shared, lane r
 * of one vector holding row r's acc = acc + dd * isum in the reference's
 * order, so s[r] has vec_dot's bits. */
static void dot_lbq2(int64_t n, float *s, const void *w, const void *act);
static void dot_lbq3(int64_t n, float *s, const void *w, const void *act);

INLINE void dot_rows4_lbq23(int64_t n, float *s, const void *w, size_t w_stride, const void *act, int m, size_t bsz)
{
    /* Longer rows go one at a time: streaming from memory, four in step
     * measured 20% faster at 1540-byte rows (5632 columns) but no faster at
     * 3010 (11008 columns); Q4_0 (avx512_q32.c) turns slower past 2 KiB. */
    if (w_stride > 2048) {
        for (int r = 0; r < 4; r++)
            (m == 3 ? dot_lbq2 : dot_lbq3)(n, &s[r], (const char *)w + (size_t)r * w_stride, act);
        return;
    }
    const lb_block_a8_K *a = act;    /* [n / 256] */
    const int64_t nb = n / LB_QK_K;
    const uint8_t *x = w;            /* [4 rows][w_stride] */
    /* The next four rows are prefetched as one sequential stream, as in
     * avx512_q32.c's dot_rows4_q4_0 (3x slower without it, measured). */
    const uintptr_t next = (uintptr_t)w + 4 * w_stride;   /* an address only: may lie past the tensor */
    const size_t step = (4 * w_stride + (size_t)nb - 1) / (size_t)nb;   /* their bytes per block of these */
    const __m256i mult = _mm256_setr_epi32(2, 0, 2, 0, 2, 0, 2, 0);
    __m128 acc = _mm_setzero_ps();   /* lane r: row r */
    for (int64_t i = 0; i < nb; i++) {
        for (size_t o = 0; o < step; o += 64)
            _mm_prefetch((const char *)(next + (size_t)i * step + o), _MM_HINT_T0);
        const lb_block_lbq2 *blk[4];     /* block i of each row (LBQ3 starts with LBQ2's fields) */
        UNROLL
        for (int r = 0; r < 4; r++)
            blk[r] = (const lb_block_lbq2 *)(x + (size_t)r * w_stride + (size_t)i * bsz);
        _Alignas(32) int32_t sw[4][8];   /* [4 rows][8 groups] scale dwords */
        __m256i offw[4], t[4];
        UNROLL
        for (int r = 0; r < 4; r++) {
            __m256i sc = scale_dwords(blk[r]->scales);
            _mm256_store_si256((__m256i *)sw[r], _mm256_sllv_epi32(sc, mult));
            offw[r] = _mm256_mullo_epi16(sc, _mm256_set1_epi16((short)(-2 * m)));
        }
        __asm__("" : "+m"(sw));
        UNROLL
        for (int r = 0; r < 4; r++)
            t[r] = isum1_lbq23(blk[r], &a[i], sw[r], offw[r], m);
        uint64_t h = 0;
        UNROLL
        for (int r = 0; r < 4; r++)
            h |= (uint64_t)blk[r]->d << (16 * r);
        __m128 dd = _mm_mul_ps(_mm_set1_ps(a[i].d), _mm_cvtph_ps(_mm_cvtsi64_si128((long long)h)));
        acc = _mm_add_ps(acc, _mm_mul_ps(dd, _mm_cvtepi32_ps(hsum4x8(t))));
    }
    _mm_storeu_ps(s, acc);
}

static void dot_rows4_lbq2(int64_t n, float *s, const void *w, size_t w_stride, const void *act)
{
    dot_rows4_lbq23(n, s, w, w_stride, act, 3, sizeof(lb_block_lbq2));
}

static void dot_rows4_lbq3(int64_t n, float *s, const void *w, size_t w_stride, const void *act)
{
    dot_rows4_lbq23(n, s, w, w_stride, act, 7, sizeof(lb_block_lbq3));
}

/* One row of LBQ4: acc = acc + dd_i * isum_i block after block, as the
 * reference.  Two blocks share one horizontal reduction (eight at a time
 * measured slower: register pressure). */
static void dot_lbq4(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbq4 *b = w;      /* [n / 256] */
    const lb_block_a8_K *a = act;    /* [n / 256] */
    const int64_t nb = n / LB_QK_K;
    float acc = 0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m256i h = _mm256_hadd_epi32(isum_lbq4(&b[i], &a[i]), isum_lbq4(&b[i + 1], &a[i + 1]));
        __m128i r = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xB1));   /* lane 0: block i, lane 2: block i + 1 */
        acc = acc + block_dd(&a[i], b[i].d, true) * (float)_mm_cvtsi128_si32(r);
        acc = acc + block_dd(&a[i + 1], b[i + 1].d, true) * (float)_mm_extract_epi32(r, 2);
    }
    for (; i < nb; i++)
        acc = acc + block_dd(&a[i], b[i].d, true) * (float)hsum_i32(isum_lbq4(&b[i], &a[i]));
    *s = acc;
}

static void dot_lbq2(int64_t n, float *s, const void *w, const void *act)
{
    dot_lbq23(n, s, w, sizeof(lb_block_lbq2), act, 3);
}

static void dot_lbq3(int64_t n, float *s, const void *w, const void *act)
{
    dot_lbq23(n, s, w, sizeof(lb_block_lbq3), act, 7);
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
    k->vec_dot_w4[LB_TYPE_LBQ2] = dot_rows4_lbq2;
    k->vec_dot_w4[LB_TYPE_LBQ3] = dot_rows4_lbq3;
}
