/* AVX2 variants of the fixed-rounding float kernels (kernels/fmath.h).  A
 * 16-lane vector of the contract is held as two __m256 (lanes 0-7, 8-15);
 * each variant performs the reference's operations in the reference's order,
 * so the results are equal bit for bit. */
#include "kernels/fmath.h"

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/x86/k_common.h"

static inline __m256 ld16(const lb_f16 *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* The 16-lane reduction of the contract after its first step (t8: lanes
 * hi + lo of 0-7 and 8-15). */
static inline float reduce8(__m256 t8)
{
    __m128 t4 = _mm_add_ps(_mm256_extractf128_ps(t8, 1), _mm256_castps256_ps128(t8));
    __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));   /* (0+2), (1+3) */
    return _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)));
}

static inline float reduce16(__m256 lo, __m256 hi) { return reduce8(_mm256_add_ps(hi, lo)); }

static float dot16(int64_t n, const lb_f16 *a, const lb_f16 *b)
{
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        lo = _mm256_fmadd_ps(ld16(a + i), ld16(b + i), lo);
        hi = _mm256_fmadd_ps(ld16(a + i + 8), ld16(b + i + 8), hi);
    }
    if (i < n) {
        lb_f16 ta[16] = {0}, tb[16] = {0};   /* the tail, zero-padded */
        memcpy(ta, a + i, (size_t)(n - i) * sizeof *a);
        memcpy(tb, b + i, (size_t)(n - i) * sizeof *b);
        lo = _mm256_fmadd_ps(ld16(ta), ld16(tb), lo);
        hi = _mm256_fmadd_ps(ld16(ta + 8), ld16(tb + 8), hi);
    }
    return reduce16(lo, hi);
}

/* ld16 of the first r elements (r may be <= 0 or >= 8), the rest zero, with
 * nothing past them read: whole pairs by a masked load, an odd last one
 * inserted. */
static inline __m256 ld16_part(const lb_f16 *p, int64_t r)
{
    if (r >= 8)
        return ld16(p);
    if (r <= 0)
        return _mm256_setzero_ps();
    __m128i mask = _mm_cmpgt_epi32(_mm_set1_epi32((int)(r / 2)), _mm_setr_epi32(0, 1, 2, 3));
    __m128i h = _mm_maskload_epi32((const int *)(const void *)p, mask);
    if (r & 1) {
        switch (r) {   /* the lane must be an immediate */
        case 1: h = _mm_insert_epi16(h, p[0], 0); break;
        case 3: h = _mm_insert_epi16(h, p[2], 2); break;
        case 5: h = _mm_insert_epi16(h, p[4], 4); break;
        default: h = _mm_insert_epi16(h, p[6], 6); break;
        }
    }
    return _mm256_cvtph_ps(h);
}

/* ld16 of the words keep selects, the rest zero, from a whole 16-byte load:
 * for rows that may be read past their end (dot64_values' value rows).  A
 * masked load stalled here: half of the value pass's time at 8 decode
 * streams sat on the instruction after VPMASKMOVD (Zen 4). */
static inline __m256 ld16_keep(const lb_f16 *p, __m128i keep)
{
    return _mm256_cvtph_ps(_mm_and_si128(_mm_loadu_si128((const __m128i *)(const void *)p), keep));
}

/* d[0..nv64) = b[0..nv) widened, then zeros (the probabilities of a value
 * pass, read past nv only as zeros). */
static void widen_part(const lb_f16 *b, int64_t nv, int64_t nv64, float *d)
{
    int64_t i = 0;
    for (; i + 8 <= nv; i += 8)
        _mm256_store_ps(d + i, ld16(b + i));
    for (; i < nv64; i++)
        d[i] = i < nv ? lb_f16_to_f32(b[i]) : 0.0f;
}

/* Masks that load the first r elements of a partial 64-group's vector j
 * (r = nv - 8j) and zero the rest, without reading past them: pm[2j] the
 * pairs for a masked load, pm[2j + 1] the words to keep (an odd last one
 * comes in with its pair and is kept, the element after it cleared).  Made
 * once per dot64_rows call: ld16_part decided that per row and vector. */
static void part_masks(int64_t r0, __m128i pm[16])
{
    for (int j = 0; j < 8; j++) {
        const int r = (int)(r0 - 8 * j < 0 ? 0 : r0 - 8 * j > 8 ? 8 : r0 - 8 * j);
        pm[2 * j] = _mm_cmpgt_epi32(_mm_set1_epi32((r + 1) / 2), _mm_setr_epi32(0, 1, 2, 3));
        pm[2 * j + 1] = _mm_cmpgt_epi16(_mm_set1_epi16((short)r), _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7));
    }
}

