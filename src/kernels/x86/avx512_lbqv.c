/* AVX-512 (VNNI, VBMI, BITALG, GFNI) dot products of LBQV weights
 * (quant/lbqv.h) against A8_H activations: one row, four weight rows against
 * one activation row (decode) and one weight row against four activation
 * rows (prefill).  Same bits as the reference in quant/lbqv.c: the
 * integer sums are exact and the float update per block is the reference's.
 *
 * Two blocks (64 codewords, one byte each of idx and sg) are decoded at once
 * and the codeword table is never read per element.  G = |grid| is 2, 6 or
 * 10, so a pattern is two bit masks over its 8 elements, m1 = [G >= 6] and
 * m2 = [G = 10], looked up in two 256-byte tables with VPERMI2B.  With n an
 * element's negative bit and u its codeword's shift bit, c = +-G +-1 gives
 *     |c| = 1 + 4 m1 + 4 m2 + 2 x,   x = n XOR u,   sign(c) = n.
 * The 8th sign is the parity of the 7 stored ones XOR the pattern's parity,
 * which is that of popcount(m1) + popcount(m2) (bench/lbqv_codebook.c's
 * rule): one VPOPCNTB over sg ^ m1 ^ m2.  The four per-codeword mask bytes
 * (x, m2, m1, n) are interleaved into dwords, and GF2P8AFFINEQB transposes
 * each 64-bit lane (two codewords) as an 8x8 bit matrix, giving every
 * element a 4-bit code.  The code and the element's group index a 64-byte
 * table of sc_g * |c| (<= 176, built per block with one VPMULLW), so
 * VPDPBUSD(sc |c|, +-a) sums whole blocks with the scales already applied;
 * the sign moves onto the activation with a masked subtraction or blend.
 * About 45 vector operations per block; on Zen 4 the one-row kernel takes
 * ~9.6 ns per block and the four-row one ~8.5 (one core, data in cache),
 * against ~26 for the AVX2 kernel (avx2_lbqv.c). */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/lbqv.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define UNROLL _Pragma("GCC unroll 8")
#define INLINE static inline __attribute__((always_inline))

/* [256 patterns] bit j: element j's magnitude is >= 6 (m1) / is 10 (m2) */
static _Alignas(64) uint8_t m1_tab[256], m2_tab[256];

static void build_tables(void)
{
    for (int p = 0; p < 256; p++) {
        unsigned a = 0, b = 0;
        for (int j = 0; j < 8; j++) {
            int g = lb__lbqv_grid[p][j] < 0 ? -lb__lbqv_grid[p][j] : lb__lbqv_grid[p][j];
            a |= (unsigned)(g >= 6) << j;
            b |= (unsigned)(g == 10) << j;
        }
        m1_tab[p] = (uint8_t)a;
        m2_tab[p] = (uint8_t)b;
    }
}

/* Byte permutation applied to the 64 idx/sg bytes of two blocks (A in 0..31,
 * B in 32..63) so that after the in-lane unpacks of pair_decode each 64-bit
 * lane holds one codeword of A and one of B in slice order: position
 * p = 16L + 4r + 2i + h holds A's codeword 8r + 2L + i (h = 1) or B's (h = 0). */
static _Alignas(64) uint8_t pair_perm[64];
/* Byte j of each 64-bit lane is 1 << j: GF2P8AFFINEQB against it transposes
 * the lane's 8 bytes as an 8x8 bit matrix. */
static _Alignas(64) uint64_t unit_bits[8];
/* Block b's table of sc_g * |c| has entry t for group (t & 1) | ((t >> 4) & 3) << 1
 * and magnitude code (t >> 1) & 7 (bits m1, m2, x), so that both bytes of a
 * 16-bit word share the code: one VPMULLW by |c| per word then scales the
 * whole table (products below 256 do not carry into the next byte).
 * ctl_tab[b][t]: the bit offset of that group's scale nibble in the pair's
 * 64 bits of scales (A's in 0..31, B's in 32..63). */
static _Alignas(64) uint8_t ctl_tab[2][64];
/* [32 words] |c| = 1 + 4 m1 + 4 m2 + 2 x of code w & 7 */
static _Alignas(64) uint16_t abs_words[32];
/* Byte q of slice z's table index: the group 2z + q / 32 in bits 0 and 4..5. */
static _Alignas(64) uint8_t tab_sel[4][64];

