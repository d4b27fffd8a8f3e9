/* AVX-512 VNNI register-tiled products for prefill and batched decoding
 * (gemm8: a tile of weight rows x 8 activation rows): Q4_0 (the tile itself
 * in gemm_q4_0.h), Q4_K and Q6_K, every result with the bits of the
 * single-row vec_dot. */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "quant/blocks.h"
#include "kernels/x86/k_common.h"

/* Bit-exactness needs every a*b+c outside the explicit FMAs rounded twice:
 * gcc in ISO C mode does not contract, clang must be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* VPDPBUSD does maddubs + madd(1) + add in one instruction, with the same
 * lanes.  32 registers hold a 4 x 2 tile: 16 accumulators, 8 unpacked
 * blocks and the operands. */
#define GEMM_Q4_0_NW 4
#define GEMM_Q4_0_NA 2
#define GEMM_Q4_0_PROD(init, u, a) _mm256_dpbusd_epi32((init), (u), (a))
#define GEMM_Q4_0_DOT lb_kernels_avx512()->vec_dot[LB_TYPE_Q4_0]
#include "kernels/x86/gemm_q4_0.h"

/* ---- Q4_K and Q6_K against 8 activation rows, with the lanes of the
 * single-row dots (avx512_k.c; the contract is in quant/ref_k.c): per block,
 * int32 lane k holds the products of the elements with e mod 32 in
 * 4k..4k+3, each times its sub-block's scale, and lane k of the row's float
 * accumulator gets one FMA with it.
 *
 * Why this shape: maddubs + VPDPWSSD make those lanes with two multiplies
 * per 32 weights and row (Q6_K: three, for the -32).  Here one VPDPBUSD
 * makes a chunk's lanes straight from the bytes, and one VPDPWSSD applies
 * the scales of two chunks at once, their lane sums packed as the two words
 * of each lane (both fit in int16): three multiplies per 64 weights and row
 * instead of four (Q6_K: six).  The work that does not depend on the
 * weight row (the activations' scales and sub-block sums) is done once per
 * call, and the scale products eight rows to a multiplication.  About
 * 1.15-1.3x the 8-row kernels (docs/server.md); integer sums are exact in
 * any order, so every result has the single-row dot's bits. */

/* Rows of at most this many blocks use the per-call tables (16384 columns);
 * longer ones take the 8-row kernel. */
#define GEMM_K_MAX_BLOCKS 64

/* acc + lanes of u (unsigned bytes) x s (signed bytes), 4 bytes a lane. */
static inline __m256i dpb(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }

/* Q4_K: lanes of the low-nibble sub-block 2c in the low words, of the high
 * nibbles' 2c+1 in the high words.  The high sums are shifted up and the
 * low ones added on top by the second VPDPBUSD, which is only right if the
 * low sum is never negative (a borrow would take 1 from the high word), so
 * it starts at 8192 (|sum of 4 products| <= 4 * 15 * 128 = 7680), and
 * 8192 * the low sub-blocks' scales, the same in every lane and row, is
 * where each block's integer sum starts instead of 0. */
/* Rows of at most this many blocks (4096 columns) take gemm8_q4_K_pairs,
 * whose per-call copy of the activations is 2 KiB a block on the stack. */
#define PAIR_MAX_BLOCKS 16

/* Q4_K with 512-bit vectors holding two activation rows: the same lanes,
 * sums and float steps as gemm8_q4_K below (so the same bits), but every
 * unpacked weight chunk is broadcast to both halves and meets rows 2p and
 * 2p+1 in one instruction, which halves the instructions of the inner loop.
 * Zen 4 runs a 512-bit multiply as two 256-bit ones, so the gain is not in
 * the multiplies but in everything around them (decode, shifts, adds, the
 * float steps): 8-stream decoding of techdocs-28M Q4_K_M, one thread, +13%
 * (docs/server.md).  For that the two rows' bytes must be adjacent, hence
 * the copy: interleaving them with an insert per load was slower than the
 * 256-bit kernel. */
/* A zero vector made where it is used, by a zeroing idiom that costs nothing
 * at rename.  _mm512_setzero_si512() becomes one zero register that gcc
 * copies before every VPDPBUSD that starts from zero (its accumulator is
 * overwritten), and on Zen 4 those 512-bit copies execute: this kernel lost
 * its whole gain to them. */
static inline __m512i zero512(void)
{
    __m512i z;
    __asm__ volatile("vpxord %x0, %x0, %x0" : "=v"(z));
    return z;
}

/* Both Q4_K kernels' per-call tables of the 8 activation rows: ad[i][j] the
 * scale of row j's block i, sub[i][j] its 8 sub-block sums (the A8_K
 * partial sums of 16 added in pairs). */
static void q4_K_act_tables(const void *act, size_t act_stride, int64_t nb, float (*ad)[8], int16_t (*sub)[8][8])
{
    for (int j = 0; j < 8; j++) {
        const lb_block_a8_K *a = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
        for (int64_t i = 0; i < nb; i++) {
            ad[i][j] = a[i].d;
            __m256i bs = load32(a[i].bsums);
            _mm_store_si128((__m128i *)sub[i][j],
                            _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1)));
        }
    }
}

