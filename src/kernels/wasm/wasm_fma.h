/* Fused multiply-add on WebAssembly SIMD128 lanes, bit for bit equal to
 * C's fmaf: WebAssembly has no deterministic fused multiply-add (relaxed
 * SIMD's may or may not fuse), and calling fmaf per lane costs more than the
 * integer work of a K-quant super-block.  Used where the scalar reference's
 * float order contains fmaf (the 8-lane Q4_K/Q6_K dots, lb_expf). */
#ifndef LB_KERNELS_WASM_FMA_H
#define LB_KERNELS_WASM_FMA_H

#include <wasm_simd128.h>

/* p + a (doubles) rounded to odd: the double nearest to p + a, moved one
 * ulp toward the exact sum when it is inexact and its last bit is even.
 * TwoSum gives the exact error e of the rounded sum s.  A round-to-odd
 * result with 29 more bits than float rounds to float exactly as the exact
 * sum would (Boldo and Melquiond), so this avoids double rounding. */
static inline v128_t lb__wasm_add_odd(v128_t p, v128_t a)
{
    v128_t s = wasm_f64x2_add(p, a);
    v128_t bb = wasm_f64x2_sub(s, p);
    v128_t e = wasm_f64x2_add(wasm_f64x2_sub(p, wasm_f64x2_sub(s, bb)), wasm_f64x2_sub(a, bb));
    v128_t inexact = wasm_f64x2_ne(e, wasm_f64x2_splat(0.0));   /* also true for NaN: see finite */
    v128_t even = wasm_i64x2_eq(wasm_v128_and(s, wasm_i64x2_splat(1)), wasm_i64x2_splat(0));
    v128_t finite = wasm_f64x2_lt(wasm_f64x2_abs(s), wasm_f64x2_splat(__builtin_inf()));
    /* +1 (away from zero) when e has the sign of s, else -1 */
    v128_t step = wasm_v128_or(wasm_i64x2_shr(wasm_v128_xor(s, e), 63), wasm_i64x2_splat(1));
    return wasm_i64x2_add(s, wasm_v128_and(step, wasm_v128_and(wasm_v128_and(inexact, even), finite)));
}

/* The slow path of lb__wasm_fma4v: both halves rounded to odd. */
static inline v128_t lb__wasm_fma4v_odd(v128_t pl, v128_t cl, v128_t ph, v128_t ch)
{
    return wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(lb__wasm_add_odd(pl, cl)),
                              wasm_f32x4_demote_f64x2_zero(lb__wasm_add_odd(ph, ch)), 0, 1, 4, 5);
}

/* Lanes of s (doubles) whose rounding to float might differ from the exact
 * sum's: a double exactly halfway between two floats (low 29 significand
 * bits 1 then 28 zeros) may be a rounded tie, and below FLT_MIN the float
 * rounding point moves.  Elsewhere double rounding equals single rounding. */
static inline v128_t lb__wasm_fma_risky(v128_t s)
{
    v128_t tie = wasm_i64x2_eq(wasm_v128_and(s, wasm_i64x2_splat(0x1fffffff)), wasm_i64x2_splat(0x10000000));
    return wasm_v128_or(tie, wasm_f64x2_lt(wasm_f64x2_abs(s), wasm_f64x2_splat(0x1p-126)));
}

/* fmaf(a[k], b[k], c[k]) on 4 lanes, for any floats: a * b is exact in
 * double (24-bit significands, and double's exponent range holds every
 * product), so only the addition needs care.  The sum rounded once to double
 * is almost always right; the rare lanes that could be double-rounded (see
 * lb__wasm_fma_risky) take the round-to-odd path (lb__wasm_add_odd). */
static inline v128_t lb__wasm_fma4v(v128_t a, v128_t b, v128_t c)
{
    v128_t ah = wasm_i32x4_shuffle(a, a, 2, 3, 0, 1), bh = wasm_i32x4_shuffle(b, b, 2, 3, 0, 1);
    v128_t ch = wasm_i32x4_shuffle(c, c, 2, 3, 0, 1);
    v128_t pl = wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(a), wasm_f64x2_promote_low_f32x4(b));
    v128_t ph = wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(ah), wasm_f64x2_promote_low_f32x4(bh));
    v128_t cl = wasm_f64x2_promote_low_f32x4(c), chd = wasm_f64x2_promote_low_f32x4(ch);
    v128_t sl = wasm_f64x2_add(pl, cl), sh = wasm_f64x2_add(ph, chd);
    if (__builtin_expect(wasm_v128_any_true(wasm_v128_or(lb__wasm_fma_risky(sl), lb__wasm_fma_risky(sh))), 0))
        return lb__wasm_fma4v_odd(pl, cl, ph, chd);
    return wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(sl), wasm_f32x4_demote_f64x2_zero(sh), 0, 1, 4, 5);
}

/* fmaf(d, x[k], acc[k]) on 8 lanes, x and acc given as lo (0..3) and hi
 * (4..7): the two halves share d and one check for risky lanes. */
