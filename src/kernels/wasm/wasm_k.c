/* WebAssembly SIMD128 kernels for the K-quants: dot products against A8_K
 * and the A8_K activation quantizer, each giving the same bits as the scalar
 * reference in quant/ref_k.c (the -relaxed builds: on CPUs that fuse
 * multiply-add, see below).
 *
 * Integer work: int8 x int8 products are exact in int16 (extmul) and the
 * scale multiply-and-pair-add (i32x4.dot_i16x8) is exact in int32, so every
 * integer sum equals the reference's.  Float work follows the reference
 * operation by operation: Q2_K/Q3_K/Q5_K combine one super-block at a time
 * (combine_k); Q4_K/Q6_K keep the 8-lane accumulators of the reference's
 * lane contract, whose fused multiply-adds are reproduced exactly in double
 * precision (kernels/wasm/wasm_fma.h).  Built with -DLB_WASM_RELAXED (the
 * "-relaxed" web builds), the Q4_K/Q6_K products use relaxed SIMD's 8-bit
 * dot (exact for their operand ranges) and the fused multiply-adds relaxed
 * SIMD's f32x4.relaxed_madd (kernels/wasm/wasm_relaxed.h): it fuses on x86
 * with FMA3 and on Arm, giving the reference's bits; where an engine does
 * not fuse it, each super-block rounds once more (the tolerance stated in
 * tests/unit/test_kernels_k.c).  Q4_K and Q6_K also have four-row decode
 * entries (vec_dot_w4), bit for bit their vec_dot per row.  Speed notes
 * (docs/web.md, "Speed"): no float operation may see a subnormal operand
 * (h2f), and stores to a volatile stack slot keep V8 from hoisting a whole
 * block's loads (lb__wasm_order). */
#include "kernels/kernels.h"

#if defined(__wasm_simd128__)
#include <string.h>
#include <wasm_simd128.h>