/* dot_q4_K's 4-lane min sums of one block for the 8 rows, rows 2p | 2p+1 in
 * accm[p] (pairs p0..3): sm16 the block's [8 scales, 8 mins], ad its rows'
 * activation scales [8], sub their sub-block sums [8][8]. */
static inline __attribute__((always_inline)) void q4_K_mins(const int p0, __m256 accm[4], __m256i sm16, lb_f16 dmin,
                                                            const float *ad, const int16_t (*sub)[8])
{
    const __m256i mn16 = _mm256_permute4x64_epi64(sm16, 0xee);   /* the 8 mins, twice */
    /* the reference's (-d_a) * dmin_w: the same float, rounding is symmetric */
    const __m256 dm8 = _mm256_mul_ps(_mm256_load_ps(ad), _mm256_set1_ps(-h2f(dmin)));
    _Pragma("GCC unroll 4")
    for (int p = p0; p < 4; p++) {
        /* a permutation, not broadcast loads of values just stored, which wait for store
         * forwarding here (8% slower) */
        __m256 dmp = _mm256_permutevar8x32_ps(
            dm8, _mm256_setr_epi32(2 * p, 2 * p, 2 * p, 2 * p, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1));
        __m256i msum = _mm256_madd_epi16(mn16, load32(sub[2 * p]));
        accm[p] = _mm256_fmadd_ps(dmp, _mm256_cvtepi32_ps(msum), accm[p]);
    }
}

/* q4_K_mins for the paired kernel, four rows to a 512-bit vector: accq[q]
 * holds rows 4q..4q+3, a 128-bit quarter each (the same 4-lane sums and
 * operations per lane as q4_K_mins, half the instructions); quads q0 = j0 / 4
 * .. 1. */
static inline __attribute__((always_inline)) void q4_K_mins_quads(const int q0, __m512 accq[2], __m256i sm16,
                                                                  lb_f16 dmin, const float *ad,
                                                                  const int16_t (*sub)[8])
{
    const __m512i mn = _mm512_broadcast_i32x4(_mm256_extracti128_si256(sm16, 1));   /* the 8 mins, 4 times */
    const __m512 dm8 = _mm512_castps256_ps512(_mm256_mul_ps(_mm256_load_ps(ad), _mm256_set1_ps(-h2f(dmin))));
    _Pragma("GCC unroll 2")
    for (int q = q0; q < 2; q++) {
        const __m512 dmq = _mm512_permutexvar_ps(
            _mm512_setr_epi32(4 * q, 4 * q, 4 * q, 4 * q, 4 * q + 1, 4 * q + 1, 4 * q + 1, 4 * q + 1, 4 * q + 2,
                              4 * q + 2, 4 * q + 2, 4 * q + 2, 4 * q + 3, 4 * q + 3, 4 * q + 3, 4 * q + 3),
            dm8);
        const __m512i msum = _mm512_madd_epi16(mn, _mm512_loadu_si512(sub[4 * q]));
        accq[q] = _mm512_fmadd_ps(dmq, _mm512_cvtepi32_ps(msum), accq[q]);
    }
}

/* Weight row r's results for rows j0..7 of the 8 (pairs p0 = j0/2 ..3):
 * acc[j] row j's 8-lane scale sums, accm as in q4_K_mins. */
static inline __attribute__((always_inline)) void q4_K_store(const int p0, int j0, float *s, int64_t s_stride,
                                                             int64_t r, const __m256 acc[8], const __m256 accm[4])
{
    _Pragma("GCC unroll 4")
    for (int p = p0; p < 4; p++) {
        if (2 * p >= j0)
            s[(2 * p) * s_stride + r] = hsum8(acc[2 * p]) + hsum4(_mm256_castps256_ps128(accm[p]));
        s[(2 * p + 1) * s_stride + r] = hsum8(acc[2 * p + 1]) + hsum4(_mm256_extractf128_ps(accm[p], 1));
    }
}

/* hsum8 of the eight rows of the paired kernels' accumulators (acc[p]: rows
 * 2p | 2p+1) plus, when accq is given, hsum4 of its 4-lane sums (accq[q]:
 * rows 4q .. 4q+3), as s[j * s_stride + r] for all eight rows: the same pairs
 * added in the same order as hsum8 and hsum4, four rows to a 512-bit vector
 * (each row in a 128-bit quarter, its result in the quarter's first lane).
 * Row by row these reductions took a fifth of a 512-column tile. */
