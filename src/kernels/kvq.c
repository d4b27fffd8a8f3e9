/* Scalar references of the quantized-KV kernels (kvq.h): packing, the
 * row quantizer, key-group scoring and value accumulation, plus the
 * run-time choice of the AVX2 variants. */
#include "kvq.h"

#include <math.h>
#include <string.h>

#include "kernels.h"

void lb_kvq_pack_row(int bits, const uint8_t *c, uint8_t *p)
{
    switch (bits) {
    case 8: memcpy(p, c, 64); break;
    case 4:
        for (int j = 0; j < 32; j++)
            p[j] = (uint8_t)(c[j] | c[j + 32] << 4);
        break;
    case 2:
    case 3:
        for (int j = 0; j < 16; j++)
            p[j] = (uint8_t)((c[j] & 3) | (c[j + 16] & 3) << 2 | (c[j + 32] & 3) << 4 | (c[j + 48] & 3) << 6);
        if (bits == 3) {
            memset(p + 16, 0, 8);
            for (int i = 0; i < 64; i++)
                p[16 + i / 8] |= (uint8_t)(((c[i] >> 2) & 1) << (i % 8));
        }
        break;
    }
}

void lb_kvq_unpack_row(int bits, const uint8_t *p, uint8_t *c)
{
    switch (bits) {
    case 8: memcpy(c, p, 64); break;
    case 4:
        for (int j = 0; j < 32; j++) {
            c[j] = p[j] & 15;
            c[j + 32] = p[j] >> 4;
        }
        break;
    case 2:
    case 3:
        for (int j = 0; j < 16; j++)
            for (int k = 0; k < 4; k++)
                c[j + 16 * k] = (p[j] >> (2 * k)) & 3;
        if (bits == 3)
            for (int i = 0; i < 64; i++)
                c[i] |= (uint8_t)(((p[16 + i / 8] >> (i % 8)) & 1) << 2);
        break;
    }
}

void lb_kvq_dequantize_row(int bits, const uint8_t *packed, lb_f16 scale, lb_f16 min, float *x)
{
    uint8_t c[64];
    lb_kvq_unpack_row(bits, packed, c);
    const float d = lb_f16_to_f32(scale), m = lb_f16_to_f32(min);
    for (int i = 0; i < 64; i++)
        x[i] = m + d * (float)c[i];
}

/* Codes for x with the given (already f16-rounded) scale and min; returns the squared error. */
static double quantize_with(int bits, int n, const float *x, float d, float m, uint8_t *c)
{
    const int top = (1 << bits) - 1;
    const float inv = d > 0 ? 1.0f / d : 0.0f;
    double err = 0;
    for (int i = 0; i < n; i++) {
        int q = (int)lrintf((x[i] - m) * inv);
        q = q < 0 ? 0 : q > top ? top : q;
        c[i] = (uint8_t)q;
        double e = (double)(m + d * (float)q) - x[i];
        err += e * e;
    }
    return err;
}

void lb_kvq_quantize_row(int bits, int n, const float *x, uint8_t *packed, lb_f16 *scale, lb_f16 *min)
{
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    const int top = (1 << bits) - 1;
    const float mid = 0.5f * (lo + hi), half = 0.5f * (hi - lo);
    /* Shrink factors tried: at 8 bits the full range is always best. */
    const int n_try = bits >= 8 ? 1 : 12;
    uint8_t best_c[128], c[128];
    double best = INFINITY;
    lb_f16 best_d = 0, best_m = 0;
    for (int k = 0; k < n_try; k++) {
        float a = 1.0f - 0.05f * (float)k;
        lb_f16 m16 = lb_f32_to_f16(mid - a * half);
        lb_f16 d16 = lb_f32_to_f16(2.0f * a * half / (float)top);
        double e = quantize_with(bits, n, x, lb_f16_to_f32(d16), lb_f16_to_f32(m16), c);
        if (e < best) {
            best = e;
            best_d = d16;
            best_m = m16;
            memcpy(best_c, c, (size_t)n);
        }
    }
    /* Then refit scale and min to the chosen codes by least squares and
     * re-choose the codes, while that helps (a few rounds at most). */
    for (int it = 0; it < 4 && bits < 8; it++) {
        double sc = 0, scc = 0, sx = 0, sxc = 0;
        for (int i = 0; i < n; i++) {
            sc += best_c[i];
            scc += (double)best_c[i] * best_c[i];
            sx += x[i];
            sxc += (double)x[i] * best_c[i];
        }
        double det = n * scc - sc * sc;
        if (det <= 0)
            break;
        double d = (n * sxc - sc * sx) / det, m = (sx - d * sc) / n;
        lb_f16 d16 = lb_f32_to_f16((float)d), m16 = lb_f32_to_f16((float)m);
        if (d <= 0)
            break;
        double e = quantize_with(bits, n, x, lb_f16_to_f32(d16), lb_f16_to_f32(m16), c);
        if (!(e < best))
            break;
        best = e;
        best_d = d16;
        best_m = m16;
        memcpy(best_c, c, (size_t)n);
    }
    for (int r = 0; r < n / 64; r++)
        lb_kvq_pack_row(bits, best_c + 64 * r, packed + (size_t)r * lb_kvq_row_bytes(bits));
    *scale = best_d;
    *min = best_m;
}