/* dot64 up to n_vec (its 64-groups), up to the 16-lane reduction's first
 * step: lanes hi + lo, which reduce16 and hsum8x8 finish.  b is read from bs
 * (b widened, zero from nv to the end of its 64-group) when bs is given:
 * dot64_rows widens b once for many rows; then pm (part_masks of the
 * partial group, if any) loads a's partial group. */
static inline __attribute__((always_inline)) __m256 dot64_groups8(int64_t n, int64_t n_vec, const lb_f16 *a,
                                                                  const lb_f16 *b, const float *bs,
                                                                  const __m128i *pm)
{
    __m256 acc[8];   /* [4 vectors][lo, hi]; the loops over it unrolled, or gcc keeps it in memory */
    _Pragma("GCC unroll 8")
    for (int j = 0; j < 8; j++)
        acc[j] = _mm256_setzero_ps();
    int64_t nv = n_vec < n ? n_vec : n, i = 0;
    for (; i + 64 <= nv; i += 64) {
        _Pragma("GCC unroll 8")
        for (int j = 0; j < 8; j++)
            acc[j] = _mm256_fmadd_ps(ld16(a + i + 8 * j), bs ? _mm256_loadu_ps(bs + i + 8 * j) : ld16(b + i + 8 * j),
                                     acc[j]);
    }
    if (i < nv) {
        /* The partial group, zero-padded as the reference reads it: whole
         * vectors in place, the one straddling nv by a masked load.  Decode
         * attention over fewer than 64 positions comes here 256 times per
         * KV head and layer, where copying the group to a zeroed buffer cost
         * more than the products. */
        _Pragma("GCC unroll 8")
        for (int j = 0; j < 8; j++) {
            int64_t r = nv - (i + 8 * j);
            __m256 bj = bs ? _mm256_loadu_ps(bs + i + 8 * j) : ld16_part(b + i + 8 * j, r);
            __m256 aj = pm ? _mm256_cvtph_ps(_mm_and_si128(
                                 _mm_maskload_epi32((const int *)(const void *)(a + i + 8 * j), pm[2 * j]), pm[2 * j + 1]))
                           : ld16_part(a + i + 8 * j, r);
            acc[j] = _mm256_fmadd_ps(aj, bj, acc[j]);
        }
    }
    __m256 lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
    __m256 hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
    return _mm256_add_ps(hi, lo);
}

static inline __attribute__((always_inline)) float dot64_groups(int64_t n, int64_t n_vec, const lb_f16 *a,
                                                                const lb_f16 *b, const float *bs, const __m128i *pm)
{
    return reduce8(dot64_groups8(n, n_vec, a, b, bs, pm));
}

/* The tail past n_vec of rows a[k] (k < m <= 8, stride apart), added one
 * product at a time in double to sum[k], as in the reference; F16C converts
 * eight at a time, the products are exact in float, so only the order of the
 * double additions matters, and the rows' chains of additions interleave
 * (one row's is a chain of dependent additions, 4 cycles each). */
static inline __attribute__((always_inline)) void dot64_tails(int m, int64_t n, int64_t n_vec, const lb_f16 *a,
                                                              size_t stride, const lb_f16 *b, double *sum)
{
    float prod[8][8];   /* [row][element] */
    int64_t i = n_vec;
    for (; i + 8 <= n; i += 8) {
        const __m256 bv = ld16(b + i);
        for (int k = 0; k < m; k++)
            _mm256_storeu_ps(prod[k], _mm256_mul_ps(ld16(a + (size_t)k * stride + i), bv));
        for (int j = 0; j < 8; j++)
            for (int k = 0; k < m; k++)
                sum[k] += (double)prod[k][j];
    }
    for (; i < n; i++) {
        const float bi = lb_f16_to_f32(b[i]);
        for (int k = 0; k < m; k++)
            sum[k] += (double)(lb_f16_to_f32(a[(size_t)k * stride + i]) * bi);
    }
}

