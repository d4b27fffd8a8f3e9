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

/* fmaf(a[k], b[k], c[k]) on 4 lanes, for any floats: a * b is exact in
 * double (24-bit significands, and double's exponent range holds every
 * product), so only the addition needs care (lb__wasm_add_odd). */
static inline v128_t lb__wasm_fma4v(v128_t a, v128_t b, v128_t c)
{
    v128_t ah = wasm_i32x4_shuffle(a, a, 2, 3, 0, 1), bh = wasm_i32x4_shuffle(b, b, 2, 3, 0, 1);
    v128_t ch = wasm_i32x4_shuffle(c, c, 2, 3, 0, 1);
    v128_t lo = lb__wasm_add_odd(wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(a), wasm_f64x2_promote_low_f32x4(b)),
                                 wasm_f64x2_promote_low_f32x4(c));
    v128_t hi = lb__wasm_add_odd(wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(ah), wasm_f64x2_promote_low_f32x4(bh)),
                                 wasm_f64x2_promote_low_f32x4(ch));
    return wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(lo), wasm_f32x4_demote_f64x2_zero(hi), 0, 1, 4, 5);
}

/* fmaf(d, x[k], acc[k]) on 4 lanes. */
static inline v128_t lb__wasm_fma4(float d, v128_t x, v128_t acc) { return lb__wasm_fma4v(wasm_f32x4_splat(d), x, acc); }

#endif
