/* The Q4_0 register tile shared by the x86 gemm8 kernels (avx2_gemm.c,
 * avx512_gemm.c).  The including file defines, before including it:
 *   GEMM_Q4_0_NW    weight rows per tile (2 or 4)
 *   GEMM_Q4_0_NA    activation rows per pass (1, 2 or 4)
 *   GEMM_Q4_0_PROD(init, u, a)  init + the 8 int32 lanes of u (unsigned
 *                   bytes) times a (signed), lane k summing bytes 4k..4k+3
 *   GEMM_Q4_0_DOT   the set's single-row Q4_0 dot, for a tile's last rows
 * and gets a static gemm8_q4_0 (lb_gemm8_fn). */
#ifndef LB_KERNELS_X86_GEMM_Q4_0_H
#define LB_KERNELS_X86_GEMM_Q4_0_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "quant/blocks.h"

/* Bit-exactness needs every a*b+c outside the explicit FMAs rounded twice:
 * gcc in ISO C mode does not contract, clang must be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* The tile must be inlined for its constant sizes to unroll into registers. */
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")

/* ---- Q4_0.  The AVX2 dot (avx2_q32.c) sums each block into 8 int32 lanes
 * (lane k: bytes 4k..4k+3, lane 0 also -8 * the block's activation sum),
 * alternates even and odd blocks between two float accumulators, and ends
 * with hsum(acc0 + acc1).  Here every (weight row, activation row) pair
 * keeps those two accumulators, and its lanes see the same operations in
 * the same order.
 *
 * Why this shape: per pair and block the work is one VPDPBUSD, one
 * conversion and one FMA whose scale comes from memory as a broadcast; the
 * scale products wd * da of all pairs are made eight to a multiplication
 * instead of one each (the 4-row kernel's scalar product per pair and block
 * competed with VPDPBUSD and FMA for the same pipes): 1.25x its speed. */

/* 32 unsigned quants in element order: the 16 low nibbles, then the high. */
static inline __m256i q4_0_quants(const lb_block_q4_0 *b)
{
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    /* a broadcast load and a variable shift: 10% faster than the insert */
    __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b->qs));
    both = _mm256_srlv_epi16(both, _mm256_setr_epi64x(0, 0, 0x0004000400040004ll, 0x0004000400040004ll));
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
#else
    __m128i q = _mm_loadu_si128((const __m128i *)b->qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0f));
#endif
}

/* The int32 start of a block's lanes: -8 * its activation sum in lane 0. */
static inline __m256i q4_0_init(const lb_block_a8_32 *y)
{
    return _mm256_zextsi128_si256(_mm_cvtsi32_si128(-8 * y->sum));
}

/* The weight scales of blocks i and i + 1 of rows 0..NW-1 at [4h + r]
 * (lanes past NW unused).  Built in registers: eight 2-byte stores read
 * back as one vector would wait for store forwarding to fail (2.5x slower). */
static inline __m256 q4_0_wd(const lb_block_q4_0 *const *x, int64_t i)
{
#if GEMM_Q4_0_NW == 4
    return _mm256_cvtph_ps(_mm_setr_epi16((short)x[0][i].d, (short)x[1][i].d, (short)x[2][i].d, (short)x[3][i].d,
                                          (short)x[0][i + 1].d, (short)x[1][i + 1].d, (short)x[2][i + 1].d,
                                          (short)x[3][i + 1].d));
#elif GEMM_Q4_0_NW == 2
    return _mm256_cvtph_ps(_mm_setr_epi16((short)x[0][i].d, (short)x[1][i].d, 0, 0, (short)x[0][i + 1].d,
                                          (short)x[1][i + 1].d, 0, 0));
#else
#error "GEMM_Q4_0_NW must be 2 or 4"
#endif
}

