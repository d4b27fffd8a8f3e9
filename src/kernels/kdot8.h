/* Q4_K and Q6_K dot products against A8_K whose float part runs in 8 lanes,
 * the order of llama.cpp's AVX2 kernels, so that a Q4_K_M model's matrix
 * products give the same bits as there (see kernels/fmath.h for why bits
 * matter).
 *
 * The order, per super-block of 256: the exact integer sums are kept in 8
 * lanes, lane k holding the elements e with e mod 32 in 4k..4k+3 (each times
 * its sub-block scale); lane k of the float accumulator becomes
 * fma(d_a * d_w, lane sum, acc[k]).  Q4_K's mins go to 4 more lanes, lane r
 * holding sub-blocks 2r and 2r+1: accm[r] = fma(-d_a * dmin_w, min-weighted
 * activation sums, accm[r]).  At the end acc is reduced as hi4 + lo4, then
 * (0+2) + (1+3); accm as (0+2) + (1+3); the result is acc + accm.  Compared
 * with one float accumulator per row it also rounds less. */
#ifndef LB_KERNELS_KDOT8_H
#define LB_KERNELS_KDOT8_H

#include "kernels.h"

/* Sets vec_dot[Q4_K] and vec_dot[Q6_K] to the scalar references. */
void lb__kdot8_register_ref(lb_kernel_set *k);
/* Sets them to the AVX2 variants (equal to the references bit for bit). */
void lb__kdot8_register_avx2(lb_kernel_set *k);

#endif
