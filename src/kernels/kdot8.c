/* Scalar references of the 8-lane Q4_K / Q6_K dot products (kdot8.h). */
#include "kdot8.h"

#include <math.h>

#include "base/fp16.h"
#include "quant/blocks.h"

/* acc reduced as in kdot8.h: (hi4 + lo4), then (0+2) + (1+3). */
static float hsum8(const float acc[8])
{
    float r[4];
    for (int i = 0; i < 4; i++)
        r[i] = acc[i + 4] + acc[i];
    return (r[0] + r[2]) + (r[1] + r[3]);
}

/* Scale and min of Q4_K sub-block s from the 12 packed bytes (6 bits each). */
static void q4_K_scale_min(const uint8_t *p, int s, int *scale, int *min)
{
    if (s < 4) {
        *scale = p[s] & 63;
        *min = p[s + 4] & 63;
    } else {
        *scale = (p[s + 4] & 0xF) | ((p[s - 4] >> 6) << 4);
        *min = (p[s + 4] >> 4) | ((p[s] >> 6) << 4);
    }
}

static void dot_q4_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q4_K *b = w;
    const lb_block_a8_K *a = act;
    float acc[8] = {0}, accm[4] = {0};
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        int sc[8], mn[8];
        for (int j = 0; j < 8; j++)
            q4_K_scale_min(b[i].scales, j, &sc[j], &mn[j]);
        int32_t lane[8] = {0};
        /* element e = 64c + 32h + l: nibble h of qs[32c + l] */
        for (int e = 0; e < LB_QK_K; e++) {
            int c = e / 64, h = (e % 64) / 32, l = e % 32;
            int q = (b[i].qs[32 * c + l] >> (4 * h)) & 0xF;
            lane[l / 4] += sc[e / 32] * q * a[i].qs[e];
        }
        float d = a[i].d * lb_f16_to_f32(b[i].d);
        float dmin = -a[i].d * lb_f16_to_f32(b[i].dmin);
        for (int k = 0; k < 8; k++)
            acc[k] = fmaf(d, (float)lane[k], acc[k]);
        const int16_t *bs = a[i].bsums;   /* sub-block j's activation sum is bs[2j] + bs[2j+1] */
        for (int r = 0; r < 4; r++) {
            int32_t m = mn[2 * r] * (bs[4 * r] + bs[4 * r + 1]) + mn[2 * r + 1] * (bs[4 * r + 2] + bs[4 * r + 3]);
            accm[r] = fmaf(dmin, (float)m, accm[r]);
        }
    }
    *s = hsum8(acc) + ((accm[0] + accm[2]) + (accm[1] + accm[3]));
}

static void dot_q6_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q6_K *b = w;
    const lb_block_a8_K *a = act;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        int32_t lane[8] = {0};
        /* element e = 128h + 32k + l: low 4 bits in nibble k/2 of
         * ql[64h + 32(k%2) + l], high 2 bits at bit 2k of qh[32h + l], +32 */
        for (int e = 0; e < LB_QK_K; e++) {
            int h = e / 128, k = (e % 128) / 32, l = e % 32;
            int lo = (b[i].ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0xF;
            int hi = (b[i].qh[32 * h + l] >> (2 * k)) & 3;
            lane[l / 4] += b[i].scales[e / 16] * ((lo | (hi << 4)) - 32) * a[i].qs[e];
        }
        float d = a[i].d * lb_f16_to_f32(b[i].d);
        for (int k = 0; k < 8; k++)
            acc[k] = fmaf(d, (float)lane[k], acc[k]);
    }
    *s = hsum8(acc);
}

void lb__kdot8_register_ref(lb_kernel_set *k)
{
    k->vec_dot[LB_TYPE_Q4_K] = dot_q4_K;
    k->vec_dot[LB_TYPE_Q6_K] = dot_q6_K;
}