static void build_pair_tables(void)
{
    for (int p = 0; p < 64; p++) {
        int L = p / 16, r = (p / 4) % 4, i = (p / 2) % 2, h = p % 2;
        pair_perm[p] = (uint8_t)((h ? 0 : 32) + 8 * r + 2 * L + i);
    }
    for (int j = 0; j < 8; j++)
        unit_bits[j] = 0x8040201008040201ull;
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 64; t++)
            ctl_tab[b][t] = (uint8_t)(32 * b + 4 * ((t & 1) | ((t >> 4) & 3) << 1));
    for (int w = 0; w < 32; w++)
        abs_words[w] = (uint16_t)(1 + 4 * (w & 1) + 4 * ((w >> 1) & 1) + 2 * ((w >> 2) & 1));
    for (int z = 0; z < 4; z++)
        for (int q = 0; q < 64; q++) {
            int g = 2 * z + q / 32;
            tab_sel[z][q] = (uint8_t)((g & 1) | (g >> 1) << 4);
        }
}

/* Two blocks A and B decoded together (they may be the same block).  code[r]
 * holds, for element 64r + q of each block, A's element code in the low
 * nibble and B's in the high nibble of byte q (bits n, m1, m2, x from the
 * nibble's bit 0). */
typedef struct {
    __m512i code[4];
    __m512i tab[2];   /* [2 blocks]: sc_g * |c| for 8 groups g, 8 codes (m1, m2, x) each */
} pair_dec;

/* Table lookup of 64 indices into a 256-byte table. */
INLINE __m512i lookup256(__m512i idx, __mmask64 hi, const uint8_t *t)
{
    __m512i lo = _mm512_permutex2var_epi8(_mm512_load_si512(t), idx, _mm512_load_si512(t + 64));
    __m512i up = _mm512_permutex2var_epi8(_mm512_load_si512(t + 128), idx, _mm512_load_si512(t + 192));
    return _mm512_mask_blend_epi8(hi, lo, up);
}

INLINE void pair_decode(pair_dec *o, const lb_block_lbqv *a, const lb_block_lbqv *b)
{
    const __m512i perm = _mm512_load_si512(pair_perm);
    __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a->idx)),
                                     _mm256_loadu_si256((const __m256i *)b->idx), 1);
    __m512i sg = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a->sg)),
                                    _mm256_loadu_si256((const __m256i *)b->sg), 1);
    idx = _mm512_permutexvar_epi8(perm, idx);
    sg = _mm512_permutexvar_epi8(perm, sg);
    __mmask64 hi = _mm512_movepi8_mask(idx), up = _mm512_movepi8_mask(sg);
    __m512i m1 = lookup256(idx, hi, m1_tab), m2 = lookup256(idx, hi, m2_tab);
    /* bit 0 of each byte: parity of the 7 stored signs XOR the pattern's
     * parity XOR the shift bit u (bit 7 of sg) */
    __m512i par = _mm512_popcnt_epi8(_mm512_ternarylogic_epi32(sg, m1, m2, 0x96));
    /* n = sg with bit 7 replaced by the 8th sign: sg ^ ((par << 7) & 0x80),
     * as u ^ par = the 8th sign */
    __m512i n = _mm512_ternarylogic_epi32(sg, _mm512_slli_epi16(par, 7), _mm512_set1_epi8((char)0x80), 0x78);
    /* x = n, complemented where the codeword's shift is +1 */
    __m512i x = _mm512_mask_sub_epi8(n, up, _mm512_set1_epi8(-1), n);
    /* dword of each codeword: bytes x, m2, m1, n; GF2P8AFFINEQB then turns
     * the two codewords of a 64-bit lane into 8 bytes of two 4-bit codes
     * (bit 7 - i of the result takes byte i) */
    __m512i t0l = _mm512_unpacklo_epi8(x, m2), t0h = _mm512_unpackhi_epi8(x, m2);
    __m512i t1l = _mm512_unpacklo_epi8(m1, n), t1h = _mm512_unpackhi_epi8(m1, n);
    const __m512i e = _mm512_load_si512(unit_bits);
    o->code[0] = _mm512_gf2p8affine_epi64_epi8(e, _mm512_unpacklo_epi16(t0l, t1l), 0);
    o->code[1] = _mm512_gf2p8affine_epi64_epi8(e, _mm512_unpackhi_epi16(t0l, t1l), 0);
    o->code[2] = _mm512_gf2p8affine_epi64_epi8(e, _mm512_unpacklo_epi16(t0h, t1h), 0);
    o->code[3] = _mm512_gf2p8affine_epi64_epi8(e, _mm512_unpackhi_epi16(t0h, t1h), 0);
    /* the scaled-magnitude tables: each byte picks its group's scale nibble
     * out of the pair's 64 bits of scales, then (nibble + 1) * |c| */
    uint32_t ua, ub;
    memcpy(&ua, a->scales, 4);
    memcpy(&ub, b->scales, 4);
    const __m512i all = _mm512_set1_epi64((long long)((uint64_t)ub << 32 | ua));
    UNROLL
    for (int k = 0; k < 2; k++) {
        __m512i v = _mm512_multishift_epi64_epi8(_mm512_load_si512(ctl_tab[k]), all);
        v = _mm512_add_epi8(_mm512_and_si512(v, _mm512_set1_epi8(15)), _mm512_set1_epi8(1));
        o->tab[k] = _mm512_mullo_epi16(v, _mm512_load_si512(abs_words));
    }
}