static inline __attribute__((always_inline)) void pairs_store8(float *s, int64_t s_stride, int64_t r,
                                                               const __m512 acc[4], const __m512 *accq)
{
    __m512 x[4];   /* [pair p]: in each row's 256 bits, its high 128 + low 128 twice */
    _Pragma("GCC unroll 4")
    for (int p = 0; p < 4; p++)
        x[p] = _mm512_add_ps(acc[p], _mm512_shuffle_f32x4(acc[p], acc[p], _MM_SHUFFLE(2, 3, 0, 1)));
    _Pragma("GCC unroll 2")
    for (int q = 0; q < 2; q++) {
        /* rows 4q .. 4q+3, one to a quarter; then lanes (0+2), (1+3), and their sum, as hsum8 */
        __m512 u = _mm512_shuffle_f32x4(x[2 * q], x[2 * q + 1], _MM_SHUFFLE(2, 0, 2, 0));
        u = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(1, 0, 3, 2)));
        u = _mm512_add_ps(u, _mm512_movehdup_ps(u));
        if (accq) {
            __m512 m = _mm512_add_ps(accq[q], _mm512_permute_ps(accq[q], _MM_SHUFFLE(1, 0, 3, 2)));
            m = _mm512_add_ps(m, _mm512_movehdup_ps(m));
            u = _mm512_add_ps(u, m);
        }
        _mm_store_ss(s + (4 * q) * s_stride + r, _mm512_castps512_ps128(u));
        _mm_store_ss(s + (4 * q + 1) * s_stride + r, _mm512_extractf32x4_ps(u, 1));
        _mm_store_ss(s + (4 * q + 2) * s_stride + r, _mm512_extractf32x4_ps(u, 2));
        _mm_store_ss(s + (4 * q + 3) * s_stride + r, _mm512_extractf32x4_ps(u, 3));
    }
}

/* The paired kernels' copy of the 8 activation rows: ap[i][p][c][h] holds
 * bytes 64c + 32h .. +31 of block i of row 2p, then those of row 2p+1, each
 * byte xor flip; adp[i][p] row 2p's scale x8, then row 2p+1's x8. */
static void pair_rows(const void *act, size_t act_stride, int64_t nb, __m256i flip, int8_t (*ap)[4][4][2][64],
                      float (*adp)[4][16])
{
    for (int j = 0; j < 8; j++) {
        const lb_block_a8_K *a = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
        for (int64_t i = 0; i < nb; i++) {
            _mm256_store_ps(adp[i][j / 2] + 8 * (j & 1), _mm256_set1_ps(a[i].d));
            for (int c = 0; c < 4; c++)
                for (int h = 0; h < 2; h++)
                    _mm256_store_si256((__m256i *)(ap[i][j / 2][c][h] + 32 * (j & 1)),
                                       _mm256_xor_si256(load32(a[i].qs + 64 * c + 32 * h), flip));
        }
    }
}

/* The paired kernels' arrangement of 8 activation rows of nb blocks, made
 * once per product (gemm8_prep) or per call: ap as pair_rows, adp its
 * scales, and for Q4_K ad and sub as q4_K_act_tables.  One buffer, the
 * arrays one after another (each a multiple of 64 bytes for nb <= 16). */
typedef struct pair_prep {
    int8_t (*ap)[4][4][2][64];   /* [nb][pair p][chunk c][low, high nibbles' part] */
    float (*adp)[4][16];         /* [nb][pair p] scale of row 2p x8, of 2p+1 x8 */
    float (*ad)[8];              /* [nb][row] activation scales (Q4_K) */
    int16_t (*sub)[8][8];        /* [nb][row][sub-block] sums of 32 activations (Q4_K) */
} pair_prep;

/* Rounded up to 64 bytes: gemm8_prep's buffers sit one after another, and ap is read with aligned 512-bit loads
 * (Q4_K's 2464 bytes a block left every other group of an odd nb 32 bytes off). */
static size_t pair_prep_bytes(int64_t nb, bool q4)
{
    const size_t b = (size_t)nb * (sizeof(int8_t[4][4][2][64]) + sizeof(float[4][16]) +
                                   (q4 ? sizeof(float[8]) + sizeof(int16_t[8][8]) : 0));
    return (b + 63) & ~(size_t)63;
}

static pair_prep pair_prep_at(void *buf, int64_t nb, bool q4)
{
    char *b = buf;
    pair_prep pp = {(int8_t(*)[4][4][2][64])b, NULL, NULL, NULL};
    b += (size_t)nb * sizeof(int8_t[4][4][2][64]);
    pp.adp = (float(*)[4][16])b;
    b += (size_t)nb * sizeof(float[4][16]);
    if (q4) {
        pp.ad = (float(*)[8])b;
        b += (size_t)nb * sizeof(float[8]);
        pp.sub = (int16_t(*)[8][8])b;
    }
    return pp;
}

static void q4_K_pairs_prep(int64_t nb, const void *act, size_t act_stride, const pair_prep *pp)
{
    q4_K_act_tables(act, act_stride, nb, pp->ad, pp->sub);
    pair_rows(act, act_stride, nb, _mm256_setzero_si256(), pp->ap, pp->adp);
}

/* Calls rows(p0, j0, ...) for rows j0..7 with the first pair p0 = j0 / 2 a
 * constant, and j0 too for the common case of all eight (nothing to skip). */
