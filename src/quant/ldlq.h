/* LDLQ (GPTQ-style) rounding with a full input covariance: a driver that
 * walks each weight row in order, hands one group of consecutive values at
 * a time to a type's rounding callback, and feeds the group's rounding error
 * forward onto the values not yet rounded through the Cholesky factor of
 * the damped inverse Hessian.  Any weight type plugs in with a callback
 * (lbq2/3/4 in lbq_quantize.c; a vector-codebook type the same way).
 *
 * Why: the output error of a row is (w - q) H (w - q)^T with H = E[x x^T]
 * over calibration inputs.  Rounding element by element with the error
 * pushed forward by U (H^-1 = U^T U, U upper) minimises that to first order
 * (OBS/GPTQ; QuIP#'s BlockLDLQ does the same one group at a time). */
#ifndef LB_QUANT_LDLQ_H
#define LB_QUANT_LDLQ_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"

typedef struct lb_ldlq lb_ldlq; /* the factor of one weight's (rotated, damped) Hessian */

typedef struct lb_ldlq_params {
    double damp;   /* lambda = damp * mean(diag H') is added to the diagonal (default 0.01; LB_LDLQ_DAMP for experiments) */
    bool rotate;   /* work in the lbq basis: each 256-column block of the row is rotated by
                      lb__lbq_rotate, and H' = B H B^T with B block-diagonal (default true);
                      n must then be a multiple of 256 */
} lb_ldlq_params;

lb_ldlq_params lb_ldlq_default_params(void);

/* Factors h[n][n] (row-major, symmetric; the caller keeps it): H' (rotated
 * when p->rotate), damped, inverted, and U = the upper Cholesky factor of
 * H'^-1.  Zero columns and rank deficiency are handled by the damping (and,
 * if the factorisation still fails, by more damping).  Errors:
 * LB_ERR_INVALID_ARG (n < 1, n not a multiple of 256 with rotate, NULL),
 * LB_ERR_RANGE (a non-finite entry, naming its position), LB_ERR_NOMEM
 * (needs about 3 n^2 doubles while factoring, n^2 floats kept). */
lb_status lb_ldlq_new(const float *h, int64_t n, const lb_ldlq_params *p, lb_ldlq **out, lb_err *err);
void lb_ldlq_free(lb_ldlq *f); /* NULL is accepted */
int64_t lb_ldlq_cols(const lb_ldlq *f);
bool lb_ldlq_rotated(const lb_ldlq *f);
/* U itself: [n][n] row-major, upper (lower part zero); valid until lb_ldlq_free. */
const float *lb_ldlq_factor(const lb_ldlq *f);

/* One group handed to a rounding callback.  Values are in the processed
 * basis (rotated when the factor rotates). */
typedef struct lb_ldlq_group {
    int64_t row;        /* row of the tensor */
    int64_t start;      /* column of v[0]; groups come in order, start = 0, g, 2g, ... */
    int g;              /* number of values */
    float *v;           /* [g] the targets: the row's values with the feedback of all
                           earlier groups applied.  The callback may modify them (see
                           lb_ldlq_feed); the driver keeps its own copy. */
    const float *wt;    /* [g] what an error on each value costs, 1 / U_ii^2 (the
                           diagonal weights: round each value to minimise
                           sum wt_i (v_i - q_i)^2 when treating them independently) */
    const float *u;     /* U within the group: u[i * ldu + k] for 0 <= i <= k < g */
    int64_t ldu;
} lb_ldlq_group;

/* Rounds grp->v[g] to values the type can represent and writes them,
 * dequantized (in the processed basis), to q[g]; the callback also stores
 * its codes for (grp->row, grp->start) wherever its user state says.  It is
 * called from several threads at once for different rows, groups of one row
 * in order on one thread. */
typedef void (*lb_ldlq_round_fn)(void *user, lb_ldlq_group *grp, float *q);

/* For callbacks that round value by value: after v[i] has been rounded to
 * qi, pushes its error onto v[i+1 .. g-1] as the driver does across groups
 * (scalar LDLQ inside the group).  Also usable for 8-value chunks of a
 * vector codebook, chunk by chunk. */
void lb_ldlq_feed(lb_ldlq_group *grp, int i, float qi);

/* Runs the driver over w[rows][n] (the ORIGINAL basis; rotated internally
 * when the factor rotates): per row, groups of g (n a multiple of g) in order,
 * fn rounds, the error e = v - q of the group (v as handed in, before the
 * callback changed it) goes forward as  w[rest] -= (e U_GG^-1) U_G,rest.
 * Rows are split over n_threads threads (<= 0: all CPUs).  Errors:
 * LB_ERR_INVALID_ARG, LB_ERR_NOMEM. */
lb_status lb_ldlq_quantize_rows(const lb_ldlq *f, const float *w, int64_t rows, int g, lb_ldlq_round_fn fn,
                                void *user, int n_threads, lb_err *err);

/* x^T h x for x[n], h[n][n] in double: the output error energy of a row
 * error x (or the output energy of a row) under the Hessian h. */
double lb_ldlq_quad(const float *h, const float *x, int64_t n);

/* ---- whole tensors of any type that has a Hessian-aware quantizer */

/* True for the types lb_quantize_hessian handles: LBQ2, LBQ3, LBQ4 (LDLQ
 * here) and Q2_K..Q6_K (lb_gptq_k_quantize, quant/gptq_k.h). */
bool lb_quantize_hessian_supported(uint32_t type);

/* Quantizes w[rows][cols] to type into out (rows * lb_type_row_bytes(type,
 * cols) bytes) with the feedback of h[cols][cols] (E[x x^T]; NULL falls back
 * to lb_quantize_row per row).  importance[cols] (or NULL) is the diagonal
 * statistic some types use to pick their scales.  Errors as above. */
lb_status lb_quantize_hessian(uint32_t type, const float *w, int64_t rows, int64_t cols, const float *h,
                              const float *importance, void *out, int n_threads, lb_err *err);

/* The LDLQ quantizer of LBQ2/LBQ3/LBQ4 (lbq_quantize.c): one 256-block per
 * group, group scales chosen when the feedback reaches them. */
lb_status lb__quantize_hessian_lbq(uint32_t type, const float *w, int64_t rows, int64_t cols, const float *h,
                                   void *out, int n_threads, lb_err *err);
/* The same with a factor made once (lb__ldlq_new_lbq: rotated, the damping
 * lbq uses) and reused for several types, as the --bpw mixer does. */
lb_status lb__ldlq_new_lbq(const float *h, int64_t cols, lb_ldlq **out, lb_err *err);
lb_status lb__quantize_ldlq_lbq(uint32_t type, const lb_ldlq *f, const float *w, int64_t rows, void *out,
                                int n_threads, lb_err *err);

#endif