/* v[j] becomes lane j of every v[k]: an 8 x 8 transpose. */
static inline void transpose8(__m256 v[8])
{
    __m256 t[8], u[8];
    for (int h = 0; h < 2; h++) {   /* rows 4h .. 4h+3 */
        t[4 * h] = _mm256_unpacklo_ps(v[4 * h], v[4 * h + 1]);
        t[4 * h + 1] = _mm256_unpackhi_ps(v[4 * h], v[4 * h + 1]);
        t[4 * h + 2] = _mm256_unpacklo_ps(v[4 * h + 2], v[4 * h + 3]);
        t[4 * h + 3] = _mm256_unpackhi_ps(v[4 * h + 2], v[4 * h + 3]);
        /* u[4h + c]: lane c of the four rows | lane c + 4 */
        u[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
        u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
        u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
        u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
    }
    for (int c = 0; c < 4; c++) {
        v[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        v[c + 4] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

/* dot64_tails for ng groups of eight rows (group g: rows 8g .. 8g+7) with
 * the sums as vectors (group g's rows 0-3 in lo[g], 4-7 in hi[g]): eight
 * products of each row at a time, transposed so that each position's eight
 * products are added by two double additions, in the order of the
 * positions.  The groups' chains of additions are independent, so the
 * groups go side by side (one group's chain is latency-bound, 4 cycles an
 * addition), and the last positions (fewer than 8) are loaded as a
 * zero-padded block whose padded positions are never added: converted one
 * by one in software, those were most of decode attention's value work when
 * the context is a few positions past a multiple of 32 (7.3 us per layer at
 * 20 positions against 3.9 at 64). */
static inline __attribute__((always_inline)) void dot64_tails8(int ng, int64_t n, int64_t n_vec, const lb_f16 *a,
                                                               size_t stride, const lb_f16 *b, __m256d *lo,
                                                               __m256d *hi)
{
    for (int64_t i = n_vec; i < n; i += 8) {
        const int64_t m = n - i;   /* positions left; >= 8: a whole block */
        const __m256 bv = ld16_part(b + i, m);
        for (int g = 0; g < ng; g++) {
            const lb_f16 *ag = a + (size_t)(8 * g) * stride + i;
            __m256 p[8];   /* [row], then [position] */
            _Pragma("GCC unroll 8")
            for (int k = 0; k < 8; k++)
                p[k] = _mm256_mul_ps(ld16_part(ag + (size_t)k * stride, m), bv);
            transpose8(p);
            __m256d l = lo[g], h = hi[g];
            _Pragma("GCC unroll 8")
            for (int j = 0; j < 8; j++) {
                if (j >= m)
                    break;
                l = _mm256_add_pd(l, _mm256_cvtps_pd(_mm256_castps256_ps128(p[j])));
                h = _mm256_add_pd(h, _mm256_cvtps_pd(_mm256_extractf128_ps(p[j], 1)));
            }
            lo[g] = l;
            hi[g] = h;
        }
    }
}

static float dot64(int64_t n, int64_t n_vec, const lb_f16 *a, const lb_f16 *b)
{
    double sum = dot64_groups(n, n_vec, a, b, NULL, NULL);
    dot64_tails(1, n, n_vec, a, 0, b, &sum);
    return (float)sum;
}

/* Up to 8 query heads against 64-wide keys: each group of eight key rows is
 * widened once and met by every head, with dot64's products (each against a
 * zero accumulator, so a -0 product gives +0 as there) and its additions in
 * its order, and each head's eight reductions side by side by shuffles that
 * add the same pairs in the same order as reduce16.  Widening the keys once
 * per head was half the work of decode attention's key side (its
 * conversions and additions share two pipes on Zen 4); one head is
 * dot64_rows on keys. */
static inline __attribute__((always_inline)) void heads_nb(const int nb, int64_t rows, const lb_f16 *a, size_t stride,
                                                           const lb_f16 *b, float scale, float *out, size_t out_stride)
{
    _Alignas(32) float bf[8][64];   /* [head][element] the queries widened */
    for (int g = 0; g < nb; g++)
        for (int j = 0; j < 8; j++)
            _mm256_store_ps(bf[g] + 8 * j, ld16(b + 64 * g + 8 * j));
    const __m256 zero = _mm256_setzero_ps(), vscale = _mm256_set1_ps(scale);
    int64_t r = 0;
    for (; r + 8 <= rows; r += 8) {
        __m256 t8[8][8];   /* [head][row] hi + lo of reduce16 */
        for (int k = 0; k < 8; k++) {
            const lb_f16 *ar = a + (size_t)(r + k) * stride;
            __m256 av[8];
            _Pragma("GCC unroll 8")
            for (int j = 0; j < 8; j++)
                av[j] = ld16(ar + 8 * j);
            _Pragma("GCC unroll 8")
            for (int g = 0; g < nb; g++) {
                const float *q = bf[g];
                __m256 p[8];
                _Pragma("GCC unroll 8")
                for (int j = 0; j < 8; j++)
                    p[j] = _mm256_fmadd_ps(av[j], _mm256_load_ps(q + 8 * j), zero);
                __m256 lo = _mm256_add_ps(_mm256_add_ps(p[0], p[4]), _mm256_add_ps(p[2], p[6]));
                __m256 hi = _mm256_add_ps(_mm256_add_ps(p[1], p[5]), _mm256_add_ps(p[3], p[7]));
                t8[g][k] = _mm256_add_ps(hi, lo);
            }
        }
        for (int g = 0; g < nb; g++) {
            __m256 t1 = hsum8x8(t8[g]);   /* rows [0, 2, 4, 6 | 1, 3, 5, 7] */
            t1 = _mm256_permutevar8x32_ps(t1, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_ps(out + (size_t)g * out_stride + r, _mm256_mul_ps(t1, vscale));
        }
    }
    for (; r < rows; r++)
        for (int g = 0; g < nb; g++)
            out[(size_t)g * out_stride + r] = dot64(64, 64, a + (size_t)r * stride, b + 64 * g) * scale;
}

/* The head count a constant: with it a variable, the heads' loop kept
 * copying the widened keys around its multiply-adds and spilled one. */
static void dot64_heads(int64_t rows, const lb_f16 *a, size_t stride, const lb_f16 *b, int nb, float scale,
                        float *out, size_t out_stride)
{
    switch (nb) {
    case 1: heads_nb(1, rows, a, stride, b, scale, out, out_stride); break;
    case 2: heads_nb(2, rows, a, stride, b, scale, out, out_stride); break;
    case 4: heads_nb(4, rows, a, stride, b, scale, out, out_stride); break;
    case 8: heads_nb(8, rows, a, stride, b, scale, out, out_stride); break;
    default:   /* 3, 5, 6, 7: fours, twos, then one */
        for (int g = 0; g < nb;) {
            const int m = nb - g >= 4 ? 4 : nb - g >= 2 ? 2 : 1;
            if (m == 4)
                heads_nb(4, rows, a, stride, b + 64 * g, scale, out + (size_t)g * out_stride, out_stride);
            else if (m == 2)
                heads_nb(2, rows, a, stride, b + 64 * g, scale, out + (size_t)g * out_stride, out_stride);
            else
                heads_nb(1, rows, a, stride, b + 64 * g, scale, out + (size_t)g * out_stride, out_stride);
            g += m;
        }
        break;
    }
}

/* Longest b that dot64_rows widens on the stack (16 KiB); longer ones (a
 * context past 4096 positions) take dot64 row by row. */
#define ROWS_MAX_B 4096

static void dot64_rows(int64_t rows, int64_t n, int64_t n_vec, const lb_f16 *a, size_t stride, const lb_f16 *b,
                       float scale, float *out)
{
    if (n == 64 && n_vec == 64) {   /* attention's keys */
        dot64_heads(rows, a, stride, b, 1, scale, out, 0);
        return;
    }
    int64_t r = 0;
    const int64_t nv = n_vec < n ? n_vec : n, nv64 = (nv + 63) & ~(int64_t)63;
    if (r < rows && nv64 <= ROWS_MAX_B) {
        /* attention's values: b (the probabilities) widened once for the 64 value rows */
        _Alignas(32) float bs[ROWS_MAX_B];
        widen_part(b, nv, nv64, bs);
        __m128i pm_[16];
        const __m128i *pm = nv & 63 ? (part_masks(nv & 63, pm_), pm_) : NULL;
        /* up to eight groups of eight rows: each group's reductions side by side (as dot64_heads),
         * the groups' tails as vectors, side by side */
        while (r + 8 <= rows) {
            const int ng = rows - r >= 64 ? 8 : (int)((rows - r) / 8);
            __m256d lo[8], hi[8];   /* [group] rows 0-3, 4-7 */
            for (int g = 0; g < ng; g++) {
                __m256 t8[8];   /* [row] */
                for (int k = 0; k < 8; k++)
                    t8[k] = dot64_groups8(n, n_vec, a + (size_t)(r + 8 * g + k) * stride, b, bs, pm);
                const __m256 f =
                    _mm256_permutevar8x32_ps(hsum8x8(t8), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                lo[g] = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
                hi[g] = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
            }
            dot64_tails8(ng, n, n_vec, a + (size_t)r * stride, stride, b, lo, hi);
            for (int g = 0; g < ng; g++, r += 8) {
                const __m256 sum = _mm256_set_m128(_mm256_cvtpd_ps(hi[g]), _mm256_cvtpd_ps(lo[g]));
                _mm256_storeu_ps(out + r, _mm256_mul_ps(sum, _mm256_set1_ps(scale)));
            }
        }
        for (; r < rows; r += 8) {
            const int m = rows - r < 8 ? (int)(rows - r) : 8;
            double sum[8];
            for (int k = 0; k < m; k++)
                sum[k] = dot64_groups(n, n_vec, a + (size_t)(r + k) * stride, b, bs, pm);
            dot64_tails(m, n, n_vec, a + (size_t)r * stride, stride, b, sum);
            for (int k = 0; k < m; k++)
                out[r + k] = (float)sum[k] * scale;
        }
    }
    for (; r < rows; r++)
        out[r] = dot64(n, n_vec, a + (size_t)r * stride, b) * scale;
}

/* Most widened probabilities dot64_values keeps on the stack (32 KiB):
 * 4 heads up to 2048 positions; more take dot64_rows head by head. */
#define VALUES_MAX_B 8192

/* dot64_values' 64-group products of eight value rows (a, stride apart)
 * against nb widened probability vectors (bs, bs_stride apart), each row
 * widened once for all of them: t8[h][k] gets what dot64_groups8 gives for
 * row k and head h.  The lanes are summed one vector j at a time over the
 * groups, in the groups' order as there, so only the loop order differs. */
static inline __attribute__((always_inline)) void values_groups8(const int nb, int64_t nv, const lb_f16 *a,
                                                                 size_t stride, const float *bs, int64_t bs_stride,
                                                                 const __m128i *pm, __m256 (*t8)[8])
{
    for (int k = 0; k < 8; k++) {
        const lb_f16 *ar = a + (size_t)k * stride;
        __m256 part[8][8];   /* [head][vector j] */
        _Pragma("GCC unroll 8")
        for (int j = 0; j < 8; j++) {
            __m256 acc[8];   /* [head] */
            _Pragma("GCC unroll 8")
            for (int h = 0; h < nb; h++)
                acc[h] = _mm256_setzero_ps();
            int64_t i = 0;
            for (; i + 64 <= nv; i += 64) {
                const __m256 av = ld16(ar + i + 8 * j);
                _Pragma("GCC unroll 8")
            for (int h = 0; h < nb; h++)
                    acc[h] = _mm256_fmadd_ps(av, _mm256_load_ps(bs + h * bs_stride + i + 8 * j), acc[h]);
            }
            if (i < nv) {
                const __m256 av = ld16_keep(ar + i + 8 * j, pm[2 * j + 1]);
                _Pragma("GCC unroll 8")
            for (int h = 0; h < nb; h++)
                    acc[h] = _mm256_fmadd_ps(av, _mm256_load_ps(bs + h * bs_stride + i + 8 * j), acc[h]);
            }
            _Pragma("GCC unroll 8")
            for (int h = 0; h < nb; h++)
                part[h][j] = acc[h];
        }
        _Pragma("GCC unroll 8")
        for (int h = 0; h < nb; h++) {
            const __m256 *q = part[h];
            __m256 lo = _mm256_add_ps(_mm256_add_ps(q[0], q[4]), _mm256_add_ps(q[2], q[6]));
            __m256 hi = _mm256_add_ps(_mm256_add_ps(q[1], q[5]), _mm256_add_ps(q[3], q[7]));
            t8[h][k] = _mm256_add_ps(hi, lo);
        }
    }
}

/* dot64_values' tail for all nb heads: the positions from n_vec to n of the
 * value rows 8g .. 8g+7 (g < ng; a, stride apart), each product added in
 * double to lo/hi[head][g] in the order of the positions (dot64_tails8's
 * sums).  The rows' tail is transposed and widened once for all heads, 32
 * positions at a time, and each head then multiplies whole position
 * vectors: dot64_tails8 for each head, which transposes that head's
 * products, made a short context's values (a tail of up to 32 positions,
 * every other decode step of a short generation) cost three times a full
 * 64-position group.  Reads the rows up to n rounded up to 8, as
 * dot64_values may. */
static inline __attribute__((always_inline)) void values_tails(const int nb, int ng, int64_t n, int64_t n_vec,
                                                               const lb_f16 *a, size_t stride, const lb_f16 *b,
                                                               size_t b_stride, __m256d (*lo)[8], __m256d (*hi)[8])
{
    _Alignas(64) float vt[32][64];   /* [position][row] the chunk's values, widened */
    _Alignas(32) float pb[32];       /* one head's probabilities of the chunk */
    for (int64_t i0 = n_vec; i0 < n; i0 += 32) {
        const int m = n - i0 < 32 ? (int)(n - i0) : 32;
        for (int g = 0; g < ng; g++)
            for (int i = 0; i < m; i += 8) {
                __m256 v[8];   /* [row], then [position] */
                _Pragma("GCC unroll 8")
                for (int k = 0; k < 8; k++)
                    v[k] = ld16(a + (size_t)(8 * g + k) * stride + i0 + i);
                transpose8(v);
                _Pragma("GCC unroll 8")
                for (int k = 0; k < 8; k++)
                    _mm256_store_ps(vt[i + k] + 8 * g, v[k]);
            }
        for (int h = 0; h < nb; h++) {
            for (int i = 0; i < m; i += 8)
                _mm256_store_ps(pb + i, ld16_part(b + (size_t)h * b_stride + i0 + i, m - i));
#if defined(LB_FMATH_AVX512)
            if (ng == 8) {   /* 512-bit: a group's 8 sums in one vector, two groups' products in one multiply */
                __m512d acc[8];   /* [group] */
                _Pragma("GCC unroll 8")
                for (int g = 0; g < 8; g++)
                    acc[g] = _mm512_insertf64x4(_mm512_castpd256_pd512(lo[h][g]), hi[h][g], 1);
                for (int i = 0; i < m; i++) {
                    const __m512 p = _mm512_set1_ps(pb[i]);
                    _Pragma("GCC unroll 4")
                    for (int g = 0; g < 4; g++) {
                        const __m512 pr = _mm512_mul_ps(_mm512_load_ps(vt[i] + 16 * g), p);
                        acc[2 * g] = _mm512_add_pd(acc[2 * g], _mm512_cvtps_pd(_mm512_castps512_ps256(pr)));
                        acc[2 * g + 1] = _mm512_add_pd(
                            acc[2 * g + 1],
                            _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(pr), 1))));
                    }
                }
                _Pragma("GCC unroll 8")
                for (int g = 0; g < 8; g++) {
                    lo[h][g] = _mm512_castpd512_pd256(acc[g]);
                    hi[h][g] = _mm512_extractf64x4_pd(acc[g], 1);
                }
                continue;
            }
#endif
            __m256d l[8], u[8];   /* [group] */
            _Pragma("GCC unroll 8")
            for (int g = 0; g < 8; g++) {
                l[g] = u[g] = _mm256_setzero_pd();
                if (g < ng) {
                    l[g] = lo[h][g];
                    u[g] = hi[h][g];
                }
            }
            for (int i = 0; i < m; i++) {
                const __m256 p = _mm256_broadcast_ss(pb + i);
                _Pragma("GCC unroll 8")
                for (int g = 0; g < 8; g++)
                    if (g < ng) {
                        const __m256 pr = _mm256_mul_ps(_mm256_load_ps(vt[i] + 8 * g), p);
                        l[g] = _mm256_add_pd(l[g], _mm256_cvtps_pd(_mm256_castps256_ps128(pr)));
                        u[g] = _mm256_add_pd(u[g], _mm256_cvtps_pd(_mm256_extractf128_ps(pr, 1)));
                    }
            }
            _Pragma("GCC unroll 8")
            for (int g = 0; g < 8; g++)
                if (g < ng) {
                    lo[h][g] = l[g];
                    hi[h][g] = u[g];
                }
        }
    }
}

/* dot64_values with the head count a constant, so the heads' accumulators
 * stay in registers; rows a multiple of 8, nb * bs_stride <= VALUES_MAX_B. */
static inline __attribute__((always_inline)) void values_nb(const int nb, int64_t rows, int64_t n, int64_t n_vec,
                                                            const lb_f16 *a, size_t stride, const lb_f16 *b,
                                                            size_t b_stride, float *out, size_t out_stride)
{
    const int64_t nv = n_vec < n ? n_vec : n, nv64 = (nv + 63) & ~(int64_t)63;
    _Alignas(32) float bs[VALUES_MAX_B];   /* [head][nv64] the probabilities widened, zero past nv */
    for (int h = 0; h < nb; h++)
        widen_part(b + (size_t)h * b_stride, nv, nv64, bs + h * nv64);
    __m128i pm[16];
    part_masks(nv & 63, pm);
    for (int64_t r = 0; r < rows;) {
        const int ng = rows - r >= 64 ? 8 : (int)((rows - r) / 8);
        __m256d lo[8][8], hi[8][8];   /* [head][group] rows 0-3, 4-7 of the group */
        for (int g = 0; g < ng; g++) {
            __m256 t8[8][8];   /* [head][row] */
            values_groups8(nb, nv, a + (size_t)(r + 8 * g) * stride, stride, bs, nv64, pm, t8);
            for (int h = 0; h < nb; h++) {
                const __m256 f =
                    _mm256_permutevar8x32_ps(hsum8x8(t8[h]), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                lo[h][g] = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
                hi[h][g] = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
            }
        }
        values_tails(nb, ng, n, n_vec, a + (size_t)r * stride, stride, b, b_stride, lo, hi);
        for (int h = 0; h < nb; h++) {
            for (int g = 0; g < ng; g++)
                _mm256_storeu_ps(out + (size_t)h * out_stride + r + 8 * g,
                                 _mm256_set_m128(_mm256_cvtpd_ps(hi[h][g]), _mm256_cvtpd_ps(lo[h][g])));
        }
        r += 8 * ng;
    }
}

/* Attention's values against the probabilities of the nb query heads that
 * share them: each value row is widened once for all heads (the
 * conversions, one a cycle on Zen 4, bounded the per-head pass), and the
 * heads' double tails run side by side. */
static void dot64_values(int64_t rows, int64_t n, int64_t n_vec, const lb_f16 *a, size_t stride, const lb_f16 *b,
                         size_t b_stride, int nb, float *out, size_t out_stride)
{
    const int64_t nv = n_vec < n ? n_vec : n, nv64 = (nv + 63) & ~(int64_t)63;
    const int64_t r8 = rows & ~(int64_t)7;
    if (nb < 1 || nb > 8 || nv64 * nb > VALUES_MAX_B) {
        for (int h = 0; h < nb; h++)
            dot64_rows(rows, n, n_vec, a, stride, b + (size_t)h * b_stride, 1.0f, out + (size_t)h * out_stride);
        return;
    }
    switch (nb) {
    case 1: values_nb(1, r8, n, n_vec, a, stride, b, b_stride, out, out_stride); break;
    case 2: values_nb(2, r8, n, n_vec, a, stride, b, b_stride, out, out_stride); break;
    case 3: values_nb(3, r8, n, n_vec, a, stride, b, b_stride, out, out_stride); break;
    case 4: values_nb(4, r8, n, n_vec, a, stride, b, b_stride, out, out_stride); break;
    case 5: values_nb(5, r8, n, n_vec, a, stride, b, b_stride, out, out_stride); break;
    case 6: values_nb(6, r8, n, n_vec, a, stride, b, b_stride, out, out_stride); break;
    case 7: values_nb(7, r8, n, n_vec, a, stride, b, b_stride, out, out_stride); break;
    default: values_nb(8, r8, n, n_vec, a, stride, b, b_stride, out, out_stride); break;
    }
    for (int64_t r = r8; r < rows; r++)
        for (int h = 0; h < nb; h++)
            out[(size_t)h * out_stride + r] = dot64(n, n_vec, a + (size_t)r * stride, b + (size_t)h * b_stride);
}

/* lb_expf on 8 lanes. */
static inline __m256 exp8(__m256 x)
{
    const __m256 shift = _mm256_set1_ps(0x1.8p23f);
    __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift);
    __m256 n = _mm256_sub_ps(z, shift);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 p = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), r, _mm256_set1_ps(0x1.573e2ep-5f)), r2,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), r, _mm256_set1_ps(0x1.fffdb6p-2f))),
        r2, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), r, _mm256_set1_ps(1.0f)));
    /* p * 2^n as p * 2^k1 * 2^(n-k1), k1 = n/2 (see lb_expf); n clamped so
     * the exponent arithmetic stays valid where the blend below overrides it */
    __m256 nc = _mm256_min_ps(_mm256_max_ps(n, _mm256_set1_ps(-192.0f)), _mm256_set1_ps(192.0f));
    __m256i k = _mm256_cvttps_epi32(nc);
    __m256i k1 = _mm256_sub_epi32(k, _mm256_srai_epi32(k, 31));   /* toward zero: */
    k1 = _mm256_srai_epi32(k1, 1);                                   /* k / 2 as in C */
    __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(k, k1), bias), 23));
    __m256 res = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    __m256 big = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), n), _mm256_set1_ps(192.0f), _CMP_GT_OQ);
    __m256 alt = _mm256_blendv_ps(_mm256_set1_ps(__builtin_inff()), _mm256_setzero_ps(),
                                  _mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ));
    res = _mm256_blendv_ps(res, alt, big);
    /* NaN in, NaN out (the clamp above turned n's NaN into a number) */
    return _mm256_blendv_ps(res, n, _mm256_cmp_ps(n, n, _CMP_UNORD_Q));
}

