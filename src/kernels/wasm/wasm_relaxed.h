/* The two relaxed-SIMD instructions the kernels use, i16x8.relaxed_dot_i8x16_i7x16_s and
 * f32x4.relaxed_madd, reachable from clang 14 (which has no builtins for them) through
 * placeholder functions.
 *
 * Built with -DLB_WASM_RELAXED, lb__wasm_relaxed_dot_i16 and lb__wasm_relaxed_madd are
 * imported functions that scripts/wasm/relaxed.mjs replaces after linking, call by call,
 * with the instructions themselves (the "simd-relaxed" web build).  The dot is
 * deterministic here because the second operand is always in 0..127 (Q4_K's 0..15 and
 * Q6_K's 0..63 quants): each 16-bit lane is a[2j] * b[2j] + a[2j+1] * b[2j+1], at most
 * 2 * 128 * 127 in magnitude, so neither the unsigned reading of b nor a saturating add
 * (x86's pmaddubsw) can change it.  Without LB_WASM_RELAXED the same value comes from
 * plain SIMD128 (exact, slower). */
#ifndef LB_KERNELS_WASM_RELAXED_H
#define LB_KERNELS_WASM_RELAXED_H

#include <wasm_simd128.h>

#include "kernels/wasm/wasm_fma.h"

#if defined(LB_WASM_RELAXED)
/* Never called: scripts/wasm/relaxed.mjs substitutes the instruction (and
 * scripts/wasm/relaxed-stubs.js only keeps the linker quiet until then). */
v128_t lb__wasm_relaxed_dot_i16(v128_t a, v128_t b);
v128_t lb__wasm_relaxed_madd(v128_t a, v128_t b, v128_t c);
#define LB_WASM_HAVE_RELAXED_DOT 1
static inline v128_t lb__wasm_dot_i8_u7(v128_t a, v128_t b) { return lb__wasm_relaxed_dot_i16(a, b); }
/* fmaf(a, b, c) on 4 float lanes where the CPU has a fused multiply-add (x86 with FMA3,
 * Arm): the engine decides, and elsewhere rounds twice, so the -relaxed builds equal the
 * scalar reference bit for bit on those CPUs only (tests state the tolerance otherwise). */
static inline v128_t lb__wasm_madd(v128_t a, v128_t b, v128_t c) { return lb__wasm_relaxed_madd(a, b, c); }
#else
/* 16-bit lane j: a[2j] * b[2j] + a[2j+1] * b[2j+1], a signed, b in 0..127. */
static inline v128_t lb__wasm_dot_i8_u7(v128_t a, v128_t b)
{
    v128_t ae = wasm_i16x8_shr(wasm_i16x8_shl(a, 8), 8), ao = wasm_i16x8_shr(a, 8);
    v128_t be = wasm_v128_and(b, wasm_i16x8_splat(0xff)), bo = wasm_u16x8_shr(b, 8);
    return wasm_i16x8_add(wasm_i16x8_mul(ae, be), wasm_i16x8_mul(ao, bo));
}
/* fmaf(a, b, c) on 4 float lanes, exactly: SIMD128 has no fused multiply-add, so it is
 * emulated in double (kernels/wasm/wasm_fma.h). */
static inline v128_t lb__wasm_madd(v128_t a, v128_t b, v128_t c) { return lb__wasm_fma4v(a, b, c); }
#endif

#endif
