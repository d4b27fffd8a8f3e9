/* What lowbit can compute with each tensor type: the plain scalar reference
 * (dequantize, quantize, dot product against the type's activation format).
 * The references are the definition of correct; every SIMD kernel in
 * kernels/ is tested against them. */
#ifndef LB_QUANT_QUANT_H
#define LB_QUANT_QUANT_H

#include <stdint.h>

#include "format/tensor_type.h"

/* Converts n elements (a multiple of the block size) of src to float. */
typedef void (*lb_dequant_fn)(const void *src, float *dst, int64_t n);
/* Converts n floats (a multiple of the block size) to the type.  For the
 * activation formats this is exact round-to-nearest-even of x * (1 / d) with
 * d = max|x| / 127, so scalar and SIMD versions agree bit for bit. */
typedef void (*lb_quant_fn)(const float *src, void *dst, int64_t n);
/* *s = dot(w, a) over n elements: w a row of the weight type, a the same
 * row length in the weight type's activation format (traits.act_type). */
typedef void (*lb_vec_dot_fn)(int64_t n, float *s, const void *w, const void *a);

typedef struct lb_quant_traits {
    lb_type act_type;        /* LB_TYPE_F32, LB_TYPE_A8_32 or LB_TYPE_A8_K */
    lb_dequant_fn dequant;   /* NULL if not supported */
    lb_quant_fn quantize;    /* NULL where no reference quantizer exists yet */
    lb_vec_dot_fn vec_dot;   /* NULL for the activation formats themselves */
} lb_quant_traits;

/* The scalar reference for a type, or NULL when lowbit cannot compute with it. */
const lb_quant_traits *lb_quant_ref(uint32_t type);

/* Registration by family (each implemented in its own file of quant/). */
void lb__quant_ref_register_float(lb_quant_traits *table);  /* F32, F16, BF16 */
void lb__quant_ref_register_q32(lb_quant_traits *table);    /* Q4_0 Q4_1 Q5_0 Q5_1 Q8_0, A8_32 */
void lb__quant_ref_register_k(lb_quant_traits *table);      /* Q2_K..Q6_K, A8_K */

#endif