static inline void lb__wasm_fma8(float d, v128_t xlo, v128_t xhi, v128_t *acc_lo, v128_t *acc_hi)
{
    const v128_t dd = wasm_f64x2_splat((double)d);
    v128_t xlh = wasm_i32x4_shuffle(xlo, xlo, 2, 3, 0, 1), xhh = wasm_i32x4_shuffle(xhi, xhi, 2, 3, 0, 1);
    v128_t alh = wasm_i32x4_shuffle(*acc_lo, *acc_lo, 2, 3, 0, 1), ahh = wasm_i32x4_shuffle(*acc_hi, *acc_hi, 2, 3, 0, 1);
    v128_t p0 = wasm_f64x2_mul(dd, wasm_f64x2_promote_low_f32x4(xlo)), c0 = wasm_f64x2_promote_low_f32x4(*acc_lo);
    v128_t p1 = wasm_f64x2_mul(dd, wasm_f64x2_promote_low_f32x4(xlh)), c1 = wasm_f64x2_promote_low_f32x4(alh);
    v128_t p2 = wasm_f64x2_mul(dd, wasm_f64x2_promote_low_f32x4(xhi)), c2 = wasm_f64x2_promote_low_f32x4(*acc_hi);
    v128_t p3 = wasm_f64x2_mul(dd, wasm_f64x2_promote_low_f32x4(xhh)), c3 = wasm_f64x2_promote_low_f32x4(ahh);
    v128_t s0 = wasm_f64x2_add(p0, c0), s1 = wasm_f64x2_add(p1, c1), s2 = wasm_f64x2_add(p2, c2),
           s3 = wasm_f64x2_add(p3, c3);
    if (__builtin_expect(wasm_v128_any_true(wasm_v128_or(wasm_v128_or(lb__wasm_fma_risky(s0), lb__wasm_fma_risky(s1)),
                                                         wasm_v128_or(lb__wasm_fma_risky(s2), lb__wasm_fma_risky(s3)))),
                         0)) {
        *acc_lo = lb__wasm_fma4v_odd(p0, c0, p1, c1);
        *acc_hi = lb__wasm_fma4v_odd(p2, c2, p3, c3);
        return;
    }
    *acc_lo = wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(s0), wasm_f32x4_demote_f64x2_zero(s1), 0, 1, 4, 5);
    *acc_hi = wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(s2), wasm_f32x4_demote_f64x2_zero(s3), 0, 1, 4, 5);
}

/* The products and addends of fmaf(d, x[k], acc[k]) for 4 lanes of 32-bit
 * integers x (|x| < 2^24, so exact in float): p_lo/c_lo hold lanes 0 and 1,
 * p_hi/c_hi lanes 2 and 3, in double (the products exact). */
static inline void lb__wasm_fma_parts_i32(v128_t dd, v128_t x, v128_t acc, v128_t *p_lo, v128_t *c_lo, v128_t *p_hi,
                                          v128_t *c_hi)
{
    *p_lo = wasm_f64x2_mul(dd, wasm_f64x2_convert_low_i32x4(x));
    *p_hi = wasm_f64x2_mul(dd, wasm_f64x2_convert_low_i32x4(wasm_i32x4_shuffle(x, x, 2, 3, 0, 1)));
    *c_lo = wasm_f64x2_promote_low_f32x4(acc);
    *c_hi = wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(acc, acc, 2, 3, 0, 1));
}

/* Nonzero lanes where the sum s (double) lies exactly halfway between two
 * normal floats: the only place where rounding it to float can differ from
 * rounding the exact sum, when the exact sum is a multiple of 2^-149 (as
 * float times integer plus float is).  Then a sum below FLT_MIN is exact in
 * double and in float alike (it fits 23 bits), so no double rounding can
 * happen there, and elsewhere the double nearest the exact sum can only
 * cross a float rounding boundary by landing on it. */
static inline v128_t lb__wasm_fma_tie(v128_t s)
{
    return wasm_i64x2_eq(wasm_v128_and(s, wasm_i64x2_splat(0x1fffffff)), wasm_i64x2_splat(0x10000000));
}

/* lb__wasm_fma_tie for the 4 sums in two vectors at once, as 32-bit lanes:
 * the test reads only the low 32 bits of each double, gathered first. */
static inline v128_t lb__wasm_fma_ties4(v128_t s_lo, v128_t s_hi)
{
    v128_t lo = wasm_i32x4_shuffle(s_lo, s_hi, 0, 2, 4, 6);
    return wasm_i32x4_eq(wasm_v128_and(lo, wasm_i32x4_splat(0x1fffffff)), wasm_i32x4_splat(0x10000000));
}

/* fmaf(d, x[k], acc[k]) on 4 lanes. */
static inline v128_t lb__wasm_fma4(float d, v128_t x, v128_t acc) { return lb__wasm_fma4v(wasm_f32x4_splat(d), x, acc); }

#endif
