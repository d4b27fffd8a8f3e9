/* The AVX2 fmath kernels compiled again for AVX-512 VL: the same
 * instructions on 256-bit vectors, so the same bits, but with 32 vector
 * registers instead of 16, which the attention kernels' per-head
 * accumulators and widened rows need (with 16, gcc spilled them around
 * every multiply-add). */
#define LB_FMATH_AVX512 1
#include "avx2_fmath.c"