static double exp_sum(int64_t n, float *y, const float *x, float max)
{
    const __m256 mx = _mm256_set1_ps(max);
    double sum = 0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 lo = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mx));
        __m256 hi = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mx));
        _mm256_storeu_ps(y + i, lo);
        _mm256_storeu_ps(y + i + 8, hi);
        sum += (double)reduce16(lo, hi);
    }
    if (i < n) {
        float t[16];
        for (int l = 0; l < 16; l++)
            t[l] = i + l < n ? x[i + l] : max;   /* placeholders, zeroed below */
        __m256 lo = exp8(_mm256_sub_ps(_mm256_loadu_ps(t), mx));
        __m256 hi = exp8(_mm256_sub_ps(_mm256_loadu_ps(t + 8), mx));
        _mm256_storeu_ps(t, lo);
        _mm256_storeu_ps(t + 8, hi);
        for (int l = 0; l < 16; l++) {
            if (i + l < n)
                y[i + l] = t[l];
            else
                t[l] = 0.0f;
        }
        sum += (double)reduce16(_mm256_loadu_ps(t), _mm256_loadu_ps(t + 8));
    }
    return sum;
}

static void silu_mul(int64_t n, float *g, const float *u)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        __m256 s = _mm256_div_ps(x, _mm256_add_ps(one, e));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++)
        g[i] = g[i] / (1.0f + lb_expf(0.0f - g[i])) * u[i];
}