#define BY_FIRST_PAIR(rows, j0, ...)                 \
    switch ((j0) / 2) {                              \
    case 0:                                          \
        if ((j0) == 0)                               \
            rows(0, 0, __VA_ARGS__);                 \
        else                                         \
            rows(0, 1, __VA_ARGS__);                 \
        break;                                       \
    case 1: rows(1, (j0), __VA_ARGS__); break;       \
    case 2: rows(2, (j0), __VA_ARGS__); break;       \
    default: rows(3, (j0), __VA_ARGS__); break;      \
    }

/* Rows j0..7 of the arranged eight, j0 / 2 = p0 (a constant: the pairs' loops unroll): a tail of fewer than 8
 * rows pays for its pairs only, not for eight rows. */
static inline __attribute__((always_inline)) void q4_K_pairs_rows(const int p0, int j0, int64_t nb, int64_t nw,
                                                                  float *s, int64_t s_stride, const void *w,
                                                                  size_t w_stride, const pair_prep *pp)
{
    int8_t (*const ap)[4][4][2][64] = pp->ap;
    float (*const adp)[4][16] = pp->adp;
    float (*const ad)[8] = pp->ad;
    int16_t (*const sub)[8][8] = pp->sub;
    const __m512i bias = _mm512_set1_epi32(8192);
    const __m512i m4 = _mm512_set1_epi8(0xF);
    for (int64_t r = 0; r < nw; r++) {
        const lb_block_q4_K *b = (const lb_block_q4_K *)((const char *)w + (size_t)r * w_stride);
        __m512 acc[4];    /* [pair p]: dot_q4_K's 8-lane scale sums of rows 2p | 2p+1 */
        __m512 accq[2];   /* [quad q]: its 4-lane min sums of rows 4q .. 4q+3 */
        _Pragma("GCC unroll 4")
        for (int p = p0; p < 4; p++)
            acc[p] = _mm512_setzero_ps();
        accq[0] = accq[1] = _mm512_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            const __m128i sm8 = q4_K_scales_mins(b[i].scales);   /* [8 scales, 8 mins] */
            const __m256i sm16 = _mm256_cvtepu8_epi16(sm8);
            __m512i scp[4], lo[4], hi[4];   /* [chunk c]: scales of sub-blocks 2c, 2c+1 as a lane's words; nibbles */
            _Pragma("GCC unroll 4")
            for (int c = 0; c < 4; c++) {
                scp[c] = _mm512_permutexvar_epi32(_mm512_set1_epi32(c), _mm512_castsi256_si512(sm16));
                const __m512i q = _mm512_broadcast_i64x4(load32(b[i].qs + 32 * c));
                lo[c] = _mm512_and_si512(q, m4);
                hi[c] = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            }
            /* -8192 * (scales 0 + 2 + 4 + 6), the even scales summed by PSADBW: scalar loads of the
             * scales just stored waited for store forwarding */
            const __m128i even = _mm_sad_epu8(
                _mm_and_si128(sm8, _mm_setr_epi8(-1, 0, -1, 0, -1, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0)), _mm_setzero_si128());
            const __m512i start = _mm512_broadcastd_epi32(_mm_sub_epi32(_mm_setzero_si128(), _mm_slli_epi32(even, 13)));
            const __m512 dw = _mm512_set1_ps(h2f(b[i].d));
            _Pragma("GCC unroll 4")
            for (int p = p0; p < 4; p++) {
                __m512i isum = start;
                _Pragma("GCC unroll 4")
                for (int c = 0; c < 4; c++) {
                    __m512i pk = _mm512_dpbusd_epi32(zero512(), hi[c], _mm512_load_si512(ap[i][p][c][1]));
                    pk = _mm512_add_epi32(_mm512_slli_epi32(pk, 16), bias);
                    pk = _mm512_dpbusd_epi32(pk, lo[c], _mm512_load_si512(ap[i][p][c][0]));
                    isum = _mm512_dpwssd_epi32(isum, pk, scp[c]);
                }
                acc[p] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_load_ps(adp[i][p]), dw), _mm512_cvtepi32_ps(isum), acc[p]);
            }
            q4_K_mins_quads(p0 / 2, accq, sm16, b[i].dmin, ad[i], sub[i]);
        }
        if (p0 == 0 && j0 == 0) {   /* all eight (p0 is a constant: the other instances drop this) */
            pairs_store8(s, s_stride, r, acc, accq);
            continue;
        }
        __m256 rows[8], accm[4];   /* [row] acc's halves; [pair p] the min sums of rows 2p | 2p+1 */
        _Pragma("GCC unroll 4")
        for (int p = p0; p < 4; p++) {
            rows[2 * p] = _mm512_castps512_ps256(acc[p]);
            rows[2 * p + 1] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[p]), 1));
            const __m512d mq = _mm512_castps_pd(accq[p / 2]);
            accm[p] = _mm256_castpd_ps(p & 1 ? _mm512_extractf64x4_pd(mq, 1) : _mm512_castpd512_pd256(mq));
        }
        q4_K_store(p0, j0, s, s_stride, r, rows, accm);
    }
}

