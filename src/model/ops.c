/* Elementwise float operations of the transformer block; the vector ones
 * are fmath kernels (kernels/fmath.h), with scalar references.  Their
 * rounding is chosen on purpose (each function says how): with int8
 * activation quantization a 1-ulp difference can flip a rounding and grow
 * over layers, so these follow the operation order of the reference engine,
 * llama.cpp, to keep greedy output in agreement with it. */
#include "ops.h"

#include <math.h>

#include "kernels/fmath.h"

/* The squares are rounded to float and summed in double (a sum of thousands
 * of terms must not lose the small ones); the mean is rounded to float and
 * the scale computed in float; then x * scale and the weight are applied as
 * two roundings, as llama.cpp's RMS_NORM followed by MUL does.  The sum is
 * one chain of dependent additions per row, so rows take their turns four at
 * a time, element by element: four chains side by side cost little more
 * than one. */
void lb_rmsnorm_rows(int m, float *out, const float *x, int64_t stride, const float *w, int64_t n, float eps)
{
    const lb_fmath *fm = lb_fmath_get();
    for (int k0 = 0; k0 < m; k0 += 4) {
        /* four chains in named variables (an array indexed by a variable
         * count lives in memory, and its store-to-load latency joins each
         * chain); a short last group repeats its last row */
        const float *r[4];
        for (int k = 0; k < 4; k++)
            r[k] = x + (k0 + k < m ? k0 + k : m - 1) * stride;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int64_t i = 0; i < n; i++) {
            s0 += (double)(r[0][i] * r[0][i]);
            s1 += (double)(r[1][i] * r[1][i]);
            s2 += (double)(r[2][i] * r[2][i]);
            s3 += (double)(r[3][i] * r[3][i]);
        }
        const double ss[4] = {s0, s1, s2, s3};
        for (int k = 0; k < 4 && k0 + k < m; k++) {
            float mean = (float)(ss[k] / (double)n);
            float scale = 1.0f / sqrtf(mean + eps);
            fm->scale_mul(n, out + (k0 + k) * stride, x + (k0 + k) * stride, scale, w);
        }
    }
}

void lb_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps)
{
    lb_rmsnorm_rows(1, out, x, 0, w, n, eps);
}

/* Each rotated value is one fused multiply-add over one rounded product (one
 * rounding fewer than the plain formula); which product is fused is the
 * choice llama.cpp's x86-64 build makes, so Q and K agree bit for bit. */
void lb_rope_norm(float *x, int n_heads, int head_dim, int n_rot, const float *cs)
{
    lb_fmath_get()->rope_norm(x, n_heads, head_dim, n_rot, cs);
}

void lb_rope_neox(float *x, int n_heads, int head_dim, int n_rot, const float *cs)
{
    lb_fmath_get()->rope_neox(x, n_heads, head_dim, n_rot, cs);
}

/* silu with lb_expf (fmath.h): a vector exp with a fixed, portable rounding. */
void lb_swiglu(float *g, const float *u, int64_t n)
{
    lb_fmath_get()->silu_mul(n, g, u);
}

void lb_add(float *y, const float *x, int64_t n)
{
    lb_fmath_get()->add(n, y, x);
}
