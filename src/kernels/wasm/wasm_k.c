/* WebAssembly SIMD128 kernels for the K-quants: dot products against A8_K
 * and the A8_K activation quantizer, each giving the same bits as the scalar
 * reference in quant/ref_k.c.
 *
 * Integer work: int8 x int8 products are exact in int16 (extmul) and the
 * scale multiply-and-pair-add (i32x4.dot_i16x8) is exact in int32, so every
 * integer sum equals the reference's.  Float work follows the reference
 * operation by operation: Q2_K/Q3_K/Q5_K combine one super-block at a time
 * (combine_k); Q4_K/Q6_K keep the 8-lane accumulators of the reference's
 * lane contract, whose fused multiply-adds are reproduced exactly in double
 * precision (kernels/wasm/wasm_fma.h). */
#include "kernels/kernels.h"

#if defined(__wasm_simd128__)
#include <string.h>
#include <wasm_simd128.h>

#include "kernels/wasm/wasm_fma.h"
#include "quant/blocks.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static inline float h2f(lb_f16 h) { return lb_f16_to_f32(h); }

/* The float combination of one super-block, identical to the reference's. */
static inline float combine_k(float acc, float da, float d, float dmin, int32_t isum, int32_t msum)
{
    float dd = da * d;
    float dm = da * dmin;
    return acc + (dd * (float)isum - dm * (float)msum);
}

static inline int32_t hsum_i32(v128_t v)
{
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
}

/* sum over 16 elements of sc * x[j] * y[j] as four int32 partial sums;
 * |x * y| must fit in int16 (quants of at most 6 bits times int8). */
static inline v128_t dot16_scaled(v128_t x, v128_t y, v128_t sc16)
{
    v128_t p = wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16(x, y), wasm_i16x8_extmul_high_i8x16(x, y));
    return wasm_i32x4_dot_i16x8(p, sc16);
}

/* The lane contract's 8 integer lanes from four pair-sum vectors:
 * X[m] lane j holds elements l = 8m + 2j, 8m + 2j + 1 (l = e mod 32);
 * lane k of the contract holds l = 4k .. 4k+3. */
static inline void lanes8(const v128_t X[4], v128_t *lo, v128_t *hi)
{
    *lo = wasm_i32x4_add(wasm_i32x4_shuffle(X[0], X[1], 0, 2, 4, 6), wasm_i32x4_shuffle(X[0], X[1], 1, 3, 5, 7));
    *hi = wasm_i32x4_add(wasm_i32x4_shuffle(X[2], X[3], 0, 2, 4, 6), wasm_i32x4_shuffle(X[2], X[3], 1, 3, 5, 7));
}

/* The reference's reduction of the 8 float lanes: (hi4 + lo4), then (0+2) + (1+3). */
static inline float hsum8(v128_t lo, v128_t hi)
{
    v128_t r = wasm_f32x4_add(hi, lo);
    return (wasm_f32x4_extract_lane(r, 0) + wasm_f32x4_extract_lane(r, 2)) +
           (wasm_f32x4_extract_lane(r, 1) + wasm_f32x4_extract_lane(r, 3));
}

/* Q4_K/Q5_K packed scales and mins: out[0..7] scales, out[8..15] mins. */
static inline void q4_K_scales_mins(const uint8_t *packed, uint8_t out[16])
{
    uint32_t u[3], r[4];
    memcpy(u, packed, 12);
    r[0] = u[0] & 0x3f3f3f3fu;
    r[1] = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);
    r[2] = u[1] & 0x3f3f3f3fu;
    r[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u);
    memcpy(out, r, 16);
}

/* Q3_K's sixteen 6-bit scales minus their offset 32. */
static inline void q3_K_scales(const uint8_t *packed, int8_t out[16])
{
    uint32_t u[3], r[4];
    memcpy(u, packed, 12);
    r[0] = (u[0] & 0x0f0f0f0fu) | ((u[2] << 4) & 0x30303030u);
    r[1] = (u[1] & 0x0f0f0f0fu) | ((u[2] << 2) & 0x30303030u);
    r[2] = ((u[0] >> 4) & 0x0f0f0f0fu) | (u[2] & 0x30303030u);
    r[3] = ((u[1] >> 4) & 0x0f0f0f0fu) | ((u[2] >> 2) & 0x30303030u);
    uint8_t b[16];
    memcpy(b, r, 16);
    for (int i = 0; i < 16; i++)
        out[i] = (int8_t)(b[i] - 32);
}

static inline v128_t ld(const void *p) { return wasm_v128_load(p); }

