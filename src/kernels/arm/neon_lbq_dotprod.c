/* The NEON LBQ2/LBQ3/LBQ4 kernels of neon_lbq.c built for the Armv8.2
 * dot-product extension (SDOT); the build compiles this file with +dotprod
 * and dispatch uses it only where the CPU reports the extension. */
#define LB_NEON_DOTPROD 1
#include "neon_lbq.c"
