/* Float kernels of the attention and the FFN activation whose rounding is part
 * of their contract: f16 dot products with a fixed summation order, a vector
 * exp, the softmax's exponentials and sum, SiLU.
 *
 * Why fix the rounding: a quantized model (A8_K/A8_32 activations) turns a
 * 1-ulp float difference into an int8 rounding flip now and then, and flips
 * grow over layers and tokens, so greedy text agrees with the reference engine
 * (llama.cpp) only if every float operation rounds the same way.  Each order
 * below is a natural SIMD design and is also the one llama.cpp's CPU backend
 * uses on x86-64 with AVX-512; the scalar references define the results and
 * every SIMD variant equals them bit for bit (tests/unit/test_fmath.c). */
#ifndef LB_KERNELS_FMATH_H
#define LB_KERNELS_FMATH_H

#include <stdint.h>

#include "base/fp16.h"

typedef struct lb_fmath {
    const char *isa;   /* "scalar", "avx2" */
    /* Dot of two f16 vectors in 16 lanes: lane l sums the products of the
     * elements i = l (mod 16) in order (each product of two f16 values is
     * exact in float, so each step rounds once), missing tail elements count
     * as zero; then the lanes are added pairwise (l + l+8, then + l+4, then
     * (0+2) + (1+3)).  The order of a 16-wide GEMM kernel. */
    float (*dot16)(int64_t n, const lb_f16 *a, const lb_f16 *b);
    /* Dot of two f16 vectors of n elements of which the first n_vec (a
     * multiple of 64, may exceed n: elements past n count as zero and are not
     * read) go through 64 lanes (four vectors of 16; lane L sums i = L mod 64),
     * reduced as vectors 0+2, 1+3, then (0+2)+(1+3), then 16 lanes as in
     * dot16; elements n_vec .. n-1 are then added one by one in double.  The
     * result is that double rounded to float.  The order of a GEMV kernel
     * that unrolls four vectors to hide FMA latency. */
    float (*dot64)(int64_t n, int64_t n_vec, const lb_f16 *a, const lb_f16 *b);
    /* y[i] = lb_expf(x[i] - max) for n elements; returns their sum taken as
     * float partial sums of 16 (missing tail elements count as zero; lanes
     * added as in dot16) accumulated in double. */
    double (*exp_sum)(int64_t n, float *y, const float *x, float max);
    /* g[i] = silu(g[i]) * u[i], silu(x) = x / (1 + lb_expf(-x)), each
     * operation rounded to float. */
    void (*silu_mul)(int64_t n, float *g, const float *u);
    /* y[i] = f16(x[i]), round to nearest even. */
    void (*to_f16)(int64_t n, const float *x, lb_f16 *y);
    /* out[r] = dot64(n, n_vec, a + r * stride, b) * scale for r < rows, bit
     * for bit: one vector b against many rows (attention's keys, or its
     * transposed values), b widened once instead of once per row.  Optional:
     * NULL where dot64 itself is fast (callers then loop over dot64). */
    void (*dot64_rows)(int64_t rows, int64_t n, int64_t n_vec, const lb_f16 *a, size_t stride, const lb_f16 *b,
                       float scale, float *out);
    /* out[g * out_stride + r] = dot64(64, 64, a + r * stride, b + 64 * g) *
     * scale for r < rows, g < nb <= 8, bit for bit: 64-wide attention keys
     * against the nb query heads that share them (grouped-query attention),
     * each key row widened once for all of them.  Optional (NULL: callers
     * use dot64_rows per head). */
    void (*dot64_heads)(int64_t rows, const lb_f16 *a, size_t stride, const lb_f16 *b, int nb, float scale,
                        float *out, size_t out_stride);
    /* out[g * out_stride + r] = dot64(n, n_vec, a + r * stride, b + g *
     * b_stride) for r < rows, g < nb, bit for bit: attention's transposed
     * values against the probabilities of the nb query heads that share
     * them, each value row widened once for all heads.  A row of a may be
     * read up to n rounded up to 8 (whole 16-byte loads, the positions past
     * n masked off): the KV cache's value rows have room to n_ctx rounded up
     * to 32.  Optional (NULL: callers use dot64_rows per head). */
    void (*dot64_values)(int64_t rows, int64_t n, int64_t n_vec, const lb_f16 *a, size_t stride, const lb_f16 *b,
                         size_t b_stride, int nb, float *out, size_t out_stride);
    /* The transformer block's elementwise steps (model/ops.c says why each
     * rounds as it does).  RoPE of n_heads heads of head_dim values, the
     * first n_rot of each rotated, pair i by the angle whose cos and sin are
     * cs[2i], cs[2i+1]: norm rotates (x[2i], x[2i+1]), neox (x[i],
     * x[i + n_rot/2]); each result is fma(a, c, -(b*s)) or fma(a, s, b*c)
     * with the b product rounded first. */
    void (*rope_norm)(float *x, int n_heads, int head_dim, int n_rot, const float *cs);
    void (*rope_neox)(float *x, int n_heads, int head_dim, int n_rot, const float *cs);
    /* out[i] = (x[i] * scale) * w[i], two roundings (RMSNorm's last step). */
    void (*scale_mul)(int64_t n, float *out, const float *x, float scale, const float *w);
    /* y[i] += x[i]. */
    void (*add)(int64_t n, float *y, const float *x);
} lb_fmath;

/* exp(x) for float: Arm's Optimized Routines vector expf method (round x/ln2
 * to n with the 1.5*2^23 shift, r = x - n*ln2 in two fused steps with a
 * hi/lo split of ln2, degree-5 polynomial with those routines' minimax
 * coefficients evaluated as ((c5 r + c4) r^2 + (c3 r + c2)) r^2 + (c1 r + 1),
 * then scaled by 2^n with one rounding); max error about 1.5 ulp.  |n| > 192
 * gives +inf or +0, NaN gives NaN. */
float lb_expf(float x);

/* The largest of x[0..n) that is not NaN (-inf if none is), by eight
 * running maxima: one chain of dependent comparisons was two thirds of
 * decode attention's softmax.  Which of +0 and -0 wins a tie may differ
 * from a scan in order. */
float lb_max_f32(int64_t n, const float *x);

/* s[0..n) (n >= 1) becomes softmax(s) with fm's kernels: lb_max_f32
 * subtracted (lb_expf(x - max) does not depend on the sign of a zero max),
 * fm->exp_sum, each value times the float inverse of the sum. */
void lb_softmax(const lb_fmath *fm, int64_t n, float *s);

/* The best variant for this CPU. */
const lb_fmath *lb_fmath_get(void);
/* The scalar references. */
const lb_fmath *lb_fmath_scalar(void);
/* The AVX2+FMA+F16C variant, or NULL when not compiled in or not supported. */
const lb_fmath *lb_fmath_avx2(void);

/* Overrides the entries the AVX2 file implements (kernels/x86/avx2_fmath.c). */
/* The scalar references (the set every SIMD variant must equal bit for bit). */
extern const lb_fmath lb__fmath_ref;
void lb__fmath_register_avx2(lb_fmath *f);
/* The same kernels compiled for AVX-512 VL (32 vector registers; x86/avx512_fmath.c). */
void lb__fmath_register_avx512(lb_fmath *f);

#endif