/* ---- dot products */

static void dot_q4_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q4_K *b = w;
    const lb_block_a8_K *a = act;
    const v128_t m4 = wasm_i8x16_splat(0x0f);
    v128_t acc_lo = wasm_f32x4_splat(0), acc_hi = wasm_f32x4_splat(0), accm = wasm_f32x4_splat(0);
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        uint8_t sm[16];   /* [8 scales, 8 mins] */
        q4_K_scales_mins(b[i].scales, sm);
        v128_t X[4] = {wasm_i32x4_splat(0), wasm_i32x4_splat(0), wasm_i32x4_splat(0), wasm_i32x4_splat(0)};
        for (int c = 0; c < 4; c++) {
            const v128_t s0 = wasm_i16x8_splat(sm[2 * c]), s1 = wasm_i16x8_splat(sm[2 * c + 1]);
            for (int g = 0; g < 2; g++) {
                v128_t q = ld(b[i].qs + 32 * c + 16 * g);
                v128_t lo = wasm_v128_and(q, m4), hi = wasm_u8x16_shr(q, 4);
                v128_t a0 = ld(a[i].qs + 64 * c + 16 * g), a1 = ld(a[i].qs + 64 * c + 32 + 16 * g);
                X[2 * g] = wasm_i32x4_add(X[2 * g], wasm_i32x4_dot_i16x8(wasm_i16x8_extmul_low_i8x16(lo, a0), s0));
                X[2 * g] = wasm_i32x4_add(X[2 * g], wasm_i32x4_dot_i16x8(wasm_i16x8_extmul_low_i8x16(hi, a1), s1));
                X[2 * g + 1] = wasm_i32x4_add(X[2 * g + 1], wasm_i32x4_dot_i16x8(wasm_i16x8_extmul_high_i8x16(lo, a0), s0));
                X[2 * g + 1] = wasm_i32x4_add(X[2 * g + 1], wasm_i32x4_dot_i16x8(wasm_i16x8_extmul_high_i8x16(hi, a1), s1));
            }
        }
        v128_t lo, hi;
        lanes8(X, &lo, &hi);
        float d = a[i].d * h2f(b[i].d);
        float dmin = -a[i].d * h2f(b[i].dmin);
        acc_lo = lb__wasm_fma4(d, wasm_f32x4_convert_i32x4(lo), acc_lo);
        acc_hi = lb__wasm_fma4(d, wasm_f32x4_convert_i32x4(hi), acc_hi);
        /* lane r: the mins of sub-blocks 2r and 2r+1 times their activation sums */
        const int16_t *bs = a[i].bsums;
        int32_t m[4];
        for (int r = 0; r < 4; r++)
            m[r] = sm[8 + 2 * r] * (bs[4 * r] + bs[4 * r + 1]) + sm[8 + 2 * r + 1] * (bs[4 * r + 2] + bs[4 * r + 3]);
        accm = lb__wasm_fma4(dmin, wasm_f32x4_convert_i32x4(wasm_v128_load(m)), accm);
    }
    *s = hsum8(acc_lo, acc_hi) + ((wasm_f32x4_extract_lane(accm, 0) + wasm_f32x4_extract_lane(accm, 2)) +
                                  (wasm_f32x4_extract_lane(accm, 1) + wasm_f32x4_extract_lane(accm, 3)));
}