static void to_f16(int64_t n, const float *x, lb_f16 *y)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        y[i] = lb_f32_to_f16(x[i]);
}

/* One rotated pair of the references, in scalar FMA instructions. */
static inline void rot1(float *pa, float *pb, float c, float s)
{
    const __m128 a = _mm_set_ss(*pa), b = _mm_set_ss(*pb);
    *pa = _mm_cvtss_f32(_mm_fmsub_ss(a, _mm_set_ss(c), _mm_mul_ss(b, _mm_set_ss(s))));
    *pb = _mm_cvtss_f32(_mm_fmadd_ss(a, _mm_set_ss(s), _mm_mul_ss(b, _mm_set_ss(c))));
}

/* One head, four interleaved pairs a vector: lane 2i gets a*c - (b*s) by
 * the subtracting lanes of FMADDSUB, lane 2i+1 a*s + (b*c) by its adding
 * ones, the fused product a's in both, as in the reference. */
static inline void rope_norm_head(float *v, int n_rot, const float *cs)
{
    const int np = n_rot / 2;
    int i = 0;
    for (; i + 4 <= np; i += 4) {
        const __m256 xv = _mm256_loadu_ps(v + 2 * i), csv = _mm256_loadu_ps(cs + 2 * i);
        const __m256 bsc = _mm256_mul_ps(_mm256_movehdup_ps(xv), _mm256_permute_ps(csv, 0xb1));   /* b*s, b*c */
        _mm256_storeu_ps(v + 2 * i, _mm256_fmaddsub_ps(_mm256_moveldup_ps(xv), csv, bsc));
    }
    for (; i < np; i++)
        rot1(&v[2 * i], &v[2 * i + 1], cs[2 * i], cs[2 * i + 1]);
}

