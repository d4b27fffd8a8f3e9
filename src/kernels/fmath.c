/* Scalar references of the fixed-rounding float kernels (fmath.h) and the
 * choice of the variant for this CPU. */
#include "fmath.h"

#include <math.h>

#include "kernels.h"

/* The lane reduction of dot16: v[l] + v[l+8], then + the upper 4, then
 * (0+2) + (1+3). */
static float reduce16(const float v[16])
{
    float t8[8], t4[4];
    for (int i = 0; i < 8; i++)
        t8[i] = v[i + 8] + v[i];
    for (int i = 0; i < 4; i++)
        t4[i] = t8[i + 4] + t8[i];
    return (t4[0] + t4[2]) + (t4[1] + t4[3]);
}

/* The product of two f16 values is exact in float (22 significant bits), so
 * `acc + a * b` rounds once, exactly as a fused multiply-add would. */
static float dot16_ref(int64_t n, const lb_f16 *a, const lb_f16 *b)
{
    float lane[16] = {0};
    for (int64_t i = 0; i < n; i++)
        lane[i % 16] += lb_f16_to_f32(a[i]) * lb_f16_to_f32(b[i]);
    return reduce16(lane);
}

static float dot64_ref(int64_t n, int64_t n_vec, const lb_f16 *a, const lb_f16 *b)
{
    float lane[64] = {0};   /* [4 vectors][16 lanes] */
    int64_t nv = n_vec < n ? n_vec : n;
    for (int64_t i = 0; i < nv; i++)
        lane[i % 64] += lb_f16_to_f32(a[i]) * lb_f16_to_f32(b[i]);
    float v[16];
    for (int l = 0; l < 16; l++)
        v[l] = (lane[l] + lane[32 + l]) + (lane[16 + l] + lane[48 + l]);
    double sum = reduce16(v);
    for (int64_t i = n_vec; i < n; i++)
        sum += (double)(lb_f16_to_f32(a[i]) * lb_f16_to_f32(b[i]));
    return (float)sum;
}

/* 2^k for -126 <= k <= 127. */
static float pow2i(int k) { return lb__bits_f32((uint32_t)(k + 127) << 23); }

float lb_expf(float x)
{
    const float shift = 0x1.8p23f, inv_ln2 = 0x1.715476p+0f;
    const float ln2_hi = 0x1.62e4p-1f, ln2_lo = 0x1.7f7d1cp-20f;
    const float c1 = 0x1.ffffecp-1f, c2 = 0x1.fffdb6p-2f, c3 = 0x1.555e66p-3f;
    const float c4 = 0x1.573e2ep-5f, c5 = 0x1.0e4020p-7f;
    float z = fmaf(x, inv_ln2, shift);
    float n = z - shift;   /* x / ln2 rounded to an integer */
    if (isnan(n))
        return n;
    if (fabsf(n) > 192.0f)
        return n > 0 ? INFINITY : 0.0f;
    float r = fmaf(-n, ln2_lo, fmaf(-n, ln2_hi, x));
    float r2 = r * r;
    float p = fmaf(fmaf(fmaf(c5, r, c4), r2, fmaf(c3, r, c2)), r2, fmaf(c1, r, 1.0f));
    /* p * 2^n rounded once: the first factor 2^(n/2) keeps p*2^(n/2) a normal
     * number (p is near 1), so only the second multiplication rounds, which
     * also makes subnormal results correctly rounded. */
    int k = (int)n, k1 = k / 2;
    return p * pow2i(k1) * pow2i(k - k1);
}

static double exp_sum_ref(int64_t n, float *y, const float *x, float max)
{
    double sum = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
        float v[16] = {0};
        for (int64_t i = i0; i < n && i < i0 + 16; i++)
            v[i - i0] = y[i] = lb_expf(x[i] - max);
        sum += (double)reduce16(v);
    }
    return sum;
}

static void silu_mul_ref(int64_t n, float *g, const float *u)
{
    for (int64_t i = 0; i < n; i++) {
        float s = g[i] / (1.0f + lb_expf(0.0f - g[i]));
        g[i] = s * u[i];
    }
}

static void to_f16_ref(int64_t n, const float *x, lb_f16 *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = lb_f32_to_f16(x[i]);
}

static void rope_norm_ref(float *x, int n_heads, int head_dim, int n_rot, const float *cs)
{
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < n_rot / 2; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = fmaf(a, c, -(b * s));
            v[2 * i + 1] = fmaf(a, s, b * c);
        }
    }
}

static void rope_neox_ref(float *x, int n_heads, int head_dim, int n_rot, const float *cs)
{
    int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = v[i], b = v[i + half];
            v[i] = fmaf(a, c, -(b * s));
            v[i + half] = fmaf(a, s, b * c);
        }
    }
}

static void scale_mul_ref(int64_t n, float *out, const float *x, float scale, const float *w)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * scale * w[i];
}

static void add_ref(int64_t n, float *y, const float *x)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

const lb_fmath lb__fmath_ref = {"scalar",      dot16_ref,     dot64_ref, exp_sum_ref, silu_mul_ref,  to_f16_ref,
                                NULL,          NULL,          NULL,          rope_norm_ref, rope_neox_ref,
                                scale_mul_ref, add_ref};

float lb_max_f32(int64_t n, const float *x)
{
    float m[8];
    for (int k = 0; k < 8; k++)
        m[k] = -INFINITY;
    int64_t p = 0;
    for (; p + 8 <= n; p += 8)
        for (int k = 0; k < 8; k++)
            m[k] = x[p + k] > m[k] ? x[p + k] : m[k];
    for (; p < n; p++)
        m[0] = x[p] > m[0] ? x[p] : m[0];
    float mx = m[0];
    for (int k = 1; k < 8; k++)
        mx = m[k] > mx ? m[k] : mx;
    return mx;
}

void lb_softmax(const lb_fmath *fm, int64_t n, float *s)
{
    const float inv = (float)(1.0 / fm->exp_sum(n, s, s, lb_max_f32(n, s)));
    for (int64_t p = 0; p < n; p++)
        s[p] *= inv;
}

/* The views below read the one kernel dispatch table (kernels/dispatch.c). */
const lb_fmath *lb_fmath_scalar(void) { return &lb_kernels_scalar()->fmath; }

const lb_fmath *lb_fmath_avx2(void)
{
    const lb_kernel_set *k = lb_kernels_avx2();
    return k ? &k->fmath : NULL;
}

const lb_fmath *lb_fmath_get(void) { return &lb_kernels()->fmath; }
