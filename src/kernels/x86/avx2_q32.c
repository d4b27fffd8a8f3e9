/* AVX2 kernels (q32 family).  (placeholder: being written) */
#include "kernels/kernels.h"
void lb__kernels_register_avx2_q32(lb_kernel_set *k) { (void)k; }
