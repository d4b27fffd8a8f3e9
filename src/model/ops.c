/* Elementwise float operations of the transformer block, written plainly:
 * they are a small share of the time next to the matrix products.  Their
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
 * two roundings, as llama.cpp's RMS_NORM followed by MUL does. */
void lb_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps)
{
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)(x[i] * x[i]);
    float mean = (float)(ss / (double)n);
    float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * scale * w[i];
}

/* Each rotated value is one fused multiply-add over one rounded product (one
 * rounding fewer than the plain formula); which product is fused is the
 * choice llama.cpp's x86-64 build makes, so Q and K agree bit for bit. */
void lb_rope_norm(float *x, int n_heads, int head_dim, int n_rot, const float *cs)
{
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < n_rot / 2; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = fmaf(a, c, -(b * s));
            v[2 * i + 1] = fmaf(a, s, b * c);
        }
    }
}

void lb_rope_neox(float *x, int n_heads, int head_dim, int n_rot, const float *cs)
{
    int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = v[i], b = v[i + half];
            v[i] = fmaf(a, c, -(b * s));
            v[i + half] = fmaf(a, s, b * c);
        }
    }
}

/* silu with lb_expf (fmath.h): a vector exp with a fixed, portable rounding. */
void lb_swiglu(float *g, const float *u, int64_t n)
{
    lb_fmath_get()->silu_mul(n, g, u);
}

void lb_add(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}
