/* AVX2 register tiles for batched decoding and prefill: one Q4_K or Q6_K
 * weight row against eight A8_K activation rows (vec_dot8 in kernels.h),
 * and Q4_0 as a tile of weight rows x 8 activation rows (gemm8, the tile in
 * gemm_q4_0.h), each result bit-identical to the set's single-row dot. */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"
#include "kernels/x86/k_common.h"

/* Bit-exactness needs every a*b+c outside the explicit FMAs rounded twice:
 * gcc in ISO C mode does not contract, clang must be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Why eight rows: a weight block is unpacked once for all of a decode step's
 * rows, and the eight integer accumulators plus the unpacked quants and
 * their scales about fill the sixteen ymm registers.  The float accumulators
 * live in memory; they change once per 256 weights. */
#define ROWS 8

/* The final sums of eight rows at once: s[j] = hsum8(acc[j]) (+ hsum4 of
 * row j's half of accm2[j / 2] when accm2 is given), with the additions of
 * avx2_k.c's hsum8 and hsum4 in their order, so each is the single-row
 * dot's float.
 * A per-row reduction would cost more than the two blocks of a 512-column
 * row it follows. */
static inline void reduce8(const __m256 *acc, const __m256 *accm2, float *s, int64_t s_stride)
{
    __m256 r = hsum8x8(acc);   /* lanes: [r0, r2, r4, r6 | r1, r3, r5, r7] */
    /* (x0 + x2, x1 + x3) of every row's half of accm2, then their sum: hsum4's steps */
    if (accm2) {
        __m256 m01 = _mm256_add_ps(_mm256_shuffle_ps(accm2[0], accm2[1], 0x44), _mm256_shuffle_ps(accm2[0], accm2[1], 0xee));
        __m256 m23 = _mm256_add_ps(_mm256_shuffle_ps(accm2[2], accm2[3], 0x44), _mm256_shuffle_ps(accm2[2], accm2[3], 0xee));
        r = _mm256_add_ps(r, _mm256_add_ps(_mm256_shuffle_ps(m01, m23, 0x88), _mm256_shuffle_ps(m01, m23, 0xdd)));
    }
    float out[8];   /* [r0, r2, r4, r6, r1, r3, r5, r7] */
    _mm256_storeu_ps(out, r);
    for (int p = 0; p < 4; p++) {
        s[(2 * p) * s_stride] = out[p];
        s[(2 * p + 1) * s_stride] = out[4 + p];
    }
}

/* Every lane of every accumulator holds the same integer as in dot_q4_K
 * (integer sums are exact in any order), and the float steps per block and
 * the final reduction are dot_q4_K's. */
static void dot8_q4_K(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    const lb_block_q4_K *b = w;
    const char *a0 = act;   /* [ROWS] activation rows act_stride bytes apart, each [n / 256] A8_K blocks */
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc[ROWS];      /* per row: dot_q4_K's 8-lane scale sums */
    __m256 accm2[ROWS / 2];   /* rows 2p and 2p+1: dot_q4_K's 4-lane min sums side by side */
    _Pragma("GCC unroll 8")
    for (int j = 0; j < ROWS; j++)
        acc[j] = _mm256_setzero_ps();
    _Pragma("GCC unroll 4")
    for (int p = 0; p < ROWS / 2; p++)
        accm2[p] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        __m128i sm = q4_K_scales_mins(b[i].scales);
        uint8_t scb[16];   /* [8 scales, 8 mins] */
        _mm_storeu_si128((__m128i *)scb, sm);
        const __m256i mn16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128(sm, 8)));   /* 8 mins as words, twice */
        const size_t blk = (size_t)i * sizeof(lb_block_a8_K);
        __m256i isum[ROWS];
        _Pragma("GCC unroll 8")
        for (int j = 0; j < ROWS; j++)
            isum[j] = _mm256_setzero_si256();
        /* Not unrolled: unrolled, gcc computes all 64 products first and spills them. */
        _Pragma("GCC unroll 1")
        for (int c = 0; c < 4; c++) {
            __m256i q = load32(b[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i s0 = _mm256_set1_epi16(scb[2 * c]);
            __m256i s1 = _mm256_set1_epi16(scb[2 * c + 1]);
            _Pragma("GCC unroll 8")
            for (int j = 0; j < ROWS; j++) {
                const lb_block_a8_K *aj = (const lb_block_a8_K *)(a0 + (size_t)j * act_stride + blk);
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32(aj->qs + 64 * c)), s0);
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load32(aj->qs + 64 * c + 32)), s1);
                isum[j] = _mm256_add_epi32(isum[j], _mm256_add_epi32(p0, p1));
            }
        }
        const float wd = _cvtsh_ss(b[i].d), wdmin = _cvtsh_ss(b[i].dmin);
        _Pragma("GCC unroll 4")
        for (int p = 0; p < ROWS / 2; p++) {
            const lb_block_a8_K *ja = (const lb_block_a8_K *)(a0 + (size_t)(2 * p) * act_stride + blk);
            const lb_block_a8_K *jb = (const lb_block_a8_K *)(a0 + (size_t)(2 * p + 1) * act_stride + blk);
            acc[2 * p] = _mm256_fmadd_ps(_mm256_set1_ps(ja->d * wd), _mm256_cvtepi32_ps(isum[2 * p]), acc[2 * p]);
            acc[2 * p + 1] = _mm256_fmadd_ps(_mm256_set1_ps(jb->d * wd), _mm256_cvtepi32_ps(isum[2 * p + 1]),
                                             acc[2 * p + 1]);
            /* the 8 sub-block sums of each row from its 16 bsums, rows side by side, then min-weighted in pairs */
            __m256i bsa = load32(ja->bsums), bsb = load32(jb->bsums);
            __m256i sub = _mm256_hadd_epi16(_mm256_permute2x128_si256(bsa, bsb, 0x20),
                                            _mm256_permute2x128_si256(bsa, bsb, 0x31));
            __m256 dmin = _mm256_set_m128(_mm_set1_ps(-jb->d * wdmin), _mm_set1_ps(-ja->d * wdmin));
            accm2[p] = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(_mm256_madd_epi16(mn16, sub)), accm2[p]);
        }
    }
    reduce8(acc, accm2, s, s_stride);
}