#include "kernels/wasm/wasm_fma.h"
#include "kernels/wasm/wasm_relaxed.h"
#include "quant/blocks.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* f16 to float as lb_f16_to_f32, with no float arithmetic on a subnormal
 * operand: x86 takes a microcode assist of about a hundred cycles for each
 * (WebAssembly cannot set flush-to-zero).  Normal values have their exponent
 * rebased in the integer bits; zero, subnormal, inf and NaN take
 * lb_f16_to_f32 (a subnormal is its mantissa times 2^-24 there, both
 * operands normal).  Q6_K's super-block scales are mostly subnormal f16
 * values (95% of techdocs-28M's): moving their bits into float position and
 * scaling by 2^112, as this did before, doubled the cost of a Q6_K block. */
static inline float h2f(lb_f16 h)
{
    const uint32_t e = h & 0x7c00u;
    if (e == 0 || e == 0x7c00u)
        return lb_f16_to_f32(h);
    /* sign and bits in float position (the sign's copies masked), exponent + 112 */
    const uint32_t u = ((uint32_t)((int32_t)(int16_t)h * 8192) & 0x8fffe000u) + 0x38000000u;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

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

static inline float hsum4(v128_t r)
{
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

/* q4_K_scales_mins in SIMD: bytes 0..7 the scales, 8..15 the mins.  A 16-byte
 * load of the 12 packed bytes (the 4 after them are the block's quants, read
 * and dropped) avoids the scalar path's stores and the stall of reloading
 * them as one vector. */
static inline v128_t q4_K_scales_mins_v(const uint8_t *packed)
{
    v128_t u = wasm_v128_load(packed);                                     /* u0 u1 u2 - */
    v128_t a = wasm_i32x4_shuffle(u, u, 0, 2, 1, 2);                        /* u0 u2 u1 u2 */
    a = wasm_i32x4_shuffle(a, wasm_u32x4_shr(a, 4), 0, 1, 2, 7);           /* u0 u2 u1 u2>>4 */
    v128_t hi = wasm_u32x4_shr(wasm_i32x4_shuffle(u, u, 0, 0, 1, 1), 2);   /* -  u0>>2 - u1>>2 */
    return wasm_v128_or(wasm_v128_and(a, wasm_i32x4_make(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f)),
                        wasm_v128_and(hi, wasm_i32x4_make(0, 0x30303030, 0, 0x30303030)));
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

/* A store V8 cannot drop, to a slot on the caller's stack (per thread: no
 * cache line shared between threads).  V8's optimizing compiler (TurboFan)
 * otherwise moves every load of a loop body to its top, where a few dozen
 * vectors live at once and most spill to the stack; loads after the store
 * stay after it, so each group of loads is used before the next is issued. */
static inline void lb__wasm_order(volatile v128_t *slot, v128_t v) { *slot = v; }

/* ---- dot products */

/* The 16-bit lanes of v: even bytes (sign-extended) and odd bytes. */
static inline __attribute__((unused)) v128_t even_i8(v128_t v) { return wasm_i16x8_shr(wasm_i16x8_shl(v, 8), 8); }
static inline __attribute__((unused)) v128_t odd_i8(v128_t v) { return wasm_i16x8_shr(v, 8); }

#if defined(LB_WASM_HAVE_RELAXED_DOT)
/* acc = fmaf(d, X, acc) on 4 lanes of integer sums X (|X| < 2^24: exact in float) */
static inline v128_t fma_i32(v128_t d, v128_t X, v128_t acc) { return lb__wasm_madd(d, wasm_f32x4_convert_i32x4(X), acc); }
#else
/* The float part of Q4_K and Q6_K without relaxed SIMD: lane k of acc gets
 * fmaf(d, X[k], acc[k]) for the integer lane sums X, emulated exactly in
 * double (wasm_fma.h): the
 * product is exact, the sum rounded once to double is right unless it lands
 * on a float tie (lb__wasm_fma_tie), and then every lane of the block takes
 * the round-to-odd path. */
typedef struct fma_lanes {
    v128_t p[2], c[2], s[2];   /* products, addends and their sums: lanes 0-1 and 2-3, in double */
} fma_lanes;

static inline void fma_begin(fma_lanes *f, v128_t dd, v128_t x, v128_t acc)
{
    lb__wasm_fma_parts_i32(dd, x, acc, &f->p[0], &f->c[0], &f->p[1], &f->c[1]);
    f->s[0] = wasm_f64x2_add(f->p[0], f->c[0]);
    f->s[1] = wasm_f64x2_add(f->p[1], f->c[1]);
}

static inline v128_t fma_ties(const fma_lanes *f) { return lb__wasm_fma_ties4(f->s[0], f->s[1]); }

static inline v128_t fma_end(const fma_lanes *f, int tie)
{
    if (tie)
        return lb__wasm_fma4v_odd(f->p[0], f->c[0], f->p[1], f->c[1]);
    return wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(f->s[0]), wasm_f32x4_demote_f64x2_zero(f->s[1]), 0, 1, 4, 5);
}
#endif

/* 32-bit lane j of v, in every lane (one shuffle; with v's 16-bit halves
 * equal, the multiplier of i32x4.dot_i16x8 for one sub-block's scale). */
#define BCAST32(v, j) wasm_i32x4_shuffle((v), (v), (j), (j), (j), (j))

/* 64 elements of a Q4_K super-block into its lane sums: the low nibbles of
 * qs[32c + l] are elements 64c + l (scale s0), the high nibbles elements
 * 64c + 32 + l (scale s1); l < 16 go to x0 (lanes 0..3), the rest to x1. */
static inline void q4_K_chunk(const uint8_t *qs, const int8_t *aq, int c, v128_t s0, v128_t s1, v128_t *x0,
                              v128_t *x1)
{
    const v128_t q0 = ld(qs + 32 * c), q1 = ld(qs + 32 * c + 16);
#if defined(LB_WASM_HAVE_RELAXED_DOT)
    /* pairs of products in 16 bits, then times the scale and paired again */
    const v128_t m4 = wasm_i8x16_splat(0x0f);
    *x0 = wasm_i32x4_add(*x0, wasm_i32x4_add(
             wasm_i32x4_dot_i16x8(lb__wasm_dot_i8_u7(ld(aq + 64 * c), wasm_v128_and(q0, m4)), s0),
             wasm_i32x4_dot_i16x8(lb__wasm_dot_i8_u7(ld(aq + 64 * c + 32), wasm_v128_and(wasm_u16x8_shr(q0, 4), m4)), s1)));
    *x1 = wasm_i32x4_add(*x1, wasm_i32x4_add(
             wasm_i32x4_dot_i16x8(lb__wasm_dot_i8_u7(ld(aq + 64 * c + 16), wasm_v128_and(q1, m4)), s0),
             wasm_i32x4_dot_i16x8(lb__wasm_dot_i8_u7(ld(aq + 64 * c + 48), wasm_v128_and(wasm_u16x8_shr(q1, 4), m4)), s1)));
#else
    /* WebAssembly has no 8-bit multiply: the even and odd bytes are
     * multiplied in 16-bit lanes, the nibbles taken straight into them */
    const v128_t m4 = wasm_i16x8_splat(0x0f);
    v128_t a;
    a = ld(aq + 64 * c);
    v128_t p = wasm_i16x8_add(wasm_i16x8_mul(wasm_v128_and(q0, m4), even_i8(a)),
                              wasm_i16x8_mul(wasm_v128_and(wasm_u16x8_shr(q0, 8), m4), odd_i8(a)));
    a = ld(aq + 64 * c + 32);
    v128_t r = wasm_i16x8_add(wasm_i16x8_mul(wasm_v128_and(wasm_u16x8_shr(q0, 4), m4), even_i8(a)),
                              wasm_i16x8_mul(wasm_u16x8_shr(q0, 12), odd_i8(a)));
    *x0 = wasm_i32x4_add(*x0, wasm_i32x4_add(wasm_i32x4_dot_i16x8(p, s0), wasm_i32x4_dot_i16x8(r, s1)));
    a = ld(aq + 64 * c + 16);
    p = wasm_i16x8_add(wasm_i16x8_mul(wasm_v128_and(q1, m4), even_i8(a)),
                       wasm_i16x8_mul(wasm_v128_and(wasm_u16x8_shr(q1, 8), m4), odd_i8(a)));
    a = ld(aq + 64 * c + 48);
    r = wasm_i16x8_add(wasm_i16x8_mul(wasm_v128_and(wasm_u16x8_shr(q1, 4), m4), even_i8(a)),
                       wasm_i16x8_mul(wasm_u16x8_shr(q1, 12), odd_i8(a)));
    *x1 = wasm_i32x4_add(*x1, wasm_i32x4_add(wasm_i32x4_dot_i16x8(p, s0), wasm_i32x4_dot_i16x8(r, s1)));
#endif
}

/* One Q4_K super-block's integer lane sums: X0 lanes 0..3, X1 lanes 4..7,
 * lane k holding the elements e with e mod 32 in 4k..4k+3, each times its
 * sub-block scale (bytes 0..7 of smv). */
static inline void q4_K_lanes(const uint8_t *qs, const int8_t *aq, v128_t smv, v128_t *X0, v128_t *X1,
                              volatile v128_t *order)
{
    v128_t x0 = wasm_i32x4_splat(0), x1 = wasm_i32x4_splat(0);
    /* 32-bit lanes holding each 16-bit scale twice: scales 0..3 and 4..7 */
    const v128_t sv = wasm_u16x8_extend_low_u8x16(smv);
    const v128_t spa = wasm_i16x8_shuffle(sv, sv, 0, 0, 1, 1, 2, 2, 3, 3);
    const v128_t spb = wasm_i16x8_shuffle(sv, sv, 4, 4, 5, 5, 6, 6, 7, 7);
    q4_K_chunk(qs, aq, 0, BCAST32(spa, 0), BCAST32(spa, 1), &x0, &x1);
    lb__wasm_order(order, x0);
    lb__wasm_order(order, x1);
    q4_K_chunk(qs, aq, 1, BCAST32(spa, 2), BCAST32(spa, 3), &x0, &x1);
    lb__wasm_order(order, x0);
    lb__wasm_order(order, x1);
    q4_K_chunk(qs, aq, 2, BCAST32(spb, 0), BCAST32(spb, 1), &x0, &x1);
    lb__wasm_order(order, x0);
    lb__wasm_order(order, x1);
    q4_K_chunk(qs, aq, 3, BCAST32(spb, 2), BCAST32(spb, 3), &x0, &x1);
    lb__wasm_order(order, x0);
    lb__wasm_order(order, x1);
    *X0 = x0;
    *X1 = x1;
}

/* Q4_K's min part: lane r gets the mins of sub-blocks 2r and 2r+1 times their
 * activation sums (sub-block j's sum is bsums[2j] + bsums[2j+1]). */
static inline v128_t q4_K_min_lanes(v128_t smv, const int16_t *bsums)
{
    /* the 8 mins as 16-bit lanes, each twice: m0 m0 m1 m1 .. and m4 m4 .. */
    const v128_t mn = wasm_u16x8_extend_high_u8x16(smv);
    const v128_t mn0 = wasm_i16x8_shuffle(mn, mn, 0, 0, 1, 1, 2, 2, 3, 3);
    const v128_t mn1 = wasm_i16x8_shuffle(mn, mn, 4, 4, 5, 5, 6, 6, 7, 7);
    v128_t p0 = wasm_i32x4_dot_i16x8(ld(bsums), mn0), p1 = wasm_i32x4_dot_i16x8(ld(bsums + 8), mn1);
    return wasm_i32x4_add(wasm_i32x4_shuffle(p0, p1, 0, 2, 4, 6), wasm_i32x4_shuffle(p0, p1, 1, 3, 5, 7));
}

/* d_a * d and -d_a * dmin of a Q4_K super-block (the reference's float
 * products) in lanes 0 and 1: both f16 values converted at once as h2f
 * converts one (normal values rebased in the integer bits), the others
 * (zero, subnormal, inf, NaN) through h2f. */
static inline v128_t q4_K_d_dmin(const lb_block_q4_K *b, float da)
{
    uint32_t u;
    memcpy(&u, &b->d, sizeof u);   /* d in the low half, dmin in the high (little-endian) */
    const uint32_t e0 = u & 0x7c00u, e1 = u & 0x7c000000u;
    if (e0 == 0 || e0 == 0x7c00u || e1 == 0 || e1 == 0x7c000000u)
        return wasm_f32x4_make(da * h2f(b->d), -da * h2f(b->dmin), 0, 0);
    v128_t h = wasm_i32x4_extend_low_i16x8(wasm_i32x4_splat((int32_t)u));   /* d, dmin, d, dmin */
    h = wasm_i32x4_add(wasm_v128_and(wasm_i32x4_shl(h, 13), wasm_i32x4_splat((int32_t)0x8fffe000u)),
                       wasm_i32x4_splat(0x38000000));
    return wasm_f32x4_mul(h, wasm_f32x4_make(da, -da, da, -da));
}

/* One Q4_K row's float lanes before the reference's final reduction: *r the
 * 8 lanes' hi4 + lo4, *rm the 4 lanes of mins; the dot is hsum4(*r) +
 * hsum4(*rm). */
static inline __attribute__((always_inline)) void q4_K_row(int64_t n, const lb_block_q4_K *b, const lb_block_a8_K *a,
                                                           v128_t *r, v128_t *rm)
{
    const v128_t zero = wasm_f32x4_splat(0);
    v128_t acc_lo = zero, acc_hi = zero, accm = zero;   /* the reference's 8 lanes, and its 4 of mins */
    volatile v128_t order;   /* see lb__wasm_order */
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const v128_t smv = q4_K_scales_mins_v(b[i].scales);   /* bytes: [8 scales, 8 mins] */
        v128_t X0, X1;
        q4_K_lanes(b[i].qs, a[i].qs, smv, &X0, &X1, &order);
        v128_t m = q4_K_min_lanes(smv, a[i].bsums);
        /* each lane sums 32 products of at most 63 * 15 * 127, below 2^24 */
        const v128_t dv = q4_K_d_dmin(&b[i], a[i].d);   /* d, dmin in lanes 0, 1 */
#if defined(LB_WASM_HAVE_RELAXED_DOT)
        const v128_t d = BCAST32(dv, 0);
        acc_lo = fma_i32(d, X0, acc_lo);
        acc_hi = fma_i32(d, X1, acc_hi);
        accm = fma_i32(BCAST32(dv, 1), m, accm);
#else
        const float d = wasm_f32x4_extract_lane(dv, 0), dmin = wasm_f32x4_extract_lane(dv, 1);
        const v128_t dd = wasm_f64x2_splat((double)d);
        fma_lanes f0, f1, fm;
        fma_begin(&f0, dd, X0, acc_lo);
        fma_begin(&f1, dd, X1, acc_hi);
        fma_begin(&fm, wasm_f64x2_splat((double)dmin), m, accm);
        int tie = wasm_v128_any_true(wasm_v128_or(wasm_v128_or(fma_ties(&f0), fma_ties(&f1)), fma_ties(&fm)));
        acc_lo = fma_end(&f0, tie);
        acc_hi = fma_end(&f1, tie);
        accm = fma_end(&fm, tie);
#endif
    }
    *r = wasm_f32x4_add(acc_hi, acc_lo);
    *rm = accm;
}

/* hsum4 of four vectors at once: lane k of the result is hsum4(v[k]), the
 * same additions in the same order. */
static inline v128_t hsum4x4(const v128_t v[4])
{
    const v128_t a = wasm_i32x4_shuffle(v[0], v[1], 0, 4, 1, 5), b = wasm_i32x4_shuffle(v[2], v[3], 0, 4, 1, 5);
    const v128_t c = wasm_i32x4_shuffle(v[0], v[1], 2, 6, 3, 7), d = wasm_i32x4_shuffle(v[2], v[3], 2, 6, 3, 7);
    const v128_t l0 = wasm_i32x4_shuffle(a, b, 0, 1, 4, 5), l1 = wasm_i32x4_shuffle(a, b, 2, 3, 6, 7);
    const v128_t l2 = wasm_i32x4_shuffle(c, d, 0, 1, 4, 5), l3 = wasm_i32x4_shuffle(c, d, 2, 3, 6, 7);
    return wasm_f32x4_add(wasm_f32x4_add(l0, l2), wasm_f32x4_add(l1, l3));
}

static void dot_q4_K(int64_t n, float *s, const void *w, const void *act)
{
    v128_t r, rm;
    q4_K_row(n, w, act, &r, &rm);
    *s = hsum4(r) + hsum4(rm);
}

/* Four rows against one activation row (decode): one call, and one
 * reduction for the four. */
static void dot_w4_q4_K(int64_t n, float *s, const void *w, size_t w_stride, const void *act)
{
    v128_t r[4], rm[4];
#if defined(__clang__)
#pragma clang loop unroll(disable)
#endif
    for (int k = 0; k < 4; k++)
        q4_K_row(n, (const lb_block_q4_K *)((const char *)w + k * w_stride), act, &r[k], &rm[k]);
    wasm_v128_store(s, wasm_f32x4_add(hsum4x4(r), hsum4x4(rm)));
}

/* (v - 32) * a for 16 quants v (0..63) and activations a, as the 8 sums of
 * adjacent pairs in 16 bits. */
static inline v128_t q6_pairs(v128_t a, v128_t v)
{
#if defined(LB_WASM_HAVE_RELAXED_DOT)
    /* v * a - 32 * a: v in 0..63 is the unsigned operand, and the difference
     * (at most 24130 in magnitude) fits 16 bits */
    return wasm_i16x8_sub(lb__wasm_dot_i8_u7(a, v), lb__wasm_dot_i8_u7(a, wasm_i8x16_splat(32)));
#else
    v128_t q = wasm_i8x16_sub(v, wasm_i8x16_splat(32));
    return wasm_i16x8_add(wasm_i16x8_mul(even_i8(q), even_i8(a)), wasm_i16x8_mul(odd_i8(q), odd_i8(a)));
#endif
}

/* 16 positions l of one Q6_K half (l = 16g .. 16g+15 of the 32): the four
 * 32-element chunks k at those l, the 6-bit values v - 32 times activations
 * ak[32k + ...] and scale 2k + g of the half (lane 2(k % 2) + g of spa for
 * k < 2, of spb for k >= 2), as 4 lanes of 4 consecutive l.  The bits are
 * gathered with 16-bit shifts: every shifted byte is masked, so what crosses
 * from the neighbouring byte is dropped. */
static inline v128_t q6_group(v128_t q0, v128_t q1, v128_t qh, const int8_t *ak, v128_t spa, v128_t spb, int g)
{
    const v128_t m4 = wasm_i8x16_splat(0x0f), m2h = wasm_i8x16_splat(0x30);
    v128_t v, r;
    v = wasm_v128_or(wasm_v128_and(q0, m4), wasm_v128_and(wasm_i16x8_shl(qh, 4), m2h));
    r = wasm_i32x4_dot_i16x8(q6_pairs(ld(ak), v), g ? BCAST32(spa, 1) : BCAST32(spa, 0));
    v = wasm_v128_or(wasm_v128_and(q1, m4), wasm_v128_and(wasm_i16x8_shl(qh, 2), m2h));
    r = wasm_i32x4_add(r, wasm_i32x4_dot_i16x8(q6_pairs(ld(ak + 32), v), g ? BCAST32(spa, 3) : BCAST32(spa, 2)));
    v = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(q0, 4), m4), wasm_v128_and(qh, m2h));
    r = wasm_i32x4_add(r, wasm_i32x4_dot_i16x8(q6_pairs(ld(ak + 64), v), g ? BCAST32(spb, 1) : BCAST32(spb, 0)));
    v = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(q1, 4), m4), wasm_v128_and(wasm_u16x8_shr(qh, 2), m2h));
    r = wasm_i32x4_add(r, wasm_i32x4_dot_i16x8(q6_pairs(ld(ak + 96), v), g ? BCAST32(spb, 3) : BCAST32(spb, 2)));
    return r;
}