/* hsum_ps(acc0 + acc1) of the AVX2 kernel. */
static inline float q4_0_final(__m256 acc0, __m256 acc1)
{
    __m256 v = _mm256_add_ps(acc0, acc1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* NW weight rows x NA activation rows; 2 * NW * NA accumulators in registers.
 * next: the following NW weight rows, fetched into cache on the way, or NULL.
 * Why: the later passes over these rows read them from cache, so the
 * hardware prefetcher sees no new lines and stops running ahead; without
 * this, 8-row decode from memory ran at 0.85x the 4-row kernel. */
ALWAYS_INLINE void q4_0_tile(int NA, int64_t n, float *s, int64_t s_stride, const char *w, size_t w_stride,
                             const char *act, size_t act_stride, const char *next)
{
    enum { NW = GEMM_Q4_0_NW };
    _Static_assert(GEMM_Q4_0_NA >= 1 && GEMM_Q4_0_NA <= 4 && 8 % GEMM_Q4_0_NA == 0, "GEMM_Q4_0_NA: 1, 2 or 4");
    const int64_t nb = n / LB_QK;
    const lb_block_q4_0 *x[NW];        /* [NW] weight rows, each [nb] blocks */
    const lb_block_a8_32 *y[4];        /* [NA] activation rows, each [nb] blocks */
    UNROLL
    for (int r = 0; r < NW; r++)
        x[r] = (const lb_block_q4_0 *)(w + (size_t)r * w_stride);
    UNROLL
    for (int j = 0; j < NA; j++)
        y[j] = (const lb_block_a8_32 *)(act + (size_t)j * act_stride);
    __m256 acc[NW][4][2];   /* [r][j][block parity] */
    UNROLL
    for (int r = 0; r < NW; r++)
        UNROLL
        for (int j = 0; j < NA; j++)
            acc[r][j][0] = acc[r][j][1] = _mm256_setzero_ps();
    /* The scale products of a run of block pairs, made before the run: a
     * broadcast load from a just-stored vector waits for the store, which
     * cost a third of the kernel's speed. */
    enum { RUN = 32 };
    _Alignas(32) float dd[RUN][NA][8];   /* [pair][j]: wd(row r, block i + h) * da(row j, block i + h) at [4h + r] */
    const int64_t nb2 = nb & ~(int64_t)1;
    int64_t i = 0;
    for (int64_t i0 = 0; i0 < nb2; i0 += 2 * RUN) {
        const int64_t i1 = i0 + 2 * RUN < nb2 ? i0 + 2 * RUN : nb2;
        for (i = i0; i < i1; i += 2) {
            const __m256 wd = q4_0_wd(x, i);
            UNROLL
            for (int j = 0; j < NA; j++) {
                const lb_block_a8_32 *yj = &y[j][i];
                _mm256_store_ps(dd[(i - i0) / 2][j],
                                _mm256_mul_ps(wd, _mm256_set_m128(_mm_set1_ps(yj[1].d), _mm_set1_ps(yj[0].d))));
            }
        }
        for (i = i0; i < i1; i += 2) {
            __m256i wq[NW][2];
            if (next)
                UNROLL
                for (int r = 0; r < NW; r++)
                    _mm_prefetch(next + (size_t)r * w_stride + (size_t)i * sizeof(lb_block_q4_0), _MM_HINT_T0);
            UNROLL
            for (int r = 0; r < NW; r++) {
                wq[r][0] = q4_0_quants(&x[r][i]);
                wq[r][1] = q4_0_quants(&x[r][i + 1]);
            }
            UNROLL
            for (int j = 0; j < NA; j++) {
                const lb_block_a8_32 *yj = &y[j][i];
                const float *ddj = dd[(i - i0) / 2][j];
                const __m256i a0 = _mm256_loadu_si256((const __m256i *)yj[0].qs);
                const __m256i a1 = _mm256_loadu_si256((const __m256i *)yj[1].qs);
                const __m256i i0v = q4_0_init(&yj[0]), i1v = q4_0_init(&yj[1]);
                UNROLL
                for (int r = 0; r < NW; r++) {
                    __m256i p0 = GEMM_Q4_0_PROD(i0v, wq[r][0], a0);
                    __m256i p1 = GEMM_Q4_0_PROD(i1v, wq[r][1], a1);
                    acc[r][j][0] = _mm256_fmadd_ps(_mm256_broadcast_ss(&ddj[r]), _mm256_cvtepi32_ps(p0), acc[r][j][0]);
                    acc[r][j][1] = _mm256_fmadd_ps(_mm256_broadcast_ss(&ddj[4 + r]), _mm256_cvtepi32_ps(p1),
                                                   acc[r][j][1]);
                }
            }
        }
    }
    if (i < nb) {
        UNROLL
        for (int r = 0; r < NW; r++) {
            const __m256i wq = q4_0_quants(&x[r][i]);
            const float wd = _cvtsh_ss(x[r][i].d);
            UNROLL
            for (int j = 0; j < NA; j++) {
                __m256i p = GEMM_Q4_0_PROD(q4_0_init(&y[j][i]), wq, _mm256_loadu_si256((const __m256i *)y[j][i].qs));
                acc[r][j][0] = _mm256_fmadd_ps(_mm256_set1_ps(wd * y[j][i].d), _mm256_cvtepi32_ps(p), acc[r][j][0]);
            }
        }
    }
    UNROLL
    for (int r = 0; r < NW; r++)
        UNROLL
        for (int j = 0; j < NA; j++)
            s[j * s_stride + r] = q4_0_final(acc[r][j][0], acc[r][j][1]);
}

/* GEMM_Q4_0_NW weight rows at a time, GEMM_Q4_0_NA activation rows per
 * pass; a tile's last rows (fewer than GEMM_Q4_0_NW) go through vec_dot
 * (GEMM_Q4_0_DOT, the set's own). */
static void gemm8_q4_0(int64_t n, int64_t nw, float *s, int64_t s_stride, const void *w, size_t w_stride,
                       const void *act, size_t act_stride)
{
    const char *wc = w, *ac = act;
    int64_t r = 0;
    for (; r + GEMM_Q4_0_NW <= nw; r += GEMM_Q4_0_NW) {
        const char *next = r + 2 * GEMM_Q4_0_NW <= nw ? wc + (size_t)(r + GEMM_Q4_0_NW) * w_stride : NULL;
        for (int j = 0; j < 8; j += GEMM_Q4_0_NA)
            q4_0_tile(GEMM_Q4_0_NA, n, s + j * s_stride + r, s_stride, wc + (size_t)r * w_stride, w_stride,
                      ac + (size_t)j * act_stride, act_stride, j == 0 ? next : NULL);
    }
    const lb_vec_dot_fn dot = GEMM_Q4_0_DOT;
    for (; r < nw; r++)
        for (int j = 0; j < 8; j++)
            dot(n, &s[j * s_stride + r], wc + (size_t)r * w_stride, ac + (size_t)j * act_stride);
}

#endif
