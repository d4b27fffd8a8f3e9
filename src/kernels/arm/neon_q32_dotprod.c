/* The NEON Q4_0..Q8_0 kernels of neon_q32.c built for the Armv8.2 dot-product
 * extension (SDOT); the build compiles this file with +dotprod and dispatch
 * uses it only where the CPU reports the extension. */
#define LB_NEON_DOTPROD 1
#include "neon_q32.c"
