/* Arm NEON (AArch64) variants of the quantized-KV kernels (kernels/kvq.h):
 * the 64 codes of a row are unpacked into four vectors of 16 bytes with
 * shifts and masks, widened to floats four at a time and used in fused
 * multiply-adds that keep the 64 running sums in sixteen registers.  Float
 * sums are ordered differently from the scalar reference (the tests allow
 * for it). */
#include "kernels/kernels.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#include <string.h>

/* Codes 16k .. 16k+15 into c[k], one byte each. */
static inline void unpack(int bits, const uint8_t *p, uint8x16_t c[4])
{
    if (bits == 8) {
        for (int k = 0; k < 4; k++)
            c[k] = vld1q_u8(p + 16 * k);
        return;
    }
    if (bits == 4) {
        uint8x16_t x0 = vld1q_u8(p), x1 = vld1q_u8(p + 16), m4 = vdupq_n_u8(15);
        c[0] = vandq_u8(x0, m4);
        c[1] = vandq_u8(x1, m4);
        c[2] = vshrq_n_u8(x0, 4);
        c[3] = vshrq_n_u8(x1, 4);
        return;
    }
    const uint8x16_t m2 = vdupq_n_u8(3);
    uint8x16_t x = vld1q_u8(p);
    c[0] = vandq_u8(x, m2);
    c[1] = vandq_u8(vshrq_n_u8(x, 2), m2);
    c[2] = vandq_u8(vshrq_n_u8(x, 4), m2);
    c[3] = vshrq_n_u8(x, 6);
    if (bits == 3) {
        /* byte i of c[k] takes bit (16k + i) % 8 of high byte (16k + i) / 8 */
        static const uint8_t sel[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
        static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        const uint8x16_t vsel = vld1q_u8(sel), vbit = vld1q_u8(bit), four = vdupq_n_u8(4);
        for (int k = 0; k < 4; k++) {
            uint8x16_t hb = vqtbl1q_u8(vreinterpretq_u8_u16(vdupq_n_u16((uint16_t)(p[16 + 2 * k] | p[17 + 2 * k] << 8))), vsel);
            c[k] = vorrq_u8(c[k], vandq_u8(vtstq_u8(hb, vbit), four));
        }
    }
}

/* acc[4k .. 4k+3] += w * (the 16 codes of c[k] as floats). */
static inline void mac64(float32x4_t acc[16], const uint8x16_t c[4], float32x4_t w)
{
    for (int k = 0; k < 4; k++) {
        uint16x8_t lo = vmovl_u8(vget_low_u8(c[k])), hi = vmovl_high_u8(c[k]);
        acc[4 * k] = vfmaq_f32(acc[4 * k], w, vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))));
        acc[4 * k + 1] = vfmaq_f32(acc[4 * k + 1], w, vcvtq_f32_u32(vmovl_high_u16(lo)));
        acc[4 * k + 2] = vfmaq_f32(acc[4 * k + 2], w, vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))));
        acc[4 * k + 3] = vfmaq_f32(acc[4 * k + 3], w, vcvtq_f32_u32(vmovl_high_u16(hi)));
    }
}

static void k_scores_neon(int bits, int dim, const uint8_t *codes, size_t stride, const lb_f16 *scale,
                          const lb_f16 *min, const float *q, float *s)
{
    float32x4_t acc[16];   /* [64 tokens / 4] */
    for (int k = 0; k < 16; k++)
        acc[k] = vdupq_n_f32(0);
    float c0 = 0;
    for (int d = 0; d < dim; d++) {
        c0 += q[d] * lb_f16_to_f32(min[d]);
        uint8x16_t c[4];
        unpack(bits, codes + (size_t)d * stride, c);
        mac64(acc, c, vdupq_n_f32(q[d] * lb_f16_to_f32(scale[d])));
    }
    const float32x4_t cb = vdupq_n_f32(c0);
    for (int k = 0; k < 16; k++)
        vst1q_f32(s + 4 * k, vaddq_f32(acc[k], cb));
}

static void v_accum_neon(int bits, int n, const uint8_t *rows, size_t stride, const float *p, float *out)
{
    const int rb = lb_kvq_row_bytes(bits);
    float32x4_t acc[16];   /* [64 channels / 4] */
    for (int k = 0; k < 16; k++)
        acc[k] = vld1q_f32(out + 4 * k);
    float c0 = 0;
    for (int t = 0; t < n; t++) {
        const uint8_t *r = rows + (size_t)t * stride;
        lb_f16 d16, m16;
        memcpy(&d16, r + rb, 2);
        memcpy(&m16, r + rb + 2, 2);
        c0 += p[t] * lb_f16_to_f32(m16);
        uint8x16_t c[4];
        unpack(bits, r, c);
        mac64(acc, c, vdupq_n_f32(p[t] * lb_f16_to_f32(d16)));
    }
    const float32x4_t cb = vdupq_n_f32(c0);
    for (int k = 0; k < 16; k++)
        vst1q_f32(out + 4 * k, vaddq_f32(acc[k], cb));
}

/* Grouped-query heads: one call per head (the codes are unpacked again
 * for each; cheap next to the float work here). */
static void k_scores_n_neon(int bits, int dim, const uint8_t *codes, size_t stride, const lb_f16 *scale,
                            const lb_f16 *min, const float *q, size_t q_stride, int nq, float *s, size_t s_stride)
{
    for (int g = 0; g < nq; g++)
        k_scores_neon(bits, dim, codes, stride, scale, min, q + (size_t)g * q_stride, s + (size_t)g * s_stride);
}

static void v_accum_n_neon(int bits, int n, const uint8_t *rows, size_t stride, const float *p, size_t p_stride,
                           int nq, float *out, size_t out_stride)
{
    for (int g = 0; g < nq; g++)
        v_accum_neon(bits, n, rows, stride, p + (size_t)g * p_stride, out + (size_t)g * out_stride);
}

void lb__kvq_register_neon(lb_kvq_kernels *k)
{
    k->k_scores = k_scores_neon;
    k->v_accum = v_accum_neon;
    k->k_scores_n = k_scores_n_neon;
    k->v_accum_n = v_accum_n_neon;
}
#endif
