/* AVX-512 VNNI dot products of Q4_0 and Q8_0 against A8_32 (one row, four
 * activation rows for prefill, and for Q4_0 four weight rows against one
 * activation row for decode): VPDPBUSD does maddubs + madd(1) in one
 * instruction.  Every int32 lane and every float operation is the AVX2
 * kernels' (kernels/x86/avx2_q32.c), so both sets give the same bits. */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"

static inline float f16(lb_f16 h) { return _cvtsh_ss(h); }

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i load32(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* 32 nibbles in element order: bytes 0..15 the low nibbles, 16..31 the high
 * (the 16 bytes in both lanes, the high lane's words shifted by 4). */
static inline __m256i unpack_q4(const uint8_t *qs)
{
    __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    both = _mm256_srlv_epi16(both, _mm256_setr_epi64x(0, 0, 0x0004000400040004ll, 0x0004000400040004ll));
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* Q4_0 stores q = w + 8: the unsigned q times a, accumulated onto -8 * sum(a)
 * in lane 0 (where the AVX2 kernel takes it off: the same lanes).  The
 * zero-masked broadcast puts it there in one instruction. */
static inline __m256i prod_q4_0(const lb_block_q4_0 *b, const lb_block_a8_32 *y)
{
    __m256i init = _mm256_maskz_set1_epi32(1, -8 * y->sum);
    return _mm256_dpbusd_epi32(init, unpack_q4(b->qs), load32(y->qs));
}

/* Signed times signed: |w| is the unsigned operand and w's sign moves onto a
 * (|a| <= 127, so negating cannot wrap). */
static inline __m256i prod_q8_0(const lb_block_q8_0 *b, const lb_block_a8_32 *y)
{
    __m256i x = load32(b->qs);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(x), _mm256_sign_epi8(load32(y->qs), x));
}

/* The 4 block factors f16(x[k].d) * y[k].d in one vector: the f16 scales
 * gathered in a general register and converted together, the products
 * rounded lane by lane as the scalar ones. */
static inline __m128 block_dd4_q4_0(const lb_block_q4_0 *x, const lb_block_a8_32 *y)
{
    uint64_t h = (uint64_t)x[0].d | (uint64_t)x[1].d << 16 | (uint64_t)x[2].d << 32 | (uint64_t)x[3].d << 48;
    return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi64_si128((long long)h)), _mm_setr_ps(y[0].d, y[1].d, y[2].d, y[3].d));
}

/* Lane k of v in all 8 lanes. */
static inline __m256 lane(__m128 v, int k)
{
    return _mm256_permutexvar_ps(_mm256_set1_epi32(k), _mm256_castps128_ps256(v));
}

/* Q4_0 against A8_32: the AVX2 loop float for float (blocks alternate between
 * two accumulators, an odd last block goes to the first), four blocks per
 * iteration so that their scales are converted and multiplied together. */
static void dot_q4_0(int64_t n, float *s, const void *w, const void *a)
{
    const lb_block_q4_0 *x = w;         /* [n / 32] */
    const lb_block_a8_32 *y = a;        /* [n / 32] */
    const int64_t nb = n / LB_QK;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 3 < nb; i += 4) {
        __m128 dd = block_dd4_q4_0(&x[i], &y[i]);
        __m256i p0 = prod_q4_0(&x[i], &y[i]), p1 = prod_q4_0(&x[i + 1], &y[i + 1]);
        __m256i p2 = prod_q4_0(&x[i + 2], &y[i + 2]), p3 = prod_q4_0(&x[i + 3], &y[i + 3]);
        acc0 = _mm256_fmadd_ps(lane(dd, 0), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(lane(dd, 1), _mm256_cvtepi32_ps(p1), acc1);
        acc0 = _mm256_fmadd_ps(lane(dd, 2), _mm256_cvtepi32_ps(p2), acc0);
        acc1 = _mm256_fmadd_ps(lane(dd, 3), _mm256_cvtepi32_ps(p3), acc1);
    }
    for (; i + 1 < nb; i += 2) {
        __m256i p0 = prod_q4_0(&x[i], &y[i]);
        __m256i p1 = prod_q4_0(&x[i + 1], &y[i + 1]);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16(x[i].d) * y[i].d), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(f16(x[i + 1].d) * y[i + 1].d), _mm256_cvtepi32_ps(p1), acc1);
    }
    if (i < nb)
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16(x[i].d) * y[i].d), _mm256_cvtepi32_ps(prod_q4_0(&x[i], &y[i])), acc0);
    *s = hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* ---- four weight rows against one activation row (decode): the
 * activation's loads, its -8 * sum term and the block factors' conversion are
 * shared by the rows, and each row's float operations are dot_q4_0's in its
 * order, so s[r] has vec_dot's bits. */

