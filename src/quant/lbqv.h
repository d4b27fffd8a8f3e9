/* LBQV: lowbit's 2-bit vector-quantized weight type (2.19 bpw).  Each
 * 256-element block is stored Hadamard-rotated as LBQ2 is (quant/lbq.h), and
 * coded 8 elements at a time by one 16-bit codeword of an E8-lattice
 * codebook: 8 bits pick one of 256 "absolute patterns" (magnitudes of points
 * of the lattice's half-integer coset), 7 bits are signs (the 8th follows from
 * the lattice's parity rule) and 1 bit shifts the point by +-1/4.  On Gaussian
 * data this has 22% less squared error than LBQ2's 4-level grid at the same
 * rate (relative MSE 0.091 against 0.118; docs/quantization.md, "lbqv"). */
#ifndef LB_QUANT_LBQV_H
#define LB_QUANT_LBQV_H

#include <assert.h>
#include <stdint.h>

#include "base/fp16.h"
#include "base/status.h"
#include "quant/blocks.h"
#include "quant/quant.h"

/* Element e of a block (rotated basis) is  d * sc[e / 32] * c[e] / 16  where
 * sc in 1..16 is nibble g % 2 of scales[g / 2] plus one, and c[8k .. 8k+7] is
 * codeword k, decoded from (idx[k], sg[k]) by lb__lbqv_codeword: c is odd,
 * |c| <= 11 (a lattice point in units of a quarter step).  (The / 16 keeps d
 * out of f16's subnormal range.) */
typedef struct {
    lb_f16 d;
    uint8_t scales[4];          /* [8 groups of 32] 4-bit */
    uint8_t idx[LB_QK_K / 8];   /* [32 codewords] pattern index into lb__lbqv_grid */
    uint8_t sg[LB_QK_K / 8];    /* [32 codewords] bits 0..6: element j negative; bit 7: shift +1 (else -1) */
} lb_block_lbqv;

static_assert(sizeof(lb_block_lbqv) == 70, "lbqv block");

/* The codebook's 256 absolute patterns, twice the magnitudes in quarter
 * steps (2, 6 or 10), with element 7 negated where the lattice needs an odd
 * number of negative signs (bench/lbqv_codebook.c generates it and documents
 * the rule).  Changing it changes the meaning of every LBQV file. */
extern const int8_t lb__lbqv_grid[256][8];

/* Codeword (idx, sg) as 8 integers c[8]: element j's sign is bit j of sg
 * for j < 7 and the parity of bits 0..6 for j = 7, applied to the table
 * entry; then the shift is added. */
static inline void lb__lbqv_codeword(uint8_t idx, uint8_t sg, int8_t *c)
{
    unsigned s = sg & 0x7Fu, p = s;
    p ^= p >> 4;
    p ^= p >> 2;
    p ^= p >> 1;
    s |= (p & 1u) << 7;
    int shift = sg & 0x80u ? 1 : -1;
    for (int j = 0; j < 8; j++) {
        int v = lb__lbqv_grid[idx][j];
        c[j] = (int8_t)(((s >> j) & 1u ? -v : v) + shift);
    }
}

/* The nearest codeword to t[8] (in codeword units) in squared distance:
 * fills *idx and *sg and returns the squared distance. */
float lb__lbqv_nearest(const float *t, uint8_t *idx, uint8_t *sg);

/* Reference traits of LBQV (lbqv.c); its activations are LB_TYPE_A8_H. */
void lb__quant_ref_register_lbqv(lb_quant_traits *table);

/* Quality quantizer behind lb_quantize_row for LBQV (lbqv_quantize.c): rotates
 * each block, picks group scales, and codes each 8 weights with error
 * feedback under the importance-weighted error of the original basis. */
void lb__quantize_row_lbqv(const float *x, void *out, int64_t n, const float *importance);

/* The same with a full input covariance h[cols][cols] (E[x x^T]) through the
 * LDLQ driver of quant/ldlq.h: w[rows][cols] into rows rows of LBQV.  Errors
 * as lb_ldlq_quantize_rows; LB_ERR_INVALID_ARG when cols % 256 != 0. */
lb_status lb__quantize_hessian_lbqv(const float *w, int64_t rows, int64_t cols, const float *h, void *out,
                                    int n_threads, lb_err *err);

#endif