static void q4_K_pairs_core(int64_t nb, int64_t nw, float *s, int64_t s_stride, const void *w, size_t w_stride,
                            const pair_prep *pp, int j0)
{
    BY_FIRST_PAIR(q4_K_pairs_rows, j0, nb, nw, s, s_stride, w, w_stride, pp);
}

static void gemm8_q4_K_pairs(int64_t nb, int64_t nw, float *s, int64_t s_stride, const void *w, size_t w_stride,
                             const void *act, size_t act_stride)
{
    _Alignas(64) char buf[PAIR_MAX_BLOCKS * (sizeof(int8_t[4][4][2][64]) + sizeof(float[4][16]) + sizeof(float[8]) +
                                             sizeof(int16_t[8][8]))];
    const pair_prep pp = pair_prep_at(buf, nb, true);
    q4_K_pairs_prep(nb, act, act_stride, &pp);
    q4_K_pairs_core(nb, nw, s, s_stride, w, w_stride, &pp, 0);
}

static void gemm8_q4_K(int64_t n, int64_t nw, float *s, int64_t s_stride, const void *w, size_t w_stride,
                       const void *act, size_t act_stride)
{
    const int64_t nb = n / LB_QK_K;
    if (nb <= PAIR_MAX_BLOCKS) {
        gemm8_q4_K_pairs(nb, nw, s, s_stride, w, w_stride, act, act_stride);
        return;
    }
    if (nb > GEMM_K_MAX_BLOCKS) {
        lb_vec_dot4_fn dot8 = lb_kernels_avx512()->vec_dot8[LB_TYPE_Q4_K];
        for (int64_t r = 0; r < nw; r++)
            dot8(n, s + r, s_stride, (const char *)w + (size_t)r * w_stride, act, act_stride);
        return;
    }
    const lb_block_a8_K *a[8];                            /* [row] -> [nb] activation blocks */
    _Alignas(32) float ad[GEMM_K_MAX_BLOCKS][8];          /* [block][row] activation scales */
    _Alignas(32) int16_t sub[GEMM_K_MAX_BLOCKS][8][8];    /* [block][row][sub-block] sums of 32 activations */
    for (int j = 0; j < 8; j++)
        a[j] = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
    q4_K_act_tables(act, act_stride, nb, ad, sub);
    const __m256i bias = _mm256_set1_epi32(8192);
    const __m256i m4 = _mm256_set1_epi8(0xF);
    for (int64_t r = 0; r < nw; r++) {
        const lb_block_q4_K *b = (const lb_block_q4_K *)((const char *)w + (size_t)r * w_stride);
        __m256 acc[8];    /* [row]: dot_q4_K's 8-lane scale sums */
        __m256 accm[4];   /* [rows 2p | 2p+1]: dot_q4_K's 4-lane min sums side by side */
        _Pragma("GCC unroll 8")
        for (int j = 0; j < 8; j++)
            acc[j] = _mm256_setzero_ps();
        _Pragma("GCC unroll 4")
        for (int p = 0; p < 4; p++)
            accm[p] = _mm256_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            __m128i sm = q4_K_scales_mins(b[i].scales);
            __m256i sm16 = _mm256_cvtepu8_epi16(sm);
            uint16_t scw[16];   /* [8 scales, 8 mins]; scw[2c], scw[2c+1] are sp[c]'s words */
            _mm256_storeu_si256((__m256i *)scw, sm16);
            uint32_t sp[4];     /* [pair c]: scale of sub-block 2c, then of 2c+1 */
            memcpy(sp, scw, sizeof sp);
            __m256i lo[4], hi[4];   /* [chunk c] the 32 low and 32 high nibbles */
            _Pragma("GCC unroll 4")
            for (int c = 0; c < 4; c++) {
                __m256i q = load32(b[i].qs + 32 * c);
                lo[c] = _mm256_and_si256(q, m4);
                hi[c] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            }
            const __m256i start = _mm256_set1_epi32(-8192 * (scw[0] + scw[2] + scw[4] + scw[6]));
            __m256i isum[8];
            _Pragma("GCC unroll 8")
            for (int j = 0; j < 8; j++)
                isum[j] = start;
            /* Not unrolled: unrolled, gcc computes all products first and spills them. */
            _Pragma("GCC unroll 1")
            for (int c = 0; c < 4; c++) {
                const __m256i scp = _mm256_set1_epi32((int)sp[c]);
                _Pragma("GCC unroll 8")
                for (int j = 0; j < 8; j++) {
                    const int8_t *aq = a[j][i].qs + 64 * c;
                    __m256i pk = _mm256_slli_epi32(dpb(_mm256_setzero_si256(), hi[c], load32(aq + 32)), 16);
                    pk = dpb(_mm256_add_epi32(pk, bias), lo[c], load32(aq));
                    isum[j] = _mm256_dpwssd_epi32(isum[j], pk, scp);
                }
            }
            _Alignas(32) float dd[8];   /* [row] d_a * d_w */
            _mm256_store_ps(dd, _mm256_mul_ps(_mm256_load_ps(ad[i]), _mm256_set1_ps(h2f(b[i].d))));
            _Pragma("GCC unroll 8")
            for (int j = 0; j < 8; j++)
                acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dd[j]), _mm256_cvtepi32_ps(isum[j]), acc[j]);
            q4_K_mins(0, accm, sm16, b[i].dmin, ad[i], sub[i]);
        }
        q4_K_store(0, 0, s, s_stride, r, acc, accm);
    }
}

