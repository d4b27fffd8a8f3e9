/* AVX2 kernels (k family).  (placeholder: being written) */
#include "kernels/kernels.h"
void lb__kernels_register_avx2_k(lb_kernel_set *k) { (void)k; }
