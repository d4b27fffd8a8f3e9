/* AVX-512 VNNI register-tiled products for prefill and batched decoding:
 * Q4_0 as a tile of weight rows x 8 activation rows (gemm8, the tile itself
 * in gemm_q4_0.h), every result with the bits of the AVX2 set's vec_dot. */
#include "kernels/kernels.h"

#include <immintrin.h>

#include "quant/blocks.h"

/* Bit-exactness needs every a*b+c outside the explicit FMAs rounded twice:
 * gcc in ISO C mode does not contract, clang must be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* VPDPBUSD does maddubs + madd(1) + add in one instruction, with the same
 * lanes.  32 registers hold a 4 x 2 tile: 16 accumulators, 8 unpacked
 * blocks and the operands. */
#define GEMM_Q4_0_NW 4
#define GEMM_Q4_0_NA 2
#define GEMM_Q4_0_PROD(init, u, a) _mm256_dpbusd_epi32((init), (u), (a))
#define GEMM_Q4_0_DOT lb_kernels_avx512()->vec_dot[LB_TYPE_Q4_0]
#include "kernels/x86/gemm_q4_0.h"

void lb__kernels_register_avx512_gemm(lb_kernel_set *k)
{
    k->gemm8[LB_TYPE_Q4_0] = gemm8_q4_0;
}
