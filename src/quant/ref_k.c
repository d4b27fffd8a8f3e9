/* Scalar reference for Q2_K..Q6_K and the A8_K activations.  (placeholder: being written) */
#include "quant.h"
void lb__quant_ref_register_k(lb_quant_traits *t) { (void)t; }