/* One Q6_K row's 8 float lanes as hi4 + lo4: the dot is hsum4 of it. */
static inline __attribute__((always_inline)) v128_t q6_K_row(int64_t n, const lb_block_q6_K *b, const lb_block_a8_K *a)
{
    v128_t acc_lo = wasm_f32x4_splat(0), acc_hi = wasm_f32x4_splat(0);   /* the reference's 8 lanes */
    volatile v128_t order;   /* see lb__wasm_order */
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *aq = a[i].qs, *sc = b[i].scales;
        v128_t X0 = wasm_i32x4_splat(0), X1 = wasm_i32x4_splat(0);   /* lanes 0..3 and 4..7 */
        /* clang unrolls the two halves; the ordering stores keep V8 from
         * hoisting the second half's loads over the first half's work */
        for (int h = 0; h < 2; h++) {
            /* element 128h + 32k + l takes scale 8h + 2k + l / 16: as 32-bit
             * lanes holding each 16-bit scale twice, 8h .. 8h+3 and 8h+4 .. 8h+7 */
            const v128_t s16 = wasm_i16x8_extend_low_i8x16(wasm_v128_load64_zero(sc + 8 * h));
            const v128_t spa = wasm_i16x8_shuffle(s16, s16, 0, 0, 1, 1, 2, 2, 3, 3);
            const v128_t spb = wasm_i16x8_shuffle(s16, s16, 4, 4, 5, 5, 6, 6, 7, 7);
            X0 = wasm_i32x4_add(X0, q6_group(ld(ql + 64 * h), ld(ql + 64 * h + 32), ld(qh + 32 * h), aq + 128 * h,
                                             spa, spb, 0));
            lb__wasm_order(&order, X0);
            X1 = wasm_i32x4_add(X1, q6_group(ld(ql + 64 * h + 16), ld(ql + 64 * h + 48), ld(qh + 32 * h + 16),
                                             aq + 128 * h + 16, spa, spb, 1));
            lb__wasm_order(&order, X1);
        }
        /* each lane sums 32 products of at most 32 * 128 * 127, below 2^24 */
        float d = a[i].d * h2f(b[i].d);
#if defined(LB_WASM_HAVE_RELAXED_DOT)
        acc_lo = fma_i32(wasm_f32x4_splat(d), X0, acc_lo);
        acc_hi = fma_i32(wasm_f32x4_splat(d), X1, acc_hi);
#else
        const v128_t dd = wasm_f64x2_splat((double)d);
        fma_lanes f0, f1;
        fma_begin(&f0, dd, X0, acc_lo);
        fma_begin(&f1, dd, X1, acc_hi);
        int tie = wasm_v128_any_true(wasm_v128_or(fma_ties(&f0), fma_ties(&f1)));
        acc_lo = fma_end(&f0, tie);
        acc_hi = fma_end(&f1, tie);
#endif
    }
    return wasm_f32x4_add(acc_hi, acc_lo);
}

static void dot_q6_K(int64_t n, float *s, const void *w, const void *act) { *s = hsum4(q6_K_row(n, w, act)); }

static void dot_w4_q6_K(int64_t n, float *s, const void *w, size_t w_stride, const void *act)
{
    v128_t r[4];
#if defined(__clang__)
#pragma clang loop unroll(disable)
#endif
    for (int k = 0; k < 4; k++)
        r[k] = q6_K_row(n, (const lb_block_q6_K *)((const char *)w + k * w_stride), act);
    wasm_v128_store(s, hsum4x4(r));
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
    k->vec_dot_w4[LB_TYPE_Q4_K] = dot_w4_q4_K;
    k->vec_dot_w4[LB_TYPE_Q6_K] = dot_w4_q6_K;

    k->quantize[LB_TYPE_A8_K] = quant_a8_K;
}
#endif