/* sc * |c| of the elements of slice r of block A (hb = 0) or B (hb = 1).
 * An element's code has bits n, m1, m2, x from bit 0 (A) or bit 4 (B). */
INLINE __m512i slice_abs(const pair_dec *d, int hb, int r)
{
    __m512i c = hb ? _mm512_srli_epi16(d->code[r], 4) : d->code[r];
    /* (c & 0x0E) | tab_sel: the magnitude bits and the group */
    c = _mm512_ternarylogic_epi32(c, _mm512_set1_epi8(0x0E), _mm512_load_si512(tab_sel[r]), 0xEA);
    return _mm512_permutexvar_epi8(c, d->tab[hb]);
}

/* The elements of slice r of block A or B that are negative. */
INLINE __mmask64 slice_neg(const pair_dec *d, int hb, int r)
{
    return _mm512_test_epi8_mask(d->code[r], _mm512_set1_epi8(hb ? 0x10 : 0x01));
}

/* 64 activations with the weights' signs moved onto them (|a| <= 127, so
 * the negation cannot wrap).  shared: the same activations serve other
 * weight rows, so -a is computed once (the compiler merges the copies) and
 * selected by a blend; otherwise one masked subtraction in place. */
INLINE __m512i signed_act(const int8_t *qs, __mmask64 neg, bool shared)
{
    __m512i a = _mm512_loadu_si512((const void *)qs);
    if (shared)
        return _mm512_mask_blend_epi8(neg, a, _mm512_sub_epi8(_mm512_setzero_si512(), a));
    return _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a);
}

/* Blocks A and B of a pair against activation blocks aa and ab: 16 int32
 * lanes each that add up to the reference's isum (each lane at most
 * 4 slices * 4 * 176 * 127 < 2^19). */
INLINE void pair_isum(const pair_dec *d, const lb_block_a8_K *aa, const lb_block_a8_K *ab, __m512i *ta, __m512i *tb,
                      bool shared)
{
    __m512i sa = _mm512_setzero_si512(), sb = _mm512_setzero_si512();
    UNROLL
    for (int r = 0; r < 4; r++) {
        sa = _mm512_dpbusd_epi32(sa, slice_abs(d, 0, r), signed_act(aa->qs + 64 * r, slice_neg(d, 0, r), shared));
        sb = _mm512_dpbusd_epi32(sb, slice_abs(d, 1, r), signed_act(ab->qs + 64 * r, slice_neg(d, 1, r), shared));
    }
    *ta = sa;
    *tb = sb;
}

