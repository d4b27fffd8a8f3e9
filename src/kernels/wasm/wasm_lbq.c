/* WebAssembly SIMD128 kernels for lowbit's LBQ2/LBQ3 weights: dot products
 * against A8_H and the A8_H activation quantizer, with the bits of the scalar
 * reference in quant/lbq.c (exact integer sums, then the reference's float
 * combination per block). */
#include "kernels/kernels.h"

#if defined(__wasm_simd128__)
#include <string.h>
#include <wasm_simd128.h>

#include "base/fp16.h"
#include "quant/lbq.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static inline v128_t ld(const void *p) { return wasm_v128_load(p); }

static inline int32_t hsum_i32(v128_t v)
{
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
}

/* Group scale sc_g + 1 (4 bits each). */
static inline int group_scale(const uint8_t *scales, int g) { return ((scales[g / 2] >> (4 * (g % 2))) & 0xF) + 1; }

/* sum_g sc_g * sum(a of group g), from the activation's 16-element partial sums. */
static inline int32_t scaled_asum(const uint8_t *scales, const int16_t *bsums)
{
    int32_t s = 0;
    for (int g = 0; g < 8; g++)
        s += group_scale(scales, g) * (bsums[2 * g] + bsums[2 * g + 1]);
    return s;
}

/* The 2-bit fields at bit sh of the even and odd bytes of 16 bytes qs, times
 * the even and odd activations of a, as 8 16-bit lanes of pair sums. */
static inline v128_t pair_dot_2bit(v128_t qs, int sh, v128_t a)
{
    const v128_t m3 = wasm_i16x8_splat(3);
    v128_t qe = wasm_v128_and(wasm_u16x8_shr(qs, sh), m3), qo = wasm_v128_and(wasm_u16x8_shr(qs, sh + 8), m3);
    v128_t ae = wasm_i16x8_shr(wasm_i16x8_shl(a, 8), 8), ao = wasm_i16x8_shr(a, 8);
    return wasm_i16x8_add(wasm_i16x8_mul(qe, ae), wasm_i16x8_mul(qo, ao));
}

static void dot_lbq2(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbq2 *b = w;
    const lb_block_a8_K *a = act;
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        v128_t sum = wasm_i32x4_splat(0);
        /* h rolled (unrolled, clang hoists all loads and V8 spills them); j
         * unrolled so that the shift counts are constants */
#if defined(__clang__)
#pragma clang loop unroll(disable)
#endif
        for (int h = 0; h < 2; h++) {
            v128_t q0 = ld(b[i].qs + 32 * h), q1 = ld(b[i].qs + 32 * h + 16);
            for (int j = 0; j < 4; j++) {
                /* element 32g + l: bits 2j of qs[32h + l], g = 4h + j */
                int g = 4 * h + j;
                const int8_t *ag = a[i].qs + 32 * g;
                v128_t p = wasm_i16x8_add(pair_dot_2bit(q0, 2 * j, ld(ag)), pair_dot_2bit(q1, 2 * j, ld(ag + 16)));
                sum = wasm_i32x4_add(sum, wasm_i32x4_dot_i16x8(p, wasm_i16x8_splat((int16_t)group_scale(b[i].scales, g))));
            }
        }
        int32_t isum = 2 * hsum_i32(sum) - 3 * scaled_asum(b[i].scales, a[i].bsums);
        float dd = a[i].d * lb_f16_to_f32(b[i].d);
        acc = acc + dd * (float)isum;
    }
    *s = acc;
}

/* As pair_dot_2bit with bit 2 of each quant from bit g of the bytes of hm. */
static inline v128_t pair_dot_3bit(v128_t qs, v128_t hm, int sh, int g, v128_t a)
{
    const v128_t m3 = wasm_i16x8_splat(3), m4 = wasm_i16x8_splat(4);
    v128_t he = g >= 2 ? wasm_u16x8_shr(hm, g - 2) : wasm_i16x8_shl(hm, 2 - g);
    v128_t qe = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(qs, sh), m3), wasm_v128_and(he, m4));
    v128_t qo = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(qs, sh + 8), m3), wasm_v128_and(wasm_u16x8_shr(hm, g + 6), m4));
    v128_t ae = wasm_i16x8_shr(wasm_i16x8_shl(a, 8), 8), ao = wasm_i16x8_shr(a, 8);
    return wasm_i16x8_add(wasm_i16x8_mul(qe, ae), wasm_i16x8_mul(qo, ao));
}

static void dot_lbq3(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_lbq3 *b = w;
    const lb_block_a8_K *a = act;
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        v128_t sum = wasm_i32x4_splat(0);
        v128_t hm0 = ld(b[i].hmask), hm1 = ld(b[i].hmask + 16);
        /* h rolled, j unrolled: as in dot_lbq2 */
#if defined(__clang__)
#pragma clang loop unroll(disable)
#endif
        for (int h = 0; h < 2; h++) {
            v128_t q0 = ld(b[i].qs + 32 * h), q1 = ld(b[i].qs + 32 * h + 16);
            for (int j = 0; j < 4; j++) {
                /* element 32g + l: bits 2j of qs[32h + l], bit g of hmask[l], g = 4h + j */
                int g = 4 * h + j;
                const int8_t *ag = a[i].qs + 32 * g;
                v128_t p = wasm_i16x8_add(pair_dot_3bit(q0, hm0, 2 * j, g, ld(ag)),
                                          pair_dot_3bit(q1, hm1, 2 * j, g, ld(ag + 16)));   /* |p| <= 3584 */
                sum = wasm_i32x4_add(sum, wasm_i32x4_dot_i16x8(p, wasm_i16x8_splat((int16_t)group_scale(b[i].scales, g))));
            }
        }
        int32_t isum = 2 * hsum_i32(sum) - 7 * scaled_asum(b[i].scales, a[i].bsums);
        float dd = a[i].d * lb_f16_to_f32(b[i].d);
        acc = acc + dd * (float)isum;
    }
    *s = acc;
}

/* The A8_K quantizer of this kernel set, taken at registration. */
static lb_quant_fn a8_K_fast;

/* Rotation in the shared scalar code (one float sequence for every ISA), then
 * this set's A8_K quantizer. */
static void quant_a8_H(const float *src, void *dst, int64_t n)
{
    float x[LB_QK_K]; /* [256] one rotated block */
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        memcpy(x, src + i * LB_QK_K, sizeof x);
        lb__lbq_rotate(x);
        a8_K_fast(x, (lb_block_a8_K *)dst + i, LB_QK_K);
    }
}

/* Call after lb__kernels_register_wasm_k: the A8_H quantizer reuses its A8_K one. */
void lb__kernels_register_wasm_lbq(lb_kernel_set *k)
{
    a8_K_fast = k->quantize[LB_TYPE_A8_K];
    k->vec_dot[LB_TYPE_LBQ2] = dot_lbq2;
    k->vec_dot[LB_TYPE_LBQ3] = dot_lbq3;
    k->quantize[LB_TYPE_A8_H] = quant_a8_H;
}
#endif
