/* Scalar reference for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the A8_32 activations.  (placeholder: being written) */
#include "quant.h"
void lb__quant_ref_register_q32(lb_quant_traits *t) { (void)t; }