/* Lane r: f16(x[r][0].d) * y[0].d; lane 4 + r: f16(x[r][1].d) * y[1].d. */
static inline __m256 block_dd8_q4_0(const lb_block_q4_0 *const x[4], const lb_block_a8_32 *y)
{
    uint64_t h0 = (uint64_t)x[0][0].d | (uint64_t)x[1][0].d << 16 | (uint64_t)x[2][0].d << 32 | (uint64_t)x[3][0].d << 48;
    uint64_t h1 = (uint64_t)x[0][1].d | (uint64_t)x[1][1].d << 16 | (uint64_t)x[2][1].d << 32 | (uint64_t)x[3][1].d << 48;
    __m256 wd = _mm256_cvtph_ps(_mm_set_epi64x((long long)h1, (long long)h0));
    return _mm256_mul_ps(wd, _mm256_setr_m128(_mm_set1_ps(y[0].d), _mm_set1_ps(y[1].d)));
}

/* Cache lines of the next four rows prefetched per two blocks: those are
 * 4 * 2 * 18 = 144 bytes of them. */
#define PREFETCH_LINES 3
/* Longer rows go one at a time: streaming from memory, four rows in step
 * measured 25% faster than one at 1152-byte rows (2048 columns), 12% at
 * 1728, even at 2304 and 30% slower at 3168 (5632 columns), however the
 * prefetches were placed (next rows to L1 or L2, each row ahead). */
#define ROWS4_MAX_STRIDE 2048

static void dot_q4_0(int64_t n, float *s, const void *w, const void *a);

static void dot_rows4_q4_0(int64_t n, float *s, const void *w, size_t w_stride, const void *a)
{
    if (w_stride > ROWS4_MAX_STRIDE) {
        for (int r = 0; r < 4; r++)
            dot_q4_0(n, &s[r], (const char *)w + (size_t)r * w_stride, a);
        return;
    }
    const lb_block_a8_32 *y = a;        /* [n / 32] */
    const int64_t nb = n / LB_QK;
    const lb_block_q4_0 *x[4];          /* [4] rows, each [n / 32] */
    for (int r = 0; r < 4; r++)
        x[r] = (const lb_block_q4_0 *)((const char *)w + (size_t)r * w_stride);
    __m256 acc0[4], acc1[4];
    for (int r = 0; r < 4; r++)
        acc0[r] = acc1[r] = _mm256_setzero_ps();
    /* Four rows read in step are four interleaved streams, which the hardware
     * prefetcher follows badly (2.5x slower than one row at a time): the next
     * four rows, contiguous after these, are fetched meanwhile as one
     * sequential stream.  Their address is integer arithmetic, not a pointer:
     * they may lie past the tensor (a prefetch never faults). */
    const uintptr_t next = (uintptr_t)w + 4 * w_stride;
    const size_t step = (4 * w_stride + (size_t)nb - 1) / (size_t)nb;   /* their bytes per block of these */
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        const lb_block_q4_0 *xi[4] = {x[0] + i, x[1] + i, x[2] + i, x[3] + i};
        for (int k = 0; k < PREFETCH_LINES; k++)
            _mm_prefetch((const char *)(next + (size_t)i * step + 64 * (size_t)k), _MM_HINT_T0);
        __m256 dd = block_dd8_q4_0(xi, &y[i]);
        __m256i a0 = load32(y[i].qs), a1 = load32(y[i + 1].qs);
        __m256i i0 = _mm256_maskz_set1_epi32(1, -8 * y[i].sum), i1 = _mm256_maskz_set1_epi32(1, -8 * y[i + 1].sum);
        _Pragma("GCC unroll 4")
        for (int r = 0; r < 4; r++) {
            __m256i p0 = _mm256_dpbusd_epi32(i0, unpack_q4(xi[r][0].qs), a0);
            __m256i p1 = _mm256_dpbusd_epi32(i1, unpack_q4(xi[r][1].qs), a1);
            acc0[r] = _mm256_fmadd_ps(_mm256_permutexvar_ps(_mm256_set1_epi32(r), dd), _mm256_cvtepi32_ps(p0), acc0[r]);
            acc1[r] = _mm256_fmadd_ps(_mm256_permutexvar_ps(_mm256_set1_epi32(4 + r), dd), _mm256_cvtepi32_ps(p1),
                                      acc1[r]);
        }
    }
    for (int r = 0; r < 4; r++) {
        if (i < nb)
            acc0[r] = _mm256_fmadd_ps(_mm256_set1_ps(f16(x[r][i].d) * y[i].d), _mm256_cvtepi32_ps(prod_q4_0(&x[r][i], &y[i])),
                                      acc0[r]);
        s[r] = hsum_ps(_mm256_add_ps(acc0[r], acc1[r]));
    }
}

/* Two blocks per iteration into separate accumulators, then an odd last
 * block: the AVX2 loop, float for float. */
