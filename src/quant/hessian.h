/* Full input covariances ("Hessians") of the weight matrices: H = E[x x^T]
 * over calibration text for every matmul input, collected by
 * `lowbit imatrix --hessian FILE` and read by `lowbit quantize --hessian FILE`
 * for GPTQ/LDLQ rounding (quant/ldlq.h, quant/gptq_k.h). */
#ifndef LB_QUANT_HESSIAN_H
#define LB_QUANT_HESSIAN_H

#include <stdint.h>

#include "base/status.h"
#include "format/gguf.h"

/* The file format (GGUF v3, written by lb_hessian_write):
 *   general.type = "hessian";
 *   lowbit.hessian.chunks (u32), lowbit.hessian.tokens (u64),
 *   lowbit.hessian.dataset (string): how much text, and which;
 *   one F32 tensor per weight, named like the weight, 2-D with
 *   ne = [cols, cols]: row-major H[i][j] = mean over the calibration tokens
 *   of x_i x_j, x the weight's input row.  Weights that share an input
 *   (q/k/v, gate/up) get identical copies.  A loaded H must be symmetric
 *   (within float rounding), finite, with a non-negative diagonal. */
#define LB_HESSIAN_KEY_CHUNKS "lowbit.hessian.chunks"
#define LB_HESSIAN_KEY_TOKENS "lowbit.hessian.tokens"
#define LB_HESSIAN_KEY_DATASET "lowbit.hessian.dataset"

typedef struct lb_hessian lb_hessian;

/* Reads a Hessian file.  On success *out owns everything (the file is
 * closed); free with lb_hessian_free.  Errors: LB_ERR_IO (unreadable),
 * LB_ERR_FORMAT (not a GGUF, general.type is not "hessian", a tensor that is
 * not F32 [cols][cols], a non-finite value, an asymmetric matrix, a negative
 * diagonal), LB_ERR_NOMEM.  *out is untouched on error.  The message is
 * available from lb_hessian_load_err, which is the same call with an lb_err. */
lb_status lb_hessian_load(const char *path, lb_hessian **out);
lb_status lb_hessian_load_err(const char *path, lb_hessian **out, lb_err *err);
/* The same from a file image in memory (the bytes are copied; the fuzzer's entry). */
lb_status lb_hessian_load_memory(const void *data, size_t size, lb_hessian **out, lb_err *err);

/* [cols][cols] row-major mean of x x^T over the calibration tokens; NULL if
 * the file lacks the weight.  *cols (may be NULL) gets the size.  The
 * pointer is owned by h and valid until lb_hessian_free. */
const float *lb_hessian_find(const lb_hessian *h, const char *weight_name, int64_t *cols);

/* Frees h; NULL is accepted. */
void lb_hessian_free(lb_hessian *h);

/* Metadata of a loaded file; dataset is owned by h ("" when absent). */
typedef struct lb_hessian_meta {
    int64_t chunks, tokens;
    const char *dataset;
} lb_hessian_meta;
lb_hessian_meta lb_hessian_get_meta(const lb_hessian *h);
int64_t lb_hessian_n_entries(const lb_hessian *h);
const char *lb_hessian_name_at(const lb_hessian *h, int64_t i, int64_t *cols);

/* ---- collection (lowbit imatrix --hessian) */

/* An empty collector; NULL when out of memory.  Free with lb_hessian_free. */
lb_hessian *lb_hessian_new(void);

/* Registers every tensor of g with two or more dimensions, keyed by its data
 * pointer (as lb_imatrix_track_gguf).  max_cols: tensors with more input
 * columns are skipped (their H would not fit; 0 = no limit). */
lb_status lb_hessian_track_gguf(lb_hessian *h, const lb_gguf *g, int64_t max_cols, lb_err *err);

/* A lb_matmul_observer: adds x^T x of the n rows x[n][cols] to the weight's
 * sum (float blocks, summed into double).  Consecutive products with the
 * same activations (q/k/v, gate/up) share one computation.  Not
 * thread-safe; one session at a time. */
void lb_hessian_observe(void *h, const void *weight_data, int64_t rows, int64_t cols, const float *x, int64_t n);

/* Writes the means of the tensors that saw activations.  LB_ERR_NOT_FOUND
 * when none did; I/O errors name the path. */
lb_status lb_hessian_write(const lb_hessian *h, const char *path, const lb_hessian_meta *meta, lb_err *err);

#endif
