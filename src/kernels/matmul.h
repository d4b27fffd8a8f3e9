/* Matrix products against quantized weights, spread over the thread pool.
 * Y[n][rows] = X[n][cols] · W^T, where W is `rows` rows of `cols` elements in
 * any supported type.  n = 1 is decode (matrix-vector); n > 1 is prefill
 * (matrix-matrix: each weight tile is reused across all n activation rows). */
#ifndef LB_KERNELS_MATMUL_H
#define LB_KERNELS_MATMUL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/threadpool.h"

typedef struct lb_matw {
    const void *data;   /* rows x row_bytes */
    uint32_t type;
    int64_t rows, cols;
    size_t row_bytes;
} lb_matw;

/* Bytes of activation scratch lb_matmul needs for n rows of cols elements of
 * weights of this type. */
size_t lb_matmul_scratch(uint32_t type, int64_t cols, int64_t n);

/* x: [n][cols] floats; y: [n][w->rows] floats (row stride w->rows);
 * scratch: lb_matmul_scratch bytes, 32-byte aligned. */
void lb_matmul(lb_pool *pool, const lb_matw *w, const float *x, int64_t n, float *y, void *scratch);

/* The products of nw weights with the same input: y[i] = x · w[i]^T, each
 * exactly what lb_matmul gives.  When the weights share their column count
 * and activation format (Q, K and V; gate and up), x is converted once and
 * one pool run covers all of them, which saves the barriers that dominate a
 * decode step on a busy machine; otherwise they run one after another.
 * nw <= LB_MATMUL_MAX_FUSED; scratch: lb_matmul_scratch of any of them. */
#define LB_MATMUL_MAX_FUSED 4
void lb_matmul_fused(lb_pool *pool, const lb_matw *w, int nw, const float *x, int64_t n, float *const *y,
                     void *scratch);

/* The conversion lb_matmul_fused starts with, done row by row by whoever
 * made the rows: a decode step's norms and SwiGLU run on the pool anyway,
 * and converting there saves the caller converting all rows alone while the
 * other threads wait (8 streams: a run of its own, or a serial stretch, per
 * product).  lb_matmul_input fills in what weights w[0..nw) read; it returns
 * false when they read floats or differ in format (then there is nothing to
 * convert ahead: pass converted = false).  lb_matmul_input_row converts x
 * ([cols] floats) into row t of scratch. */
typedef struct lb_matmul_in {
    void (*quantize)(const float *x, void *dst, int64_t cols);
    int64_t cols;
    size_t row_bytes;
} lb_matmul_in;
bool lb_matmul_input(const lb_matw *w, int nw, lb_matmul_in *in);
void lb_matmul_input_row(const lb_matmul_in *in, const float *x, int64_t t, void *scratch);
/* lb_matmul_fused when every row of x went through lb_matmul_input_row into
 * scratch already (converted = true; x is then still what the observer
 * sees), or as lb_matmul_fused (false). */
void lb_matmul_fused_in(lb_pool *pool, const lb_matw *w, int nw, const float *x, int64_t n, float *const *y,
                        void *scratch, bool converted);

/* A tool hook that sees the float activations of every product: `lowbit
 * imatrix` uses it to gather per-column statistics of each weight's inputs.
 * It is called once per lb_matmul, on the calling thread, before the
 * activations are converted, with x: [n][cols] and the weight's data
 * pointer (which names the tensor) and shape.  It must not modify x or call
 * lb_matmul.  NULL (the default) turns it off; the cost is then one
 * predictable branch per product.  The observer is process-wide: install it
 * before any session runs and clear it after they stop, never while another
 * thread may be inside lb_matmul. */
typedef void (*lb_matmul_observer)(void *user, const void *weight_data, int64_t rows, int64_t cols,
                                   const float *x, int64_t n);
void lb_matmul_set_observer(lb_matmul_observer fn, void *user);

/* For tests: the kernel set lb_matmul and lb_matmul_fused use instead of the
 * dispatched one (NULL: back to lb_kernels()), so that each set's choice of
 * 8-row groups, tails and small batches runs on one machine.  Process-wide,
 * under the observer's rule: never while another thread is inside lb_matmul. */
struct lb_kernel_set;
void lb__matmul_force_kernels(const struct lb_kernel_set *k);

#endif
