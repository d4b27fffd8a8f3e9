/* AVX2 kernels (float family).  (placeholder: being written) */
#include "kernels/kernels.h"
void lb__kernels_register_avx2_float(lb_kernel_set *k) { (void)k; }