/* Q6_K: the block's eight 32-element chunks of quants and their scale pairs
 * are built first (in memory: the chunk loop stays rolled, or gcc schedules
 * all 128 products at once and spills); lanes and float steps are dot_q6_K's. */
static void dot8_q6_K(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, size_t act_stride)
{
    const lb_block_q6_K *b = w;
    const char *a0 = act;   /* [ROWS] activation rows act_stride bytes apart, each [n / 256] A8_K blocks */
    const __m256i k32 = _mm256_set1_epi8(32);
    __m256 acc[ROWS];   /* per row: dot_q6_K's 8-lane sums */
    _Pragma("GCC unroll 8")
    for (int j = 0; j < ROWS; j++)
        acc[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)b[i].scales);
        __m256i vq[8];    /* [4h + k] the unsigned 6-bit quants of chunk k of half h */
        __m256i scl[8];   /* [4h + k] its scales: sub-block 8h+2k for bytes 0-15, 8h+2k+1 for 16-31 */
        _Pragma("GCC unroll 2")
        for (int h = 0; h < 2; h++) {
            q6_K_unpack(&b[i], h, &vq[4 * h]);
            _Pragma("GCC unroll 4")
            for (int k = 0; k < 4; k++) {
                int sb = 8 * h + 2 * k;
                __m128i sel = _mm_set_epi64x((long long)(0x0101010101010101ull * (unsigned)(sb + 1)),
                                             (long long)(0x0101010101010101ull * (unsigned)sb));
                scl[4 * h + k] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, sel));
            }
        }
        const size_t blk = (size_t)i * sizeof(lb_block_a8_K);
        __m256i isum[ROWS];
        _Pragma("GCC unroll 8")
        for (int j = 0; j < ROWS; j++)
            isum[j] = _mm256_setzero_si256();
        _Pragma("GCC unroll 1")
        for (int c = 0; c < 8; c++) {
            const __m256i v = _mm256_sub_epi8(vq[c], k32), sc = scl[c];   /* q - 32, signed */
            /* chunk c = 4h + k sits at activation offset 128h + 32k = 32c */
            _Pragma("GCC unroll 8")
            for (int j = 0; j < ROWS; j++) {
                const lb_block_a8_K *aj = (const lb_block_a8_K *)(a0 + (size_t)j * act_stride + blk);
                __m256i a8 = load32(aj->qs + 32 * c);
                /* (q - 32) * a per byte pair as |a| * ((q - 32) * sign(a)): one multiply where dot_q6_K
                 * takes two, the same int16 (|pair| <= 2 * 127 * 32, exact) */
                __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(a8), _mm256_sign_epi8(v, a8));
                isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(p, sc));
            }
        }
        const float wd = _cvtsh_ss(b[i].d);
        _Pragma("GCC unroll 8")
        for (int j = 0; j < ROWS; j++) {
            const lb_block_a8_K *aj = (const lb_block_a8_K *)(a0 + (size_t)j * act_stride + blk);
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(aj->d * wd), _mm256_cvtepi32_ps(isum[j]), acc[j]);
        }
    }
    reduce8(acc, NULL, s, s_stride);
}

/* maddubs + madd(1) sum bytes 4k..4k+3 into lane k, as avx2_q32.c's Q4_0
 * dot does; 16 registers hold a 2 x 2 tile. */
#define GEMM_Q4_0_NW 2
#define GEMM_Q4_0_NA 2
#define GEMM_Q4_0_PROD(init, u, a) \
    _mm256_add_epi32((init), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (a)), _mm256_set1_epi16(1)))
#define GEMM_Q4_0_DOT lb_kernels_avx2()->vec_dot[LB_TYPE_Q4_0]
#include "kernels/x86/gemm_q4_0.h"

void lb__kernels_register_avx2_gemm(lb_kernel_set *k)
{
    k->gemm8[LB_TYPE_Q4_0] = gemm8_q4_0;
    k->vec_dot8[LB_TYPE_Q4_K] = dot8_q4_K;
    k->vec_dot8[LB_TYPE_Q6_K] = dot8_q6_K;
}
