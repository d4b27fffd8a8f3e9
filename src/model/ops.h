/* Elementwise float operations of the transformer block. */
#ifndef LB_MODEL_OPS_H
#define LB_MODEL_OPS_H

#include <stdint.h>

/* out[i] = x[i] / rms(x) * w[i] over n elements (out may equal x). */
void lb_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);
/* lb_rmsnorm of m rows stride apart (out's rows too), each with the same bits. */
void lb_rmsnorm_rows(int m, float *out, const float *x, int64_t stride, const float *w, int64_t n, float eps);
/* Rotates n_heads vectors of head_dim (first n_rot dims) in place;
 * cs: [n_rot/2][2] (cos, sin) for this token's position. */
void lb_rope_norm(float *x, int n_heads, int head_dim, int n_rot, const float *cs);
void lb_rope_neox(float *x, int n_heads, int head_dim, int n_rot, const float *cs);
/* g[i] = silu(g[i]) * u[i], silu(x) = x / (1 + exp(-x)) with lb_expf */
void lb_swiglu(float *g, const float *u, int64_t n);
/* y[i] += x[i] */
void lb_add(float *y, const float *x, int64_t n);

#endif