/* Q6_K: the quants go in as signed q - 32 and the activations as unsigned
 * a + 128 (a sign-bit flip), so one VPDPBUSD gives a chunk's lanes with the
 * -32 included, plus 128 * the lane's weight sum, which is the same for
 * every row and comes off once per block.  Chunks 2m and 2m+1 share the
 * words of a lane (|sum| <= 4 * 255 * 32 < 2^15); these sums may be
 * negative, so they are joined with a shift and a word blend. */

/* Block b's eight 32-element chunks (chunk 4h + k is dot_q6_K's k of half
 * h): the 6-bit quants minus 32, as signed bytes. */
static inline void q6_K_quants(const lb_block_q6_K *b, __m256i v[8])
{
    const __m256i k32 = _mm256_set1_epi8(32);
    _Pragma("GCC unroll 2")
    for (int h = 0; h < 2; h++) {
        q6_K_unpack(b, h, &v[4 * h]);
        _Pragma("GCC unroll 4")
        for (int k = 0; k < 4; k++)
            v[4 * h + k] = _mm256_sub_epi8(v[4 * h + k], k32);
    }
}

/* Lanes of lo in the low words, of hi in the high words (each fits int16). */
static inline __m256i pack_words(__m256i lo, __m256i hi)
{
    return _mm256_blend_epi16(lo, _mm256_slli_epi32(hi, 16), 0xAA);
}

/* Block b's 16 scales as words, each group of four in the order 0 2 1 3:
 * dword 2m holds (sc[4m], sc[4m+2]), dword 2m+1 (sc[4m+1], sc[4m+3]), the
 * scale words of chunk pair m (a chunk's first 16 elements being sub-block
 * 2c's and the rest 2c+1's). */
static inline __m256i q6_K_scale_words(const lb_block_q6_K *b)
{
    return _mm256_shuffle_epi8(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)b->scales)),
                               _mm256_setr_epi8(0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15, 0, 1, 4, 5, 2, 3,
                                                6, 7, 8, 9, 12, 13, 10, 11, 14, 15));
}

/* Where a block's integer sums start: minus 128 * each lane's scaled weight
 * sum (v the quants minus 32, scp the scale words), the a + 128 surplus of
 * every row. */
static inline __m256i q6_K_start(const __m256i v[8], const __m256i scp[4])
{
    const __m256i k80 = _mm256_set1_epi8((char)0x80);
    __m256i surplus = _mm256_setzero_si256();
    _Pragma("GCC unroll 4")
    for (int m = 0; m < 4; m++) {
        __m256i c0 = dpb(_mm256_setzero_si256(), k80, v[2 * m]);
        __m256i c1 = dpb(_mm256_setzero_si256(), k80, v[2 * m + 1]);
        surplus = _mm256_dpwssd_epi32(surplus, pack_words(c0, c1), scp[m]);
    }
    return _mm256_sub_epi32(_mm256_setzero_si256(), surplus);
}

/* The scale words of gemm8_q6_K's chunk pair m (lanes 0-3 dword 2m of
 * q6_K_scale_words, lanes 4-7 dword 2m+1), where the block's sums start,
 * and its quants minus 32 (the per-block work that does not depend on the
 * activation rows). */
static inline __attribute__((always_inline)) void q6_K_block(const lb_block_q6_K *b, __m256i v[8], __m256i scp[4],
                                                         __m256i *start)
{
    q6_K_quants(b, v);
    const __m256i sw = q6_K_scale_words(b);
    _Pragma("GCC unroll 4")
    for (int m = 0; m < 4; m++)
        scp[m] = _mm256_permutevar8x32_epi32(sw, _mm256_setr_epi32(2 * m, 2 * m, 2 * m, 2 * m, 2 * m + 1, 2 * m + 1,
                                                                   2 * m + 1, 2 * m + 1));
    *start = q6_K_start(v, scp);
}

/* Q6_K on paired activation rows, as gemm8_q4_K_pairs (same lanes and bits
 * as gemm8_q6_K; the copy also does the sign-bit flip of the activations,
 * once per call instead of once per weight row). */
static void q6_K_pairs_prep(int64_t nb, const void *act, size_t act_stride, const pair_prep *pp)
{
    pair_rows(act, act_stride, nb, _mm256_set1_epi8((char)0x80), pp->ap, pp->adp);
}

