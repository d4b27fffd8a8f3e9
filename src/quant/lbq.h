/* lowbit's own weight formats LBQ2 (2.19 bpw), LBQ3 (3.19) and LBQ4 (4.19):
 * block layouts, the fixed randomized Hadamard rotation they are stored in,
 * and the entry points of their reference code and quantizer.
 *
 * Both formats hold each 256-element block of a weight row rotated:
 * w' = R w with R = H diag(s) / 16 (H the 256x256 Sylvester-Hadamard matrix,
 * s a fixed +-1 sign vector), so that y = w . x = w' . (R x).  The matching
 * activation format LB_TYPE_A8_H is A8_K taken of R x, so the rotation lives
 * entirely in the activation quantizer and the matrix product stays generic.
 * A rotated block is close to Gaussian whatever outliers the original had,
 * which is what makes a plain 4-, 8- or 16-level grid good enough. */
#ifndef LB_QUANT_LBQ_H
#define LB_QUANT_LBQ_H

#include <assert.h>
#include <stdint.h>

#include "base/fp16.h"
#include "quant/blocks.h"
#include "quant/quant.h"

/* Element e of a block is  d * (sc[e / 32] + 1) * (2q - 3)  with q in 0..3.
 * q of element e = 128n + 32j + l sits in bits 2j..2j+1 of qs[32n + l] (the
 * Q2_K order: one shift and mask gives 32 consecutive elements); the 4-bit
 * group scale of group g is nibble g % 2 of scales[g / 2]. */
typedef struct {
    lb_f16 d;
    uint8_t scales[4];          /* [8 groups] 4-bit */
    uint8_t qs[LB_QK_K / 4];    /* [256] 2-bit */
} lb_block_lbq2;

/* As LBQ2 with q in 0..7 and value (2q - 7): the low two bits of q as in
 * LBQ2, bit 2 of element e = 32k + l in bit k of hmask[l]. */
typedef struct {
    lb_f16 d;
    uint8_t scales[4];          /* [8 groups] 4-bit */
    uint8_t qs[LB_QK_K / 4];    /* [256] low 2 bits */
    uint8_t hmask[LB_QK_K / 8]; /* [256] high bit */
} lb_block_lbq3;

/* 4.19 bpw: element e is  d * (sc[e / 32] + 1) * lb__lbq4_levels[q] / 128  with q in
 * 0..15; q of element e = 64n + 32h + l is nibble h of qs[32n + l] (the Q4_K
 * order: one mask or shift gives a group).  The levels are not evenly spaced:
 * a rotated block is Gaussian, and at 16 levels a grid fitted to Gaussian
 * groups of 32 scaled by their largest magnitude (Lloyd's algorithm) has 17%
 * less squared error than the even one; at 4 and 8 levels the even grid is
 * close enough.  (The / 128 keeps d out of f16's subnormal range.) */
extern const int8_t lb__lbq4_levels[16]; /* -127 -102 -81 -64 -48 -34 -20 -7 7 20 ... 127 */
typedef struct {
    lb_f16 d;
    uint8_t scales[4];          /* [8 groups] 4-bit */
    uint8_t qs[LB_QK_K / 2];    /* [256] 4-bit */
} lb_block_lbq4;

static_assert(sizeof(lb_block_lbq2) == 70, "lbq2 block");
static_assert(sizeof(lb_block_lbq3) == 102, "lbq3 block");
static_assert(sizeof(lb_block_lbq4) == 134, "lbq4 block");

/* x[256] <- R x in place (the activation side).  Done with the same
 * sequence of float additions everywhere, so every ISA gets the same bits. */
void lb__lbq_rotate(float *x);
/* x[256] <- R^T x in place (undoes lb__lbq_rotate; dequantization). */
void lb__lbq_unrotate(float *x);

/* Reference traits of LBQ2, LBQ3, LBQ4 and A8_H (lbq.c). */
void lb__quant_ref_register_lbq(lb_quant_traits *table);

/* Quality quantizer behind lb_quantize_row for LBQ2/LBQ3/LBQ4 (lbq_quantize.c):
 * rotates each block, picks group scales, and rounds with error feedback
 * under the importance-weighted error measured in the original basis. */
void lb__quantize_row_lbq(uint32_t type, const float *x, void *out, int64_t n, const float *importance);
/* For the error feedback of lbq2/3/4 and lbqv with an importance vector imp[n]:
 * [n / 256][256][256] upper factors U with (R diag(imp) R^T + lambda)^-1 = U^T U,
 * cached per vector (thread-safe); NULL when out of memory.  Valid until four
 * other vectors have been seen, which the file quantizer never reaches mid-tensor. */
const float *lb__lbq_imp_factors(const float *imp, int64_t n);

#endif