#define DOT_SYMMETRIC(NAME, BLOCK, PROD)                                                  \
    static void NAME(int64_t n, float *s, const void *w, const void *a)                   \
    {                                                                                     \
        const BLOCK *x = w;             /* [n / 32] */                                    \
        const lb_block_a8_32 *y = a;    /* [n / 32] */                                    \
        const int64_t nb = n / LB_QK;                                                     \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                    \
        int64_t i = 0;                                                                    \
        for (; i + 1 < nb; i += 2) {                                                      \
            __m256i p0 = PROD(&x[i], &y[i]);                                              \
            __m256i p1 = PROD(&x[i + 1], &y[i + 1]);                                      \
            __m256 d0 = _mm256_set1_ps(f16(x[i].d) * y[i].d);                             \
            __m256 d1 = _mm256_set1_ps(f16(x[i + 1].d) * y[i + 1].d);                     \
            acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0);                     \
            acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), acc1);                     \
        }                                                                                 \
        if (i < nb) {                                                                     \
            __m256i p0 = PROD(&x[i], &y[i]);                                              \
            __m256 d0 = _mm256_set1_ps(f16(x[i].d) * y[i].d);                             \
            acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0);                     \
        }                                                                                 \
        *s = hsum_ps(_mm256_add_ps(acc0, acc1));                                          \
    }

DOT_SYMMETRIC(dot_q8_0, lb_block_q8_0, prod_q8_0)

/* ---- four activation rows per weight row (prefill, batched decoding): a
 * weight block is unpacked once for all four, and row j's float operations
 * are DOT_SYMMETRIC's in its order, so s[j * s_stride] has vec_dot's bits. */

/* Q4_0's unsigned quants of block b. */
static inline __m256i wq_q4_0(const lb_block_q4_0 *b) { return unpack_q4(b->qs); }
static inline __m256i prod4_q4_0(__m256i u, const lb_block_a8_32 *y)
{
    __m256i init = _mm256_zextsi128_si256(_mm_cvtsi32_si128(-8 * y->sum));
    return _mm256_dpbusd_epi32(init, u, load32(y->qs));
}

/* Q8_0's signed quants; prod4 needs |w| and w itself (for the sign). */
static inline __m256i wq_q8_0(const lb_block_q8_0 *b) { return load32(b->qs); }
static inline __m256i prod4_q8_0(__m256i x, const lb_block_a8_32 *y)
{
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(x), _mm256_sign_epi8(load32(y->qs), x));
}

#define DOT4_SYMMETRIC(NAME, BLOCK, WQ, PROD)                                             \
    static void NAME(int64_t n, float *s, int64_t s_stride, const void *w, const void *act, \
                     size_t act_stride)                                                   \
    {                                                                                     \
        const BLOCK *x = w;               /* [n / 32] */                                  \
        const lb_block_a8_32 *y[4];       /* [4] rows, each [n / 32] */                   \
        for (int j = 0; j < 4; j++)                                                       \
            y[j] = (const lb_block_a8_32 *)((const char *)act + (size_t)j * act_stride);  \
        const int64_t nb = n / LB_QK;                                                     \
        __m256 acc0[4], acc1[4];                                                          \
        for (int j = 0; j < 4; j++)                                                       \
            acc0[j] = acc1[j] = _mm256_setzero_ps();                                      \
        int64_t i = 0;                                                                    \
        for (; i + 1 < nb; i += 2) {                                                      \
            __m256i u0 = WQ(&x[i]), u1 = WQ(&x[i + 1]);                                   \
            float dw0 = f16(x[i].d), dw1 = f16(x[i + 1].d);                               \
            _Pragma("GCC unroll 4")                                                       \
            for (int j = 0; j < 4; j++) {                                                 \
                __m256i p0 = PROD(u0, &y[j][i]);                                          \
                __m256i p1 = PROD(u1, &y[j][i + 1]);                                      \
                acc0[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw0 * y[j][i].d), _mm256_cvtepi32_ps(p0), acc0[j]); \
                acc1[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw1 * y[j][i + 1].d), _mm256_cvtepi32_ps(p1), acc1[j]); \
            }                                                                             \
        }                                                                                 \
        if (i < nb) {                                                                     \
            __m256i u0 = WQ(&x[i]);                                                       \
            float dw0 = f16(x[i].d);                                                      \
            for (int j = 0; j < 4; j++)                                                   \
                acc0[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw0 * y[j][i].d),                \
                                          _mm256_cvtepi32_ps(PROD(u0, &y[j][i])), acc0[j]); \
        }                                                                                 \
        for (int j = 0; j < 4; j++)                                                       \
            s[j * s_stride] = hsum_ps(_mm256_add_ps(acc0[j], acc1[j]));                   \
    }

DOT4_SYMMETRIC(dot4_q4_0, lb_block_q4_0, wq_q4_0, prod4_q4_0)
DOT4_SYMMETRIC(dot4_q8_0, lb_block_q8_0, wq_q8_0, prod4_q8_0)

void lb__kernels_register_avx512_q32(lb_kernel_set *k)
{
    k->vec_dot[LB_TYPE_Q4_0] = dot_q4_0;
    k->vec_dot[LB_TYPE_Q8_0] = dot_q8_0;
    k->vec_dot4[LB_TYPE_Q4_0] = dot4_q4_0;
    k->vec_dot4[LB_TYPE_Q8_0] = dot4_q8_0;
    k->vec_dot_w4[LB_TYPE_Q4_0] = dot_rows4_q4_0;
}
