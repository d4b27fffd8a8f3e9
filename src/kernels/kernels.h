/* The kernel dispatch table: for each tensor type, the fastest dot product,
 * dequantizer and activation quantizer this CPU supports, chosen once at
 * start-up from CPU features detected at run time. */
#ifndef LB_KERNELS_KERNELS_H
#define LB_KERNELS_KERNELS_H

#include <stdbool.h>

#include "kernels/fmath.h"
#include "kernels/kvq.h"
#include "quant/quant.h"

/* One weight row against 4 activation rows act_stride bytes apart:
 * s[j * s_stride] = vec_dot(n, w, row j), bit-identical to vec_dot, with the
 * weight blocks unpacked once for all four (batched decoding and prefill). */
typedef void (*lb_vec_dot4_fn)(int64_t n, float *s, int64_t s_stride, const void *w, const void *act,
                               size_t act_stride);

/* A tile of nw weight rows (w_stride bytes apart) against 8 activation rows:
 * s[j * s_stride + r] = vec_dot(n, row r, activation row j) for r < nw,
 * j < 8, bit-identical to vec_dot.  Each weight block is unpacked once for
 * several activation rows and each activation block prepared once for
 * several weight rows (register-tiled GEMM for prefill and batched decoding). */
typedef void (*lb_gemm8_fn)(int64_t n, int64_t nw, float *s, int64_t s_stride, const void *w, size_t w_stride,
                            const void *act, size_t act_stride);

/* gemm8 in two parts, for products whose 8 activation rows meet many tiles:
 * gemm8_prep arranges rows act .. act + 7 * act_stride (n columns) into buf
 * (gemm8_prep_bytes(n) bytes, a multiple of 64, the buffer 64-byte aligned;
 * 0: no arranged form for this
 * n, use gemm8), then gemm8p multiplies any tile with them, with gemm8's
 * results and bits, for rows j0..7 of the eight only (0 <= j0 < 8; s is row
 * 0's, and the rows before j0 are not written).  Done per call, the
 * arranging cost a short tile a measurable share of its time; a tail of
 * fewer than 8 rows arranged as the last rows of eight pays for its row
 * pairs, not for eight rows. */
typedef size_t (*lb_gemm8_prep_bytes_fn)(int64_t n);
typedef void (*lb_gemm8_prep_fn)(int64_t n, const void *act, size_t act_stride, void *buf);
typedef void (*lb_gemm8p_fn)(int64_t n, int64_t nw, float *s, int64_t s_stride, const void *w, size_t w_stride,
                             const void *buf, int j0);

/* Four weight rows (w_stride bytes apart) against one activation row:
 * s[r] = vec_dot(n, row r, act) for r < 4, bit-identical to vec_dot (decode:
 * each activation block's loads and conversions are shared by the rows). */
typedef void (*lb_vec_dot_w4_fn)(int64_t n, float *s, const void *w, size_t w_stride, const void *act);

typedef struct lb_kernel_set {
    const char *isa;                          /* "scalar", "avx2", ... */
    lb_vec_dot_fn vec_dot[LB_TYPE_COUNT];     /* weight type -> dot with its act_type */
    lb_vec_dot4_fn vec_dot4[LB_TYPE_COUNT];   /* optional (NULL: lb_matmul calls vec_dot per row) */
    /* The same for 8 activation rows (s[j * s_stride], j < 8), bit-identical
     * to vec_dot per row: a decode step's rows share each weight block's
     * unpacking.  Optional (NULL: lb_matmul uses vec_dot4, then vec_dot). */
    lb_vec_dot4_fn vec_dot8[LB_TYPE_COUNT];
    lb_gemm8_fn gemm8[LB_TYPE_COUNT];         /* optional; lb_matmul prefers it to vec_dot8 */
    lb_gemm8_prep_bytes_fn gemm8_prep_bytes[LB_TYPE_COUNT];   /* optional, all three or none */
    lb_gemm8_prep_fn gemm8_prep[LB_TYPE_COUNT];
    lb_gemm8p_fn gemm8p[LB_TYPE_COUNT];
    lb_vec_dot_w4_fn vec_dot_w4[LB_TYPE_COUNT];   /* optional (NULL: one activation row uses vec_dot) */
    lb_dequant_fn dequant[LB_TYPE_COUNT];
    lb_quant_fn quantize[LB_TYPE_COUNT];      /* at least the activation formats */
    /* y[i] += a * x[i] for n floats (attention's weighted sum of values) */
    void (*axpy_f32)(int64_t n, float a, const float *x, float *y);
    lb_fmath fmath;        /* fixed-rounding float kernels (fmath.h) */
    lb_kvq_kernels kvq;    /* quantized-KV attention kernels (kvq.h) */
} lb_kernel_set;

/* The best set for this CPU (every entry filled: a SIMD variant where one
 * exists, the scalar reference otherwise).  LB_ISA=scalar|avx2 in the
 * environment caps the choice (for comparisons). */