/* ap here: a + 128 as bytes ([block][pair p][chunk pair m][first, second]), the sign-bit flip done once per prep. */
/* Rows j0..7 of the arranged eight, j0 / 2 = p0, as q4_K_pairs_rows. */
static inline __attribute__((always_inline)) void q6_K_pairs_rows(const int p0, int j0, int64_t nb, int64_t nw,
                                                                  float *s, int64_t s_stride, const void *w,
                                                                  size_t w_stride, const pair_prep *pp)
{
    int8_t (*const ap)[4][4][2][64] = pp->ap;
    float (*const adp)[4][16] = pp->adp;
    for (int64_t r = 0; r < nw; r++) {
        const lb_block_q6_K *b = (const lb_block_q6_K *)((const char *)w + (size_t)r * w_stride);
        __m512 acc[4];   /* [pair p]: dot_q6_K's 8-lane sums of rows 2p | 2p+1 */
        _Pragma("GCC unroll 4")
        for (int p = p0; p < 4; p++)
            acc[p] = _mm512_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            __m256i v[8], scp[4], start;
            q6_K_block(&b[i], v, scp, &start);
            __m512i vz[8], spz[4];   /* both halves the same */
            _Pragma("GCC unroll 8")
            for (int k = 0; k < 8; k++)
                vz[k] = _mm512_broadcast_i64x4(v[k]);
            _Pragma("GCC unroll 4")
            for (int m = 0; m < 4; m++)
                spz[m] = _mm512_broadcast_i64x4(scp[m]);
            const __m512i startz = _mm512_broadcast_i64x4(start);
            const __m512 dw = _mm512_set1_ps(h2f(b[i].d));
            _Pragma("GCC unroll 4")
            for (int p = p0; p < 4; p++) {
                __m512i isum = startz;
                _Pragma("GCC unroll 4")
                for (int m = 0; m < 4; m++) {
                    __m512i d0 = _mm512_dpbusd_epi32(zero512(), _mm512_load_si512(ap[i][p][m][0]), vz[2 * m]);
                    __m512i d1 = _mm512_dpbusd_epi32(zero512(), _mm512_load_si512(ap[i][p][m][1]), vz[2 * m + 1]);
                    /* pack_words: d0's lanes in the low words, d1's in the high ones */
                    __m512i pk = _mm512_mask_blend_epi16(0xAAAAAAAAu, d0, _mm512_slli_epi32(d1, 16));
                    isum = _mm512_dpwssd_epi32(isum, pk, spz[m]);
                }
                acc[p] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_load_ps(adp[i][p]), dw), _mm512_cvtepi32_ps(isum), acc[p]);
            }
        }
        if (p0 == 0 && j0 == 0) {   /* all eight (p0 is a constant: the other instances drop this) */
            pairs_store8(s, s_stride, r, acc, NULL);
            continue;
        }
        _Pragma("GCC unroll 4")
        for (int p = p0; p < 4; p++) {
            if (2 * p >= j0)
                s[(2 * p) * s_stride + r] = hsum8(_mm512_castps512_ps256(acc[p]));
            s[(2 * p + 1) * s_stride + r] = hsum8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[p]), 1)));
        }
    }
}

static void q6_K_pairs_core(int64_t nb, int64_t nw, float *s, int64_t s_stride, const void *w, size_t w_stride,
                            const pair_prep *pp, int j0)
{
    BY_FIRST_PAIR(q6_K_pairs_rows, j0, nb, nw, s, s_stride, w, w_stride, pp);
}

static void gemm8_q6_K_pairs(int64_t nb, int64_t nw, float *s, int64_t s_stride, const void *w, size_t w_stride,
                             const void *act, size_t act_stride)
{
    _Alignas(64) char buf[PAIR_MAX_BLOCKS * (sizeof(int8_t[4][4][2][64]) + sizeof(float[4][16]))];
    const pair_prep pp = pair_prep_at(buf, nb, false);
    q6_K_pairs_prep(nb, act, act_stride, &pp);
    q6_K_pairs_core(nb, nw, s, s_stride, w, w_stride, &pp, 0);
}