static void dot_q6_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q6_K *b = w;
    const lb_block_a8_K *a = act;
    const v128_t m4 = wasm_i8x16_splat(0x0f), m2h = wasm_i8x16_splat(0x30), k32 = wasm_i8x16_splat(32);
    v128_t acc_lo = wasm_f32x4_splat(0), acc_hi = wasm_f32x4_splat(0);
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        v128_t X[4] = {wasm_i32x4_splat(0), wasm_i32x4_splat(0), wasm_i32x4_splat(0), wasm_i32x4_splat(0)};
        for (int h = 0; h < 2; h++)
            for (int g = 0; g < 2; g++) {
                /* l = 16g .. 16g+15 of the four 32-element chunks k of half h */
                v128_t q0 = ld(b[i].ql + 64 * h + 16 * g), q1 = ld(b[i].ql + 64 * h + 32 + 16 * g);
                v128_t qh = ld(b[i].qh + 32 * h + 16 * g);
                v128_t v[4];
                v[0] = wasm_v128_or(wasm_v128_and(q0, m4), wasm_v128_and(wasm_i8x16_shl(qh, 4), m2h));
                v[1] = wasm_v128_or(wasm_v128_and(q1, m4), wasm_v128_and(wasm_i8x16_shl(qh, 2), m2h));
                v[2] = wasm_v128_or(wasm_u8x16_shr(q0, 4), wasm_v128_and(qh, m2h));
                v[3] = wasm_v128_or(wasm_u8x16_shr(q1, 4), wasm_v128_and(wasm_u8x16_shr(qh, 2), m2h));
                for (int k = 0; k < 4; k++) {
                    v128_t q = wasm_i8x16_sub(v[k], k32);
                    v128_t av = ld(a[i].qs + 128 * h + 32 * k + 16 * g);
                    v128_t sc = wasm_i16x8_splat(b[i].scales[8 * h + 2 * k + g]);
                    X[2 * g] = wasm_i32x4_add(X[2 * g], wasm_i32x4_dot_i16x8(wasm_i16x8_extmul_low_i8x16(q, av), sc));
                    X[2 * g + 1] =
                        wasm_i32x4_add(X[2 * g + 1], wasm_i32x4_dot_i16x8(wasm_i16x8_extmul_high_i8x16(q, av), sc));
                }
            }
        v128_t lo, hi;
        lanes8(X, &lo, &hi);
        float d = a[i].d * h2f(b[i].d);
        acc_lo = lb__wasm_fma4(d, wasm_f32x4_convert_i32x4(lo), acc_lo);
        acc_hi = lb__wasm_fma4(d, wasm_f32x4_convert_i32x4(hi), acc_hi);
    }
    *s = hsum8(acc_lo, acc_hi);
}

static void dot_q5_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q5_K *b = w;
    const lb_block_a8_K *a = act;
    const v128_t m4 = wasm_i8x16_splat(0x0f), one = wasm_i8x16_splat(1);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        uint8_t sm[16];
        q4_K_scales_mins(b[i].scales, sm);
        v128_t isum = wasm_i32x4_splat(0);
        for (int g = 0; g < 2; g++) {
            v128_t qh = ld(b[i].qh + 16 * g);
            for (int c = 0; c < 4; c++) {
                v128_t q = ld(b[i].qs + 32 * c + 16 * g);
                /* element 64c + 32h + l takes bit 2c + h of qh[l] as its bit 4 */
                v128_t h0 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(qh, 2 * c), one), 4);
                v128_t h1 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(qh, 2 * c + 1), one), 4);
                v128_t lo = wasm_v128_or(wasm_v128_and(q, m4), h0), hi = wasm_v128_or(wasm_u8x16_shr(q, 4), h1);
                isum = wasm_i32x4_add(isum, dot16_scaled(lo, ld(a[i].qs + 64 * c + 16 * g), wasm_i16x8_splat(sm[2 * c])));
                isum = wasm_i32x4_add(isum,
                                      dot16_scaled(hi, ld(a[i].qs + 64 * c + 32 + 16 * g), wasm_i16x8_splat(sm[2 * c + 1])));
            }
        }
        int32_t ms = 0;
        for (int j = 0; j < 8; j++)
            ms += sm[8 + j] * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        acc = combine_k(acc, a[i].d, h2f(b[i].d), h2f(b[i].dmin), hsum_i32(isum), ms);
    }
    *s = acc;
}

static void dot_q2_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q2_K *b = w;
    const lb_block_a8_K *a = act;
    const v128_t m2 = wasm_i8x16_splat(3);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const uint8_t *sc = b[i].scales;
        v128_t isum = wasm_i32x4_splat(0);
        for (int nn = 0; nn < 2; nn++)
            for (int g = 0; g < 2; g++) {
                v128_t q = ld(b[i].qs + 32 * nn + 16 * g);
                for (int j = 0; j < 4; j++) {
                    /* elements 128nn + 32j + 16g .. +15: sub-block 8nn + 2j + g */
                    v128_t v = wasm_v128_and(wasm_u8x16_shr(q, 2 * j), m2);
                    v128_t s16 = wasm_i16x8_splat(sc[8 * nn + 2 * j + g] & 0xF);
                    isum = wasm_i32x4_add(isum, dot16_scaled(v, ld(a[i].qs + 128 * nn + 32 * j + 16 * g), s16));
                }
            }
        /* sum of min * bsum over the 16 sub-blocks */
        v128_t raw = ld(sc);
        v128_t mins = wasm_u8x16_shr(raw, 4);
        v128_t msum = wasm_i32x4_add(wasm_i32x4_dot_i16x8(ld(a[i].bsums), wasm_u16x8_extend_low_u8x16(mins)),
                                     wasm_i32x4_dot_i16x8(ld(a[i].bsums + 8), wasm_u16x8_extend_high_u8x16(mins)));
        acc = combine_k(acc, a[i].d, h2f(b[i].d), h2f(b[i].dmin), hsum_i32(isum), hsum_i32(msum));
    }
    *s = acc;
}

