/* Quality quantizers for the standard GGUF types: weighted searches over
 * scales and mins that minimise the (importance-)weighted squared error of
 * each row.  The traits' quantize entries (quant.h) stay the plain, fast
 * references; the file quantizer and anything that cares about quality
 * calls lb_quantize_row. */
#ifndef LB_QUANT_QUANTIZE_H
#define LB_QUANT_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

/* True when lb_quantize_row can produce the type: F32, F16, BF16, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and lowbit's own
 * LBQ2, LBQ3 (quant/lbq.h; not readable by llama.cpp). */
bool lb_quantize_supported(uint32_t type);

/* Quantizes one row x[n] (n a multiple of the type's block size) into out
 * (lb_type_row_bytes(type, n) bytes).  importance[n] is a non-negative
 * weight per column (an importance matrix row: mean squared activation of
 * that input); NULL weighs every element by x^2 plus a floor (see
 * lb__quant_weights).  The blocks are bit-compatible with llama.cpp's.
 * Unsupported types leave out untouched (check lb_quantize_supported). */
void lb_quantize_row(uint32_t type, const float *x, void *out, int64_t n, const float *importance);

/* Sum over the row of w[i] * (x[i] - y[i])^2, with w the weights
 * lb_quantize_row optimises for this (x, importance); y = dequantized row.
 * Lets tests and tools measure what the search minimises. */
double lb_quantize_weighted_err(const float *x, const float *y, int64_t n, int block, const float *importance);

/* ---- internals shared by the quantizers (search.c) */

/* The element weights for one block x[n]: importance[i] (or 1) times
 * (x[i]^2 + floor), floor a small fraction of the block's mean square so
 * that near-zero elements still count a little. */
void lb__quant_weights(const float *x, const float *importance, int n, float *w);

/* Symmetric fit x[i] ~= d * L[i] with integer L[i] in [lo, hi] (lo < 0 <= hi),
 * minimising sum w[i] (x[i] - d L[i])^2 over d (either sign) and L.  Returns
 * d (0 for an all-zero or zero-weight block, L then 0). */
float lb__search_sym(int n, const float *x, const float *w, int lo, int hi, int8_t *L);

/* Affine fit x[i] ~= d * L[i] + b with L[i] in [0, nmax], d >= 0; when
 * b_nonpos the offset is constrained to b <= 0 (the K-quants store -b as a
 * non-negative min).  Returns d, fills L and *b. */
float lb__search_affine(int n, const float *x, const float *w, int nmax, bool b_nonpos, uint8_t *L, float *b);

/* ---- one K-quant super-block at a time (quantize_k.c), for quantizers
 * that change the weights between blocks (GPTQ, quant/gptq_k.c) */

/* The grid of a K-quant: sub-block length, element quant range, integer
 * scale range (mins use 0..shi), affine (y = d*sc*q - dmin*mn) or not. */
typedef struct lb__kspec {
    int sub;
    int qlo, qhi;
    int slo, shi;
    bool affine;
} lb__kspec;

/* One super-block unpacked: element e = d*sc[j]*L[e] - dmin*mn[j], j = e / sub. */
typedef struct lb__kblock {
    float d, dmin;       /* f16-representable super-scales */
    int sc[16], mn[16];  /* [256 / sub] integer scales and mins */
    int8_t L[256];       /* [256] element quants in [qlo, qhi] */
} lb__kblock;

/* The grid of a K-quant type, or NULL for any other type. */
const lb__kspec *lb__kquant_spec(uint32_t type);
/* The search lb_quantize_row does for one super-block x[256] with element
 * weights w[256] (see lb__quant_weights); fills all of *b. */
void lb__kquant_fit_block(const lb__kspec *k, const float *x, const float *w, lb__kblock *b);
/* Re-chooses sub-block j's integer scale and min for the block's fixed d and
 * dmin so that they fit x[sub] (that sub-block's current values) with
 * weights w[sub]; sets that sub-block's L. */
void lb__kquant_fit_sub(const lb__kspec *k, const float *x, const float *w, lb__kblock *b, int j);
/* Writes b as one block of type (lb_type_row_bytes(type, 256) bytes). */
void lb__kquant_pack(uint32_t type, const lb__kblock *b, void *out);

/* The per-family row quantizers behind lb_quantize_row (n a multiple of the block). */
void lb__quantize_row_k(uint32_t type, const float *x, void *out, int64_t n, const float *importance);
void lb__quantize_row_q32(uint32_t type, const float *x, void *out, int64_t n, const float *importance);

/* Rounds to the nearest integer (ties to even); values beyond +-2^22 and
 * NaN saturate (NaN to the lower bound), so callers can clamp afterwards.
 * Adding 1.5 * 2^23 pushes the fraction out of the mantissa, so the sum is
 * rounded to an integer by the FPU itself: no libm call in the hot loops. */
static inline int lb__qround(float v)
{
    if (!(v > -4194303.0f))
        v = -4194303.0f;
    if (v > 4194303.0f)
        v = 4194303.0f;
    float t = v + 12582912.0f;
    return (int)(t - 12582912.0f);
}

#endif
