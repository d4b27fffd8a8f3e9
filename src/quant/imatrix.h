/* Importance matrices: for each weight tensor, the mean square of each input
 * column over calibration text (what `lowbit imatrix` gathers and
 * `lowbit quantize --imatrix` weighs the rounding error with), collected
 * through the lb_matmul observer and stored as a small GGUF file. */
#ifndef LB_QUANT_IMATRIX_H
#define LB_QUANT_IMATRIX_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "format/gguf.h"

/* The file format (GGUF v3, written by lb_imatrix_write):
 *   one F32 tensor per weight, named like the weight, shape [cols]: the mean
 *   of x[c]^2 over every activation row x that multiplied the weight;
 *   lowbit.imatrix.chunks (u32), lowbit.imatrix.tokens (u64): how much text;
 *   lowbit.imatrix.dataset (string): where the text came from. */
#define LB_IMATRIX_KEY_CHUNKS "lowbit.imatrix.chunks"
#define LB_IMATRIX_KEY_TOKENS "lowbit.imatrix.tokens"
#define LB_IMATRIX_KEY_DATASET "lowbit.imatrix.dataset"

typedef struct lb_imatrix lb_imatrix;

typedef struct lb_imatrix_meta {
    int64_t chunks;        /* calibration chunks evaluated */
    int64_t tokens;        /* tokens evaluated */
    const char *dataset;   /* file name of the text; "" when unknown */
} lb_imatrix_meta;

/* An empty matrix for collecting; NULL on allocation failure.  Free with
 * lb_imatrix_free (which accepts NULL). */
lb_imatrix *lb_imatrix_new(void);
void lb_imatrix_free(lb_imatrix *im);

/* Registers a weight to collect for: products whose weight data pointer is
 * `weight_data` are accumulated under `name`.  LB_ERR_INVALID_ARG for a
 * duplicate name or pointer, cols < 1; LB_ERR_NOMEM. */
lb_status lb_imatrix_track(lb_imatrix *im, const char *name, const void *weight_data, int64_t cols, lb_err *err);

/* Registers every tensor of g with two or more dimensions, keyed by its data
 * pointer.  A model loaded with lb_model_load_memory over lb_gguf_bytes(g)
 * multiplies by exactly these pointers, so its products map to names. */
lb_status lb_imatrix_track_gguf(lb_imatrix *im, const lb_gguf *g, lb_err *err);

/* The lb_matmul_observer to install with lb_matmul_set_observer(.., im):
 * adds x[t][c]^2 (in double) for the n rows of x to the tracked weight's
 * sums.  Products of untracked weights are ignored (counted in
 * lb_imatrix_n_untracked).  Not thread-safe: one session at a time. */
void lb_imatrix_observe(void *im, const void *weight_data, int64_t rows, int64_t cols, const float *x, int64_t n);

/* LB_OK, or LB_ERR_INVALID_ARG naming the tensor when a product's cols
 * disagreed with the tracked shape (those products were not counted). */
lb_status lb_imatrix_check(const lb_imatrix *im, lb_err *err);
int64_t lb_imatrix_n_untracked(const lb_imatrix *im);

/* Writes the tensors that saw at least one activation row (see the format
 * above) to path.  LB_ERR_NOT_FOUND when none did; I/O errors name the path. */
lb_status lb_imatrix_write(const lb_imatrix *im, const char *path, const lb_imatrix_meta *meta, lb_err *err);

/* Reads a file written by lb_imatrix_write.  Every tensor must be 1-D F32
 * with finite, non-negative values (LB_ERR_FORMAT naming the tensor
 * otherwise); a file without lowbit.imatrix.chunks is rejected as not an
 * importance matrix.  On success *out owns everything (the file is closed). */
lb_status lb_imatrix_load(const char *path, lb_imatrix **out, lb_err *err);

/* The importance vector of a tensor: [*cols] means of x^2 (for a collecting
 * matrix, computed from the sums at the time of the call; the pointer stays
 * valid until the next lb_imatrix_find on the same tensor or lb_imatrix_free).
 * NULL when the tensor is unknown or saw no activations. cols may be NULL. */
const float *lb_imatrix_find(const lb_imatrix *im, const char *name, int64_t *cols);

/* Entries, for listings: count of tensors; name and activation rows seen
 * of entry i (rows is 0 for a loaded file, which keeps only the means). */
int64_t lb_imatrix_n_entries(const lb_imatrix *im);
const char *lb_imatrix_name_at(const lb_imatrix *im, int64_t i, int64_t *rows_seen);

/* The loaded file's metadata (zeros and "" for a collecting matrix).
 * dataset is owned by im. */
lb_imatrix_meta lb_imatrix_get_meta(const lb_imatrix *im);

#endif
