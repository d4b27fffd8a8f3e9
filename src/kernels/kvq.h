/* Kernels of the quantized KV cache (kv/kv_quant.c): rows of 64 codes of
 * 2, 3, 4 or 8 bits with an f16 scale and minimum, scored against a query
 * (keys) or accumulated with attention weights (values) without expanding a
 * whole block to floats.  Scalar references here (kvq.c), AVX2 variants in
 * kernels/x86/avx2_kv.c, chosen once at run time.
 *
 * A row is 64 codes c[0..63], each 0 .. 2^bits - 1, standing for
 * min + scale * c.  Packed layouts (chosen so SIMD unpacks them with a few
 * shifts and masks):
 *   8 bits: 64 bytes, byte i = c[i].
 *   4 bits: 32 bytes, byte j = c[j] | c[j + 32] << 4.
 *   2 bits: 16 bytes, byte j = c[j] | c[j+16] << 2 | c[j+32] << 4 | c[j+48] << 6.
 *   3 bits: 24 bytes: the low two bits of every code as the 2-bit layout,
 *           then 8 bytes whose bit i (byte i / 8, bit i % 8) is bit 2 of c[i]. */
#ifndef LB_KERNELS_KVQ_H
#define LB_KERNELS_KVQ_H

#include <stddef.h>
#include <stdint.h>

#include "base/fp16.h"

#define LB_KVQ_ROW 64   /* codes per row */

/* Packed bytes of one row of 64 codes. */
static inline int lb_kvq_row_bytes(int bits) { return 8 * bits; }

typedef struct lb_kvq_kernels {
    const char *isa;   /* "scalar", "avx2" */
    /* Scores of 64 tokens of a key group stored channel by channel:
     * s[t] = sum over d < dim of q[d] * (min[d] + scale[d] * c_d[t]).
     * Channel d's row c_d over the 64 tokens is at codes + d * stride;
     * scale, min: [dim] f16; q: [dim]; s: [64] (written, not accumulated). */
    void (*k_scores)(int bits, int dim, const uint8_t *codes, size_t stride, const lb_f16 *scale,
                     const lb_f16 *min, const float *q, float *s);
    /* Weighted sum of n value rows (one per token): out[i] += sum over t < n
     * of p[t] * (min_t + scale_t * c_t[i]) for i < 64.  Row t starts at
     * rows + t * stride: 8 * bits code bytes, then its f16 scale and min
     * (unaligned).  out: [64]. */
    void (*v_accum)(int bits, int n, const uint8_t *rows, size_t stride, const float *p, float *out);
    /* The same for nq query heads that share a KV head (grouped-query
     * attention), so each row of codes is unpacked once for all of them:
     * k_scores_n: head g's query is q + g * q_stride, its 64 scores go to
     * s + g * s_stride; v_accum_n: head g's weights are p + g * p_stride,
     * its 64 sums out + g * out_stride.  Equal to nq calls of the single
     * versions up to float rounding (the scalar references are exactly that). */
    void (*k_scores_n)(int bits, int dim, const uint8_t *codes, size_t stride, const lb_f16 *scale,
                       const lb_f16 *min, const float *q, size_t q_stride, int nq, float *s, size_t s_stride);
    void (*v_accum_n)(int bits, int n, const uint8_t *rows, size_t stride, const float *p, size_t p_stride, int nq,
                      float *out, size_t out_stride);
} lb_kvq_kernels;

/* The best set for this CPU. */
const lb_kvq_kernels *lb_kvq_get(void);
/* The scalar references. */
const lb_kvq_kernels *lb_kvq_scalar(void);
/* The AVX2+FMA+F16C set, or NULL when not compiled in or not supported. */
const lb_kvq_kernels *lb_kvq_avx2(void);
/* Overrides the entries the AVX2 file implements. */
/* The scalar references (the set every SIMD variant must equal bit for bit). */
extern const lb_kvq_kernels lb__kvq_ref;
void lb__kvq_register_avx2(lb_kvq_kernels *k);

/* Quantizes n floats (64 or 128) to n / 64 consecutive packed rows sharing
 * one scale and min.  The range [lo, hi] is the data's,
 * shrunk toward its middle when that lowers the squared error (a small
 * search; clipping the rare extremes pays at 2 and 3 bits); scale and min
 * are rounded to f16 before the codes are chosen, so dequantizing with the
 * stored values reproduces exactly what the search measured. */
void lb_kvq_quantize_row(int bits, int n, const float *x, uint8_t *packed, lb_f16 *scale, lb_f16 *min);
/* Codes of a packed row: c[0..63]. */
void lb_kvq_unpack_row(int bits, const uint8_t *packed, uint8_t *c);
/* Packs c[0..63] (each < 2^bits). */
void lb_kvq_pack_row(int bits, const uint8_t *c, uint8_t *packed);
/* x[i] = min + scale * c[i] (float). */
void lb_kvq_dequantize_row(int bits, const uint8_t *packed, lb_f16 scale, lb_f16 min, float *x);

#endif