static void k_scores_ref(int bits, int dim, const uint8_t *codes, size_t stride, const lb_f16 *scale,
                         const lb_f16 *min, const float *q, float *s)
{
    float c0 = 0;
    for (int t = 0; t < 64; t++)
        s[t] = 0;
    uint8_t c[64];
    for (int d = 0; d < dim; d++) {
        c0 += q[d] * lb_f16_to_f32(min[d]);
        const float qs = q[d] * lb_f16_to_f32(scale[d]);
        lb_kvq_unpack_row(bits, codes + (size_t)d * stride, c);
        for (int t = 0; t < 64; t++)
            s[t] += qs * (float)c[t];
    }
    for (int t = 0; t < 64; t++)
        s[t] += c0;
}

static void v_accum_ref(int bits, int n, const uint8_t *rows, size_t stride, const float *p, float *out)
{
    const int rb = lb_kvq_row_bytes(bits);
    float c0 = 0;
    uint8_t c[64];
    for (int t = 0; t < n; t++) {
        const uint8_t *r = rows + (size_t)t * stride;
        lb_f16 d16, m16;
        memcpy(&d16, r + rb, 2);
        memcpy(&m16, r + rb + 2, 2);
        c0 += p[t] * lb_f16_to_f32(m16);
        const float a = p[t] * lb_f16_to_f32(d16);
        lb_kvq_unpack_row(bits, r, c);
        for (int i = 0; i < 64; i++)
            out[i] += a * (float)c[i];
    }
    for (int i = 0; i < 64; i++)
        out[i] += c0;
}

static void k_scores_n_ref(int bits, int dim, const uint8_t *codes, size_t stride, const lb_f16 *scale,
                           const lb_f16 *min, const float *q, size_t q_stride, int nq, float *s, size_t s_stride)
{
    for (int g = 0; g < nq; g++)
        k_scores_ref(bits, dim, codes, stride, scale, min, q + (size_t)g * q_stride, s + (size_t)g * s_stride);
}

static void v_accum_n_ref(int bits, int n, const uint8_t *rows, size_t stride, const float *p, size_t p_stride,
                          int nq, float *out, size_t out_stride)
{
    for (int g = 0; g < nq; g++)
        v_accum_ref(bits, n, rows, stride, p + (size_t)g * p_stride, out + (size_t)g * out_stride);
}

const lb_kvq_kernels lb__kvq_ref = {"scalar", k_scores_ref, v_accum_ref, k_scores_n_ref, v_accum_n_ref};

/* The views below read the one kernel dispatch table (kernels/dispatch.c). */
const lb_kvq_kernels *lb_kvq_scalar(void) { return &lb_kernels_scalar()->kvq; }

const lb_kvq_kernels *lb_kvq_avx2(void)
{
    const lb_kernel_set *k = lb_kernels_avx2();
    return k ? &k->kvq : NULL;
}

const lb_kvq_kernels *lb_kvq_get(void) { return &lb_kernels()->kvq; }