const lb_kernel_set *lb_kernels(void);
/* The scalar references as a set. */
const lb_kernel_set *lb_kernels_scalar(void);
/* The AVX2+FMA+F16C set, or NULL when not compiled in or the CPU lacks it. */
const lb_kernel_set *lb_kernels_avx2(void);
/* The AVX2 set with AVX-512 (F, BW, VL, VNNI) kernels where they are faster,
 * or NULL when the CPU lacks any of those. */
const lb_kernel_set *lb_kernels_avx512(void);
/* The WebAssembly SIMD128 set, or NULL unless built with -msimd128. */
const lb_kernel_set *lb_kernels_wasm(void);
/* The Arm NEON set (AArch64), or NULL on other targets. */
const lb_kernel_set *lb_kernels_neon(void);
/* NEON with the Armv8.2 dot-product extension (SDOT), or NULL where absent. */
const lb_kernel_set *lb_kernels_neon_dotprod(void);
/* Every SIMD set this build can run on this CPU (never the scalar one):
 * stores up to max of them in out and returns how many.  The kernel tests
 * compare each with the scalar references. */
int lb_kernels_variants(const lb_kernel_set **out, int max);

/* CPU features, detected once. */
typedef struct lb_cpu_features {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni;
    bool avx512vbmi, avx512bitalg, gfni;   /* VPERMB/VPMULTISHIFTQB, VPOPCNTB, GF2P8AFFINEQB (LBQV kernels) */
    bool neon_dotprod;   /* AArch64 SDOT/UDOT (Linux and Android report it in AT_HWCAP) */
} lb_cpu_features;
const lb_cpu_features *lb_cpu(void);

/* Per-ISA registration: each overrides the entries it implements. */
void lb__kernels_register_avx2_float(lb_kernel_set *k);  /* F32 F16 BF16 */
void lb__kernels_register_avx2_q32(lb_kernel_set *k);    /* Q4_0 Q4_1 Q5_0 Q5_1 Q8_0, A8_32 */
void lb__kernels_register_avx2_k(lb_kernel_set *k);      /* Q2_K..Q6_K, A8_K */
void lb__kernels_register_avx2_gemm(lb_kernel_set *k);   /* vec_dot8 of Q4_K Q6_K, gemm8 of Q4_0 */
void lb__kernels_register_avx2_lbq(lb_kernel_set *k);    /* LBQ2 LBQ3 LBQ4, A8_H */
void lb__kernels_register_avx2_lbqv(lb_kernel_set *k);   /* LBQV */
/* AVX-512 VNNI (kernels/x86/avx512_*.c), on top of the AVX2 set. */
void lb__kernels_register_avx512_q32(lb_kernel_set *k);  /* Q4_0 Q8_0 */
void lb__kernels_register_avx512_k(lb_kernel_set *k);    /* Q2_K Q3_K Q4_K Q6_K */
void lb__kernels_register_avx512_lbq(lb_kernel_set *k);  /* LBQ2 LBQ3 LBQ4 */
void lb__kernels_register_avx512_gemm(lb_kernel_set *k); /* gemm8 of Q4_0 Q4_K Q6_K */
void lb__kernels_register_avx512_lbqv(lb_kernel_set *k); /* LBQV; needs VBMI, BITALG, GFNI too */
/* WebAssembly SIMD128 (kernels/wasm/) and Arm NEON (kernels/arm/), same split. */
void lb__kernels_register_wasm_float(lb_kernel_set *k);
void lb__kernels_register_wasm_q32(lb_kernel_set *k);
void lb__kernels_register_wasm_k(lb_kernel_set *k);
void lb__kernels_register_wasm_lbq(lb_kernel_set *k);   /* LBQ2 LBQ3 LBQ4, A8_H (after _wasm_k) */
void lb__kernels_register_wasm_lbqv(lb_kernel_set *k);  /* LBQV (kernels/wasm/wasm_lbqv.c) */
void lb__fmath_register_wasm(lb_fmath *f);
void lb__kvq_register_wasm(lb_kvq_kernels *k);
void lb__kernels_register_neon_float(lb_kernel_set *k);
void lb__kernels_register_neon_q32(lb_kernel_set *k);
void lb__kernels_register_neon_k(lb_kernel_set *k);
void lb__kernels_register_neon_lbq(lb_kernel_set *k);           /* LBQ2 LBQ3 LBQ4, A8_H (after _neon_k) */
void lb__kernels_register_neon_dotprod_q32(lb_kernel_set *k);   /* kernels/arm/neon_*_dotprod.c */
void lb__kernels_register_neon_dotprod_k(lb_kernel_set *k);
void lb__kernels_register_neon_dotprod_lbq(lb_kernel_set *k);
void lb__fmath_register_neon(lb_fmath *f);
void lb__kvq_register_neon(lb_kvq_kernels *k);

#endif