/* One head, pairs (i, i + n_rot/2) eight at a time. */
static inline void rope_neox_head(float *v, int n_rot, const float *cs)
{
    const int half = n_rot / 2;
    int i = 0;
    for (; i + 8 <= half; i += 8) {
        const __m256 lo = _mm256_loadu_ps(cs + 2 * i), hi = _mm256_loadu_ps(cs + 2 * i + 8);
        /* the cosines and the sines of pairs i..i+7 in order */
        const __m256 c = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xd8));
        const __m256 s = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xdd)), 0xd8));
        const __m256 a = _mm256_loadu_ps(v + i), b = _mm256_loadu_ps(v + i + half);
        _mm256_storeu_ps(v + i, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
        _mm256_storeu_ps(v + i + half, _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c)));
    }
    for (; i < half; i++)
        rot1(&v[i], &v[i + half], cs[2 * i], cs[2 * i + 1]);
}

static void rope_norm(float *x, int n_heads, int head_dim, int n_rot, const float *cs)
{
    for (int h = 0; h < n_heads; h++)
        rope_norm_head(x + (int64_t)h * head_dim, n_rot, cs);
}

static void rope_neox(float *x, int n_heads, int head_dim, int n_rot, const float *cs)
{
    for (int h = 0; h < n_heads; h++)
        rope_neox_head(x + (int64_t)h * head_dim, n_rot, cs);
}

static void scale_mul(int64_t n, float *out, const float *x, float scale, const float *w)
{
    const __m256 sv = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv), _mm256_loadu_ps(w + i)));
    for (; i < n; i++)
        out[i] = x[i] * scale * w[i];
}

static void add(int64_t n, float *y, const float *x)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < n; i++)
        y[i] += x[i];
}

#if defined(LB_FMATH_AVX512)
void lb__fmath_register_avx512(lb_fmath *f)
#else
void lb__fmath_register_avx2(lb_fmath *f)
#endif
{
    f->rope_norm = rope_norm;
    f->rope_neox = rope_neox;
    f->scale_mul = scale_mul;
    f->add = add;
    f->dot16 = dot16;
    f->dot64 = dot64;
    f->dot64_rows = dot64_rows;
    f->dot64_heads = dot64_heads;
    f->dot64_values = dot64_values;
    f->exp_sum = exp_sum;
    f->silu_mul = silu_mul;
    f->to_f16 = to_f16;
}