/* Horizontal sums of 4 vectors of 16 lanes into the 4 lanes of the result. */
INLINE __m128i hsum4x16(const __m512i t[4])
{
    __m256i h[4];
    UNROLL
    for (int k = 0; k < 4; k++)
        h[k] = _mm256_add_epi32(_mm512_castsi512_si256(t[k]), _mm512_extracti64x4_epi64(t[k], 1));
    __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(h[0], h[1]), _mm256_hadd_epi32(h[2], h[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

static inline int32_t hsum16(__m512i v)
{
    __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* The reference's block factor: a.d * w.d / 16, rounded as it rounds. */
static inline float block_dd(const lb_block_a8_K *a, lb_f16 d) { return a->d * _cvtsh_ss(d) * 0.0625f; }

/* ---- one weight row, one activation row: acc = acc + dd_i * isum_i block
 * after block; four blocks share one horizontal reduction. */
static void dot_lbqv(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbqv *b = w;       /* [n / 256] */
    const lb_block_a8_K *a = act;     /* [n / 256] */
    const int64_t nb = n / LB_QK_K;
    float acc = 0;
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        __m512i t[4];
        pair_dec d0, d1;
        pair_decode(&d0, &b[i], &b[i + 1]);
        pair_decode(&d1, &b[i + 2], &b[i + 3]);
        pair_isum(&d0, &a[i], &a[i + 1], &t[0], &t[1], false);
        pair_isum(&d1, &a[i + 2], &a[i + 3], &t[2], &t[3], false);
        _Alignas(16) int32_t is[4];
        _mm_store_si128((__m128i *)is, hsum4x16(t));
        for (int k = 0; k < 4; k++)
            acc = acc + block_dd(&a[i + k], b[i + k].d) * (float)is[k];
    }
    for (; i < nb; i += 2) {
        const int64_t i1 = i + 1 < nb ? i + 1 : i;
        pair_dec d;
        __m512i t0, t1;
        pair_decode(&d, &b[i], &b[i1]);
        pair_isum(&d, &a[i], &a[i1], &t0, &t1, false);
        acc = acc + block_dd(&a[i], b[i].d) * (float)hsum16(t0);
        if (i + 1 < nb)
            acc = acc + block_dd(&a[i + 1], b[i + 1].d) * (float)hsum16(t1);
    }
    *s = acc;
}

/* The 16-lane sums of t[0..7] as 8 int32 lanes, t[k] in lane k: halves,
 * then quarters, then lanes of two vectors at a time (3 operations per
 * vector instead of 5 for one at a time). */
INLINE __m256i hsum8x16(const __m512i t[8])
{
    __m512i u[4], v[2];
    UNROLL
    for (int k = 0; k < 4; k++)
        u[k] = _mm512_add_epi32(_mm512_shuffle_i64x2(t[2 * k], t[2 * k + 1], 0x44),
                                _mm512_shuffle_i64x2(t[2 * k], t[2 * k + 1], 0xEE));
    UNROLL
    for (int k = 0; k < 2; k++)
        v[k] = _mm512_add_epi32(_mm512_shuffle_i64x2(u[2 * k], u[2 * k + 1], 0x88),
                                _mm512_shuffle_i64x2(u[2 * k], u[2 * k + 1], 0xDD));
    /* 128-bit block k of v[0] holds t[k]'s 4 partial sums, of v[1] t[4 + k]'s */
    __m512i x = _mm512_add_epi32(_mm512_unpacklo_epi32(v[0], v[1]), _mm512_unpackhi_epi32(v[0], v[1]));
    x = _mm512_add_epi32(x, _mm512_shuffle_epi32(x, 0x4E));
    return _mm512_castsi512_si256(
        _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0), x));
}

/* The f16 scales of block i of four rows as floats. */
static inline __m128 row_d4(const uint8_t *x, size_t w_stride, int64_t i)
{
    uint64_t h = 0;
    UNROLL
    for (int r = 0; r < 4; r++)
        h |= (uint64_t)((const lb_block_lbqv *)(x + (size_t)r * w_stride) + i)->d << (16 * r);
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)h));
}

/* ---- four weight rows (w_stride bytes apart) against one activation row
 * (decode): the activations and their negations are shared, and lane r of
 * one vector holds row r's acc = acc + dd * isum in the reference's order,
 * so s[r] has vec_dot's bits.  The next four rows are prefetched as one
 * sequential stream (four interleaved streams defeat the hardware
 * prefetcher; see avx512_lbq.c). */