static void dot_q3_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q3_K *b = w;
    const lb_block_a8_K *a = act;
    const v128_t m2 = wasm_i8x16_splat(3), one = wasm_i8x16_splat(1), four = wasm_i8x16_splat(4);
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        int8_t sc[16];
        q3_K_scales(b[i].scales, sc);
        v128_t isum = wasm_i32x4_splat(0);
        for (int g = 0; g < 2; g++) {
            v128_t hm = ld(b[i].hmask + 16 * g);
            for (int nn = 0; nn < 2; nn++) {
                v128_t q = ld(b[i].qs + 32 * nn + 16 * g);
                for (int j = 0; j < 4; j++) {
                    /* a clear hmask bit (bit 4nn + j of hmask[l]) means "subtract 4" */
                    v128_t hb = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(hm, 4 * nn + j), one), 2);
                    v128_t v = wasm_i8x16_sub(wasm_v128_or(wasm_v128_and(wasm_u8x16_shr(q, 2 * j), m2), hb), four);
                    v128_t s16 = wasm_i16x8_splat(sc[8 * nn + 2 * j + g]);
                    isum = wasm_i32x4_add(isum, dot16_scaled(v, ld(a[i].qs + 128 * nn + 32 * j + 16 * g), s16));
                }
            }
        }
        acc = combine_k(acc, a[i].d, h2f(b[i].d), 0.0f, hsum_i32(isum), 0);
    }
    *s = acc;
}

/* ---- A8_K quantizer: id = 127 / max|x|, q = round-half-even(x * id)
 * clamped to +-127 (a NaN element becomes -127, as in the reference). */
static void quant_a8_K(const float *src, void *dst, int64_t n)
{
    lb_block_a8_K *out = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const float *x = src + i * LB_QK_K;
        lb_block_a8_K *b = &out[i];
        v128_t m = wasm_f32x4_splat(0.0f);
        for (int e = 0; e < LB_QK_K; e += 4)
            m = wasm_f32x4_pmax(m, wasm_f32x4_abs(ld(x + e)));   /* a NaN lane keeps m */
        float amax = wasm_f32x4_extract_lane(m, 0), t;
        if ((t = wasm_f32x4_extract_lane(m, 1)) > amax)
            amax = t;
        if ((t = wasm_f32x4_extract_lane(m, 2)) > amax)
            amax = t;
        if ((t = wasm_f32x4_extract_lane(m, 3)) > amax)
            amax = t;
        if (amax == 0) {
            memset(b, 0, sizeof *b);
            continue;
        }
        float id = 127.0f / amax;
        b->d = 1.0f / id;
        const v128_t vid = wasm_f32x4_splat(id), lo = wasm_f32x4_splat(-127.0f), hi = wasm_f32x4_splat(127.0f);
        for (int g = 0; g < LB_QK_K / 16; g++) {
            v128_t q32[4];
            for (int k = 0; k < 4; k++) {
                v128_t v = wasm_f32x4_mul(ld(x + 16 * g + 4 * k), vid);
                v = wasm_v128_bitselect(v, lo, wasm_f32x4_ge(v, lo));   /* false for NaN */
                v = wasm_f32x4_pmin(hi, v);
                q32[k] = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(v));
            }
            v128_t q = wasm_i8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(q32[0], q32[1]),
                                               wasm_i16x8_narrow_i32x4(q32[2], q32[3]));
            wasm_v128_store(b->qs + 16 * g, q);
            b->bsums[g] = (int16_t)hsum_i32(wasm_i32x4_add(wasm_i32x4_add(q32[0], q32[1]), wasm_i32x4_add(q32[2], q32[3])));
        }
    }
}

void lb__kernels_register_wasm_k(lb_kernel_set *k)
{
    k->vec_dot[LB_TYPE_Q2_K] = dot_q2_K;
    k->vec_dot[LB_TYPE_Q3_K] = dot_q3_K;
    k->vec_dot[LB_TYPE_Q4_K] = dot_q4_K;
    k->vec_dot[LB_TYPE_Q5_K] = dot_q5_K;
    k->vec_dot[LB_TYPE_Q6_K] = dot_q6_K;
    k->quantize[LB_TYPE_A8_K] = quant_a8_K;
}
#endif