static void gemm8_q6_K(int64_t n, int64_t nw, float *s, int64_t s_stride, const void *w, size_t w_stride,
                       const void *act, size_t act_stride)
{
    const int64_t nb = n / LB_QK_K;
    if (nb <= PAIR_MAX_BLOCKS) {
        gemm8_q6_K_pairs(nb, nw, s, s_stride, w, w_stride, act, act_stride);
        return;
    }
    if (nb > GEMM_K_MAX_BLOCKS) {
        lb_vec_dot4_fn dot8 = lb_kernels_avx512()->vec_dot8[LB_TYPE_Q6_K];
        for (int64_t r = 0; r < nw; r++)
            dot8(n, s + r, s_stride, (const char *)w + (size_t)r * w_stride, act, act_stride);
        return;
    }
    const lb_block_a8_K *a[8];                     /* [row] -> [nb] activation blocks */
    _Alignas(32) float ad[GEMM_K_MAX_BLOCKS][8];   /* [block][row] activation scales */
    for (int j = 0; j < 8; j++) {
        a[j] = (const lb_block_a8_K *)((const char *)act + (size_t)j * act_stride);
        for (int64_t i = 0; i < nb; i++)
            ad[i][j] = a[j][i].d;
    }
    const __m256i k80 = _mm256_set1_epi8((char)0x80);
    for (int64_t r = 0; r < nw; r++) {
        const lb_block_q6_K *b = (const lb_block_q6_K *)((const char *)w + (size_t)r * w_stride);
        __m256 acc[8];   /* [row]: dot_q6_K's 8-lane sums */
        _Pragma("GCC unroll 8")
        for (int j = 0; j < 8; j++)
            acc[j] = _mm256_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            __m256i v[8], scp[4], start;
            q6_K_block(&b[i], v, scp, &start);
            __m256i isum[8];
            _Pragma("GCC unroll 8")
            for (int j = 0; j < 8; j++)
                isum[j] = start;
            _Pragma("GCC unroll 1")
            for (int m = 0; m < 4; m++) {
                const __m256i v0 = v[2 * m], v1 = v[2 * m + 1], sp = scp[m];
                _Pragma("GCC unroll 8")
                for (int j = 0; j < 8; j++) {
                    const int8_t *aq = a[j][i].qs + 64 * m;
                    __m256i p0 = dpb(_mm256_setzero_si256(), _mm256_xor_si256(load32(aq), k80), v0);
                    __m256i p1 = dpb(_mm256_setzero_si256(), _mm256_xor_si256(load32(aq + 32), k80), v1);
                    isum[j] = _mm256_dpwssd_epi32(isum[j], pack_words(p0, p1), sp);
                }
            }
            _Alignas(32) float dd[8];   /* [row] d_a * d_w */
            _mm256_store_ps(dd, _mm256_mul_ps(_mm256_load_ps(ad[i]), _mm256_set1_ps(h2f(b[i].d))));
            _Pragma("GCC unroll 8")
            for (int j = 0; j < 8; j++)
                acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dd[j]), _mm256_cvtepi32_ps(isum[j]), acc[j]);
        }
        _Pragma("GCC unroll 8")
        for (int j = 0; j < 8; j++)
            s[j * s_stride + r] = hsum8(acc[j]);
    }
}

/* The paired kernels split: the activation rows arranged once per product, then every tile against them. */
static size_t gemm8_prep_bytes_q4_K(int64_t n)
{
    const int64_t nb = n / LB_QK_K;
    return nb <= PAIR_MAX_BLOCKS ? pair_prep_bytes(nb, true) : 0;
}

static size_t gemm8_prep_bytes_q6_K(int64_t n)
{
    const int64_t nb = n / LB_QK_K;
    return nb <= PAIR_MAX_BLOCKS ? pair_prep_bytes(nb, false) : 0;
}

static void gemm8_prep_q4_K(int64_t n, const void *act, size_t act_stride, void *buf)
{
    const pair_prep pp = pair_prep_at(buf, n / LB_QK_K, true);
    q4_K_pairs_prep(n / LB_QK_K, act, act_stride, &pp);
}

static void gemm8_prep_q6_K(int64_t n, const void *act, size_t act_stride, void *buf)
{
    const pair_prep pp = pair_prep_at(buf, n / LB_QK_K, false);
    q6_K_pairs_prep(n / LB_QK_K, act, act_stride, &pp);
}

static void gemm8p_q4_K(int64_t n, int64_t nw, float *s, int64_t s_stride, const void *w, size_t w_stride,
                        const void *buf, int j0)
{
    const pair_prep pp = pair_prep_at((void *)(uintptr_t)buf, n / LB_QK_K, true);
    q4_K_pairs_core(n / LB_QK_K, nw, s, s_stride, w, w_stride, &pp, j0);
}

static void gemm8p_q6_K(int64_t n, int64_t nw, float *s, int64_t s_stride, const void *w, size_t w_stride,
                        const void *buf, int j0)
{
    const pair_prep pp = pair_prep_at((void *)(uintptr_t)buf, n / LB_QK_K, false);
    q6_K_pairs_core(n / LB_QK_K, nw, s, s_stride, w, w_stride, &pp, j0);
}

void lb__kernels_register_avx512_gemm(lb_kernel_set *k)
{
    k->gemm8[LB_TYPE_Q4_0] = gemm8_q4_0;
    k->gemm8[LB_TYPE_Q4_K] = gemm8_q4_K;
    k->gemm8[LB_TYPE_Q6_K] = gemm8_q6_K;
    k->gemm8_prep_bytes[LB_TYPE_Q4_K] = gemm8_prep_bytes_q4_K;
    k->gemm8_prep_bytes[LB_TYPE_Q6_K] = gemm8_prep_bytes_q6_K;
    k->gemm8_prep[LB_TYPE_Q4_K] = gemm8_prep_q4_K;
    k->gemm8_prep[LB_TYPE_Q6_K] = gemm8_prep_q6_K;
    k->gemm8p[LB_TYPE_Q4_K] = gemm8p_q4_K;
    k->gemm8p[LB_TYPE_Q6_K] = gemm8p_q6_K;
}