static void dot_rows4_lbqv(int64_t n, float *s, const void *w, size_t w_stride, const void *act)
{
    if (w_stride > 2048) {
        for (int r = 0; r < 4; r++)
            dot_lbqv(n, &s[r], (const char *)w + (size_t)r * w_stride, act);
        return;
    }
    const lb_block_a8_K *a = act;    /* [n / 256] */
    const int64_t nb = n / LB_QK_K;
    const uint8_t *x = w;            /* [4 rows][w_stride] */
    const uintptr_t next = (uintptr_t)w + 4 * w_stride;   /* an address only: may lie past the tensor */
    const size_t step = (4 * w_stride + (size_t)nb - 1) / (size_t)nb;
#define ROW(r, i) ((const lb_block_lbqv *)(x + (size_t)(r) * w_stride) + (i))
    __m128 acc = _mm_setzero_ps();   /* lane r: row r */
    int64_t i = 0;
    /* two blocks per step: one reduction for the 8 sums */
    for (; i + 2 <= nb; i += 2) {
        for (size_t o = 0; o < 2 * step; o += 64)
            _mm_prefetch((const char *)(next + (size_t)i * step + o), _MM_HINT_T0);
        __m512i t[8];   /* [2 blocks][4 rows] */
        UNROLL
        for (int k = 0; k < 2; k++) {
            pair_dec d0, d1;
            pair_decode(&d0, ROW(0, i + k), ROW(1, i + k));
            pair_decode(&d1, ROW(2, i + k), ROW(3, i + k));
            pair_isum(&d0, &a[i + k], &a[i + k], &t[4 * k], &t[4 * k + 1], true);
            pair_isum(&d1, &a[i + k], &a[i + k], &t[4 * k + 2], &t[4 * k + 3], true);
        }
        __m256 is = _mm256_cvtepi32_ps(hsum8x16(t));
        __m128 dd0 = _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(a[i].d), row_d4(x, w_stride, i)), _mm_set1_ps(0.0625f));
        __m128 dd1 = _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(a[i + 1].d), row_d4(x, w_stride, i + 1)), _mm_set1_ps(0.0625f));
        acc = _mm_add_ps(acc, _mm_mul_ps(dd0, _mm256_castps256_ps128(is)));
        acc = _mm_add_ps(acc, _mm_mul_ps(dd1, _mm256_extractf128_ps(is, 1)));
    }
    if (i < nb) {
        __m512i t[4];
        pair_dec d0, d1;
        pair_decode(&d0, ROW(0, i), ROW(1, i));
        pair_decode(&d1, ROW(2, i), ROW(3, i));
        pair_isum(&d0, &a[i], &a[i], &t[0], &t[1], true);
        pair_isum(&d1, &a[i], &a[i], &t[2], &t[3], true);
        __m128 dd = _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(a[i].d), row_d4(x, w_stride, i)), _mm_set1_ps(0.0625f));
        acc = _mm_add_ps(acc, _mm_mul_ps(dd, _mm_cvtepi32_ps(hsum4x16(t))));
    }
#undef ROW
    _mm_storeu_ps(s, acc);
}

/* ---- one weight row against 4 activation rows act_stride bytes apart
 * (prefill): each pair of blocks is decoded once for all rows (sc |c| and
 * the sign masks once per slice), the signs go onto each row's activations;
 * per row the integer sum and the float update are the one-row kernel's
 * (the four rows side by side in one vector).  An 8-row version measured
 * slower per row (5.3-6.0 ns per block and row against 5.0, one core). */
static void dot4_lbqv(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    const lb_block_lbqv *b = w;      /* [n / 256] */
    const int64_t nb = n / LB_QK_K;
    __m128 acc = _mm_setzero_ps();   /* lane j: activation row j */
    for (int64_t i = 0; i < nb; i += 2) {
        const int nh = i + 1 < nb ? 2 : 1;   /* blocks in this pair */
        pair_dec d;
        pair_decode(&d, &b[i], &b[i + nh - 1]);
        for (int hb = 0; hb < nh; hb++) {
            __m512i t[4];   /* [4 rows] */
            for (int j = 0; j < 4; j++)
                t[j] = _mm512_setzero_si512();
            UNROLL
            for (int r = 0; r < 4; r++) {
                const __m512i c = slice_abs(&d, hb, r);
                const __mmask64 neg = slice_neg(&d, hb, r);
                UNROLL
                for (int j = 0; j < 4; j++) {
                    const lb_block_a8_K *a = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride) + i + hb;
                    t[j] = _mm512_dpbusd_epi32(t[j], c, signed_act(a->qs + 64 * r, neg, false));
                }
            }
            float ad[4];
            for (int j = 0; j < 4; j++)
                ad[j] = ((const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride))[i + hb].d;
            __m128 dd = _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(ad), _mm_set1_ps(_cvtsh_ss(b[i + hb].d))),
                                   _mm_set1_ps(0.0625f));
            acc = _mm_add_ps(acc, _mm_mul_ps(dd, _mm_cvtepi32_ps(hsum4x16(t))));
        }
    }
    float r[4];
    _mm_storeu_ps(r, acc);
    for (int j = 0; j < 4; j++)
        s[j * s_stride] = r[j];
}

void lb__kernels_register_avx512_lbqv(lb_kernel_set *k)
{
    build_tables();
    build_pair_tables();
    k->vec_dot[LB_TYPE_LBQV] = dot_lbqv;
    k->vec_dot_w4[LB_TYPE_LBQV] = dot_rows4_lbqv;
    k->vec_dot4[LB_TYPE_LBQV] = dot4_lbqv;
}
