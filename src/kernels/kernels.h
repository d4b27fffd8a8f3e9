/* The kernel dispatch table: for each tensor type, the fastest dot product,
 * dequantizer and activation quantizer this CPU supports, chosen once at
 * start-up from CPU features detected at run time. */
#ifndef LB_KERNELS_KERNELS_H
#define LB_KERNELS_KERNELS_H

#include <stdbool.h>

#include "kernels/fmath.h"
#include "kernels/kvq.h"
#include "quant/quant.h"

typedef struct lb_kernel_set {
    const char *isa;                          /* "scalar", "avx2", ... */
    lb_vec_dot_fn vec_dot[LB_TYPE_COUNT];     /* weight type -> dot with its act_type */
    lb_dequant_fn dequant[LB_TYPE_COUNT];
    lb_quant_fn quantize[LB_TYPE_COUNT];      /* at least the activation formats */
    /* y[i] += a * x[i] for n floats (attention's weighted sum of values) */
    void (*axpy_f32)(int64_t n, float a, const float *x, float *y);
    lb_fmath fmath;        /* fixed-rounding float kernels (fmath.h) */
    lb_kvq_kernels kvq;    /* quantized-KV attention kernels (kvq.h) */
} lb_kernel_set;

/* The best set for this CPU (every entry filled: a SIMD variant where one
 * exists, the scalar reference otherwise). */
const lb_kernel_set *lb_kernels(void);
/* The scalar references as a set. */
const lb_kernel_set *lb_kernels_scalar(void);
/* The AVX2+FMA+F16C set, or NULL when not compiled in or the CPU lacks it. */
const lb_kernel_set *lb_kernels_avx2(void);

/* CPU features, detected once. */
typedef struct lb_cpu_features {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni;
} lb_cpu_features;
const lb_cpu_features *lb_cpu(void);

/* Per-ISA registration: each overrides the entries it implements. */
void lb__kernels_register_avx2_float(lb_kernel_set *k);  /* F32 F16 BF16 */
void lb__kernels_register_avx2_q32(lb_kernel_set *k);    /* Q4_0 Q4_1 Q5_0 Q5_1 Q8_0, A8_32 */
void lb__kernels_register_avx2_k(lb_kernel_set *k);      /* Q2_K..Q6_K, A8_K */

#endif
