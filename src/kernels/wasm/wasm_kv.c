/* WebAssembly SIMD128 variants of the quantized-KV kernels (kernels/kvq.h):
 * the 64 codes of a row are unpacked into four vectors of 16 bytes with
 * shifts and masks, widened to floats four at a time and accumulated with
 * multiply and add (WebAssembly has no fused multiply-add) in sixteen
 * vectors.  Float sums are ordered differently from the scalar reference
 * (the tests allow for it). */
#include "kernels/kernels.h"

#if defined(__wasm_simd128__)
#include <string.h>
#include <wasm_simd128.h>

/* Codes 16k .. 16k+15 into c[k], one byte each. */
static inline void unpack(int bits, const uint8_t *p, v128_t c[4])
{
    if (bits == 8) {
        for (int k = 0; k < 4; k++)
            c[k] = wasm_v128_load(p + 16 * k);
        return;
    }
    if (bits == 4) {
        v128_t x0 = wasm_v128_load(p), x1 = wasm_v128_load(p + 16), m4 = wasm_i8x16_splat(15);
        c[0] = wasm_v128_and(x0, m4);
        c[1] = wasm_v128_and(x1, m4);
        c[2] = wasm_u8x16_shr(x0, 4);
        c[3] = wasm_u8x16_shr(x1, 4);
        return;
    }
    const v128_t m2 = wasm_i8x16_splat(3);
    v128_t x = wasm_v128_load(p);
    c[0] = wasm_v128_and(x, m2);
    c[1] = wasm_v128_and(wasm_u8x16_shr(x, 2), m2);
    c[2] = wasm_v128_and(wasm_u8x16_shr(x, 4), m2);
    c[3] = wasm_u8x16_shr(x, 6);
    if (bits == 3) {
        /* byte i of c[k] takes bit (16k + i) % 8 of high byte (16k + i) / 8 */
        const v128_t sel = wasm_i8x16_const(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        const v128_t bit = wasm_i8x16_const(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
        const v128_t four = wasm_i8x16_splat(4);
        for (int k = 0; k < 4; k++) {
            v128_t hb = wasm_i8x16_swizzle(wasm_i16x8_splat((int16_t)(p[16 + 2 * k] | p[17 + 2 * k] << 8)), sel);
            c[k] = wasm_v128_or(c[k], wasm_v128_and(wasm_i8x16_eq(wasm_v128_and(hb, bit), bit), four));
        }
    }
}

/* acc[4k .. 4k+3] += w * (the 16 codes of c[k] as floats). */
static inline void mac64(v128_t acc[16], const v128_t c[4], v128_t w)
{
    for (int k = 0; k < 4; k++) {
        v128_t lo = wasm_u16x8_extend_low_u8x16(c[k]), hi = wasm_u16x8_extend_high_u8x16(c[k]);
        v128_t f[4] = {
            wasm_f32x4_convert_i32x4(wasm_u32x4_extend_low_u16x8(lo)),
            wasm_f32x4_convert_i32x4(wasm_u32x4_extend_high_u16x8(lo)),
            wasm_f32x4_convert_i32x4(wasm_u32x4_extend_low_u16x8(hi)),
            wasm_f32x4_convert_i32x4(wasm_u32x4_extend_high_u16x8(hi)),
        };
        for (int j = 0; j < 4; j++)
            acc[4 * k + j] = wasm_f32x4_add(acc[4 * k + j], wasm_f32x4_mul(w, f[j]));
    }
}

static void k_scores_wasm(int bits, int dim, const uint8_t *codes, size_t stride, const lb_f16 *scale,
                          const lb_f16 *min, const float *q, float *s)
{
    v128_t acc[16];   /* [64 tokens / 4] */
    for (int k = 0; k < 16; k++)
        acc[k] = wasm_f32x4_splat(0);
    float c0 = 0;
    for (int d = 0; d < dim; d++) {
        c0 += q[d] * lb_f16_to_f32(min[d]);
        v128_t c[4];
        unpack(bits, codes + (size_t)d * stride, c);
        mac64(acc, c, wasm_f32x4_splat(q[d] * lb_f16_to_f32(scale[d])));
    }
    const v128_t cb = wasm_f32x4_splat(c0);
    for (int k = 0; k < 16; k++)
        wasm_v128_store(s + 4 * k, wasm_f32x4_add(acc[k], cb));
}

static void v_accum_wasm(int bits, int n, const uint8_t *rows, size_t stride, const float *p, float *out)
{
    const int rb = lb_kvq_row_bytes(bits);
    v128_t acc[16];   /* [64 channels / 4] */
    for (int k = 0; k < 16; k++)
        acc[k] = wasm_v128_load(out + 4 * k);
    float c0 = 0;
    for (int t = 0; t < n; t++) {
        const uint8_t *r = rows + (size_t)t * stride;
        lb_f16 d16, m16;
        memcpy(&d16, r + rb, 2);
        memcpy(&m16, r + rb + 2, 2);
        c0 += p[t] * lb_f16_to_f32(m16);
        v128_t c[4];
        unpack(bits, r, c);
        mac64(acc, c, wasm_f32x4_splat(p[t] * lb_f16_to_f32(d16)));
    }
    const v128_t cb = wasm_f32x4_splat(c0);
    for (int k = 0; k < 16; k++)
        wasm_v128_store(out + 4 * k, wasm_f32x4_add(acc[k], cb));
}

/* Grouped-query heads: one call per head (the codes are unpacked again
 * for each; cheap next to the float work here). */
static void k_scores_n_wasm(int bits, int dim, const uint8_t *codes, size_t stride, const lb_f16 *scale,
                            const lb_f16 *min, const float *q, size_t q_stride, int nq, float *s, size_t s_stride)
{
    for (int g = 0; g < nq; g++)
        k_scores_wasm(bits, dim, codes, stride, scale, min, q + (size_t)g * q_stride, s + (size_t)g * s_stride);
}

static void v_accum_n_wasm(int bits, int n, const uint8_t *rows, size_t stride, const float *p, size_t p_stride,
                           int nq, float *out, size_t out_stride)
{
    for (int g = 0; g < nq; g++)
        v_accum_wasm(bits, n, rows, stride, p + (size_t)g * p_stride, out + (size_t)g * out_stride);
}

void lb__kvq_register_wasm(lb_kvq_kernels *k)
{
    k->k_scores = k_scores_wasm;
    k->v_accum = v_accum_wasm;
    k->k_scores_n = k_scores_n_wasm;
    k->v_accum_n = v_accum_n_wasm;
}
#endif
