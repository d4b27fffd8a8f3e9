/* GPTQ for the standard K-quants (Q2_K..Q6_K): a whole weight matrix is
 * quantized column by column with the rounding error fed forward through the
 * Cholesky factor of the damped inverse input covariance, so the output
 * error (W - Ŵ) X^T is minimised rather than the element error.  The
 * result is ordinary K-quant blocks that llama.cpp reads. */
#ifndef LB_QUANT_GPTQ_K_H
#define LB_QUANT_GPTQ_K_H

#include <stdint.h>

#include "lowbit.h"

/* Quantizes w[rows][cols] (row-major, cols a multiple of 256) to `type`
 * (LB_TYPE_Q2_K, Q3_K, Q4_K, Q5_K or Q6_K) into out, which receives rows
 * rows of lb_type_row_bytes(type, cols) bytes each, in order.
 *
 * h[cols][cols] is the input second moment E[x x^T] over calibration tokens
 * (symmetric; the caller keeps ownership).  It is damped internally
 * (lambda = a fraction of its mean diagonal), so zero columns and rank
 * deficiency are fine; non-finite entries are rejected.
 *
 * importance[cols] (or NULL) weighs the columns when the K-quant scales
 * are chosen (the column weight alone, without lb_quantize_row's
 * x-magnitude factor); NULL uses the diagonal of h.  The error
 * feedback itself always uses the full h.
 *
 * n_threads <= 0 means all CPUs; rows are split over a thread pool.
 * Returns LB_OK; LB_ERR_INVALID_ARG for a non-K-quant type, cols not a
 * multiple of 256, rows < 0 or NULL pointers; LB_ERR_RANGE for non-finite
 * h (or h not positive definite even after damping); LB_ERR_NOMEM when
 * the scratch (cols^2 floats plus, while factorising, 2 cols^2 doubles;
 * then 16 * cols floats per thread) cannot be allocated.  On error out may
 * be partly written.  The output does not depend on n_threads. */
lb_status lb_gptq_k_quantize(uint32_t type, const float *w, int64_t rows, int64_t cols, const float *h,
                             const float *importance, void *out, int n_threads);

#endif
