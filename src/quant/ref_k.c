/* Scalar reference for the K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (bit-compatible
 * with llama.cpp's files) and lowbit's A8_K activations they are dotted with. */
#include "quant.h"

#include <math.h>
#include <string.h>

#include "quant/blocks.h"

/* Bit-exactness between reference and SIMD needs every a*b+c rounded twice,
 * never fused: gcc in ISO C mode does not contract, clang must be told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Every weight block is first unpacked into plain integers by one function
 * per type; dequantize and dot both read only the unpacked form, so the two
 * cannot disagree about where a bit lives.  The SIMD kernels are written
 * independently against the packed bytes and tested against this file. */
typedef struct {
    int8_t q[LB_QK_K];   /* [256] quant of each element, offset already removed where the type is signed */
    int sc[16];          /* [n_sub] scale of each sub-block */
    int m[16];           /* [n_sub] min of each sub-block (types with a min only) */
} unpacked_k;

/* ---- unpacking, one function per type */

/* Q2_K: 16 sub-blocks of 16.  Element e = 128n + 32j + l sits in bits 2j..2j+1
 * of qs[32n + l]; scales[s] holds the scale in its low and the min in its high nibble. */
static void unpack_q2_K(const lb_block_q2_K *b, unpacked_k *u)
{
    for (int e = 0; e < LB_QK_K; e++) {
        int n = e / 128, j = (e % 128) / 32, l = e % 32;
        u->q[e] = (int8_t)((b->qs[32 * n + l] >> (2 * j)) & 3);
    }
    for (int s = 0; s < 16; s++) {
        u->sc[s] = b->scales[s] & 0xF;
        u->m[s] = b->scales[s] >> 4;
    }
}

/* The 6-bit scale s (0..15) of Q3_K: low 4 bits in a nibble of scales[0..7],
 * high 2 bits in scales[8 + s%4] at bit 2*(s/4); stored with an offset of 32. */
static int q3_K_scale(const uint8_t *sc, int s)
{
    int lo = s < 8 ? sc[s] & 0xF : sc[s - 8] >> 4;
    int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Q3_K: 16 sub-blocks of 16; the low 2 bits are laid out as in Q2_K, the
 * third bit of element e is bit e/32 of hmask[e%32], and a clear bit means
 * "subtract 4", so quants are -4..3. */
static void unpack_q3_K(const lb_block_q3_K *b, unpacked_k *u)
{
    for (int e = 0; e < LB_QK_K; e++) {
        int n = e / 128, j = (e % 128) / 32, l = e % 32;
        int lo = (b->qs[32 * n + l] >> (2 * j)) & 3;
        int hi = (b->hmask[l] >> (e / 32)) & 1;
        u->q[e] = (int8_t)(lo - (hi ? 0 : 4));
    }
    for (int s = 0; s < 16; s++) {
        u->sc[s] = q3_K_scale(b->scales, s);
        u->m[s] = 0;
    }
}

/* The 6-bit scale and min of sub-block s (0..7) of Q4_K/Q5_K: for s < 4 the low
 * 6 bits of bytes s and s+4; for s >= 4 the nibbles of byte s+4 plus the top
 * 2 bits of bytes s-4 (scale) and s (min). */
static void q4_K_scale_min(const uint8_t *sc, int s, int *scale, int *min)
{
    if (s < 4) {
        *scale = sc[s] & 63;
        *min = sc[s + 4] & 63;
    } else {
        *scale = (sc[s + 4] & 0xF) | ((sc[s - 4] >> 6) << 4);
        *min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
    }
}

/* Q4_K: 8 sub-blocks of 32.  Element e = 64c + 32h + l is the low (h = 0) or
 * high (h = 1) nibble of qs[32c + l]. */
static void unpack_q4_K(const lb_block_q4_K *b, unpacked_k *u)
{
    for (int e = 0; e < LB_QK_K; e++) {
        int c = e / 64, h = (e % 64) / 32, l = e % 32;
        u->q[e] = (int8_t)((b->qs[32 * c + l] >> (4 * h)) & 0xF);
    }
    for (int s = 0; s < 8; s++)
        q4_K_scale_min(b->scales, s, &u->sc[s], &u->m[s]);
}

/* Q5_K: Q4_K plus a fifth bit: element e's is bit e/32 of qh[e%32]. */
static void unpack_q5_K(const lb_block_q5_K *b, unpacked_k *u)
{
    for (int e = 0; e < LB_QK_K; e++) {
        int c = e / 64, h = (e % 64) / 32, l = e % 32;
        int lo = (b->qs[32 * c + l] >> (4 * h)) & 0xF;
        int hi = (b->qh[l] >> (e / 32)) & 1;
        u->q[e] = (int8_t)(lo | (hi << 4));
    }
    for (int s = 0; s < 8; s++)
        q4_K_scale_min(b->scales, s, &u->sc[s], &u->m[s]);
}

/* Q6_K: 16 sub-blocks of 16, quants stored +32.  Element e = 128n + 32k + l:
 * low 4 bits in the low (k < 2) or high (k >= 2) nibble of ql[64n + 32(k%2) + l],
 * high 2 bits at bit 2k of qh[32n + l]. */
static void unpack_q6_K(const lb_block_q6_K *b, unpacked_k *u)
{
    for (int e = 0; e < LB_QK_K; e++) {
        int n = e / 128, k = (e % 128) / 32, l = e % 32;
        int lo = (b->ql[64 * n + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0xF;
        int hi = (b->qh[32 * n + l] >> (2 * k)) & 3;
        u->q[e] = (int8_t)((lo | (hi << 4)) - 32);
    }
    for (int s = 0; s < 16; s++) {
        u->sc[s] = b->scales[s];
        u->m[s] = 0;
    }
}

/* ---- dequantize: y = (d * scale) * q - (dmin * min), the float operations
 * in the order llama.cpp uses, so the floats are the same bits */

static void dequant_unpacked(const unpacked_k *u, int sub, float d, float dmin, float *y)
{
    for (int e = 0; e < LB_QK_K; e++) {
        int s = e / sub;
        float dl = d * (float)u->sc[s];
        float ml = dmin * (float)u->m[s];
        y[e] = dl * (float)u->q[e] - ml;
    }
}

static void dequant_q2_K(const void *src, float *dst, int64_t n)
{
    const lb_block_q2_K *b = src;
    unpacked_k u;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        unpack_q2_K(&b[i], &u);
        dequant_unpacked(&u, 16, lb_f16_to_f32(b[i].d), lb_f16_to_f32(b[i].dmin), dst + i * LB_QK_K);
    }
}

static void dequant_q3_K(const void *src, float *dst, int64_t n)
{
    const lb_block_q3_K *b = src;
    unpacked_k u;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        unpack_q3_K(&b[i], &u);
        dequant_unpacked(&u, 16, lb_f16_to_f32(b[i].d), 0.0f, dst + i * LB_QK_K);
    }
}

static void dequant_q4_K(const void *src, float *dst, int64_t n)
{
    const lb_block_q4_K *b = src;
    unpacked_k u;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        unpack_q4_K(&b[i], &u);
        dequant_unpacked(&u, 32, lb_f16_to_f32(b[i].d), lb_f16_to_f32(b[i].dmin), dst + i * LB_QK_K);
    }
}

static void dequant_q5_K(const void *src, float *dst, int64_t n)
{
    const lb_block_q5_K *b = src;
    unpacked_k u;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        unpack_q5_K(&b[i], &u);
        dequant_unpacked(&u, 32, lb_f16_to_f32(b[i].d), lb_f16_to_f32(b[i].dmin), dst + i * LB_QK_K);
    }
}

static void dequant_q6_K(const void *src, float *dst, int64_t n)
{
    const lb_block_q6_K *b = src;
    unpacked_k u;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        unpack_q6_K(&b[i], &u);
        dequant_unpacked(&u, 16, lb_f16_to_f32(b[i].d), 0.0f, dst + i * LB_QK_K);
    }
}

/* ---- dot products against A8_K.
 * The integer part of each super-block is exact (int32 cannot overflow:
 * the largest, Q6_K, is below 16 * 128 * 16 * 32 * 127 < 2^28); only the
 * combination with the float scales rounds:
 *   acc += (d_a * d_w) * isum - (d_a * dmin_w) * msum,
 * super-blocks accumulated in order.  The SIMD kernels do the same float
 * operations and so give the same bits. */

static float combine_k(float acc, float da, float d, float dmin, int32_t isum, int32_t msum)
{
    float dd = da * d;
    float dm = da * dmin;
    return acc + (dd * (float)isum - dm * (float)msum);
}

/* isum = sum over sub-blocks of scale * sum(q * a); msum = sum of min * (sum of a). */
static void int_sums(const unpacked_k *u, int sub, const lb_block_a8_K *a, int32_t *isum, int32_t *msum)
{
    int32_t is = 0, ms = 0;
    for (int s = 0; s < LB_QK_K / sub; s++) {
        int32_t qa = 0, asum = 0;
        for (int e = s * sub; e < (s + 1) * sub; e++)
            qa += (int32_t)u->q[e] * a->qs[e];
        for (int k = s * sub / 16; k < (s + 1) * sub / 16; k++)
            asum += a->bsums[k];
        is += u->sc[s] * qa;
        ms += u->m[s] * asum;
    }
    *isum = is;
    *msum = ms;
}

static void dot_q2_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q2_K *b = w;
    const lb_block_a8_K *a = act;
    unpacked_k u;
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        int32_t isum, msum;
        unpack_q2_K(&b[i], &u);
        int_sums(&u, 16, &a[i], &isum, &msum);
        acc = combine_k(acc, a[i].d, lb_f16_to_f32(b[i].d), lb_f16_to_f32(b[i].dmin), isum, msum);
    }
    *s = acc;
}

static void dot_q3_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q3_K *b = w;
    const lb_block_a8_K *a = act;
    unpacked_k u;
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        int32_t isum, msum;
        unpack_q3_K(&b[i], &u);
        int_sums(&u, 16, &a[i], &isum, &msum);
        acc = combine_k(acc, a[i].d, lb_f16_to_f32(b[i].d), 0.0f, isum, msum);
    }
    *s = acc;
}

/* Q4_K and Q6_K keep their float part in 8 lanes, the order of llama.cpp's
 * AVX2 kernels, so that a Q4_K_M model's matrix products give the same bits
 * as there (int8 activations turn 1-ulp differences into diverging text; see
 * kernels/fmath.h).  Per super-block the exact integer sums are kept in 8
 * lanes, lane k holding the elements e with e mod 32 in 4k..4k+3 (each times
 * its sub-block scale); lane k of the float accumulator becomes
 * fma(d_a * d_w, lane sum, acc[k]).  Q4_K's mins go to 4 more lanes, lane r
 * holding sub-blocks 2r and 2r+1: accm[r] = fma(-d_a * dmin_w, min-weighted
 * activation sums, accm[r]).  At the end acc is reduced as hi4 + lo4, then
 * (0+2) + (1+3); accm as (0+2) + (1+3); the result is acc + accm.  Compared
 * with one float accumulator per row it also rounds less. */
/* acc reduced as described above: (hi4 + lo4), then (0+2) + (1+3). */
static float hsum8(const float acc[8])
{
    float r[4];
    for (int i = 0; i < 4; i++)
        r[i] = acc[i + 4] + acc[i];
    return (r[0] + r[2]) + (r[1] + r[3]);
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

static void dot_q5_K(int64_t n, float *s, const void *w, const void *act)
{
    const lb_block_q5_K *b = w;
    const lb_block_a8_K *a = act;
    unpacked_k u;
    float acc = 0;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        int32_t isum, msum;
        unpack_q5_K(&b[i], &u);
        int_sums(&u, 32, &a[i], &isum, &msum);
        acc = combine_k(acc, a[i].d, lb_f16_to_f32(b[i].d), lb_f16_to_f32(b[i].dmin), isum, msum);
    }
    *s = acc;
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

/* ---- A8_K activations: symmetric, id = 127 / max|x|, q = round-half-even(x * id)
 * clamped to +-127, d = 1 / id.  This gives the same q * d as llama.cpp's
 * Q8_K rule (its sign flip cancels out), because int8 rounding amplifies
 * tiny differences and greedy output on quantized files should agree with
 * the reference engine; _mm256_cvtps_epi32 reproduces it exactly. */
static void quant_a8_K(const float *src, void *dst, int64_t n)
{
    lb_block_a8_K *out = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        const float *x = src + i * LB_QK_K;
        lb_block_a8_K *b = &out[i];
        float amax = 0;
        for (int e = 0; e < LB_QK_K; e++)
            if (fabsf(x[e]) > amax)
                amax = fabsf(x[e]);
        if (amax == 0) {
            memset(b, 0, sizeof *b);
            continue;
        }
        float id = 127.0f / amax;
        b->d = 1.0f / id;
        /* Clamping first (to integers) cannot change the rounded result.
         * Adding and subtracting 1.5 * 2^23 rounds |v| <= 127 to the nearest
         * integer, ties to even, like nearbyintf but without a libm call:
         * this is also the fallback for CPUs and WebAssembly without SIMD.
         * A NaN element becomes -127, as in the AVX2 version. */
        for (int e = 0; e < LB_QK_K; e++) {
            float v = x[e] * id;
            if (!(v >= -127.0f))
                v = -127.0f;
            if (v > 127.0f)
                v = 127.0f;
            b->qs[e] = (int8_t)((v + 12582912.0f) - 12582912.0f);
        }
        for (int k = 0; k < LB_QK_K / 16; k++) {
            int sum = 0;
            for (int e = 16 * k; e < 16 * k + 16; e++)
                sum += b->qs[e];
            b->bsums[k] = (int16_t)sum;
        }
    }
}

static void dequant_a8_K(const void *src, float *dst, int64_t n)
{
    const lb_block_a8_K *b = src;
    for (int64_t i = 0; i < n / LB_QK_K; i++)
        for (int e = 0; e < LB_QK_K; e++)
            dst[i * LB_QK_K + e] = b[i].d * (float)b[i].qs[e];
}

/* ---- reference quantizers: round to nearest with a small search per
 * sub-block.  Valid, low-error blocks for tests and tools; not llama.cpp's
 * bit-exact quantizer. */

static int nearest(float v) { return (int)lrintf(v); }
static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Fits x[0..n) ~= scale * L - min with L in 0..nmax and min >= 0, trying a
 * few grid widths and refitting scale and min by least squares for each. */
static void fit_affine(const float *x, int n, int nmax, float *scale, float *min)
{
    float lo = 0, hi = x[0];
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    *scale = (hi - lo) / (float)nmax;
    *min = -lo;
    if (hi <= lo)
        return;
    float best = INFINITY;
    for (int step = -4; step <= 6; step++) {
        float iscale = ((float)nmax + 0.1f * (float)step) / (hi - lo);
        double sl = 0, sll = 0, sx = 0, slx = 0;
        int L[32]; /* [n] */
        for (int i = 0; i < n; i++) {
            L[i] = clampi(nearest((x[i] - lo) * iscale), 0, nmax);
            sl += L[i];
            sll += (double)L[i] * L[i];
            sx += x[i];
            slx += (double)L[i] * x[i];
        }
        double det = n * sll - sl * sl;
        double a, b;
        if (det <= 0)
            continue;
        a = (n * slx - sl * sx) / det;
        b = (sll * sx - sl * slx) / det;
        if (b > 0) { /* the offset must subtract: refit the scale with b = 0 */
            b = 0;
            a = sll > 0 ? slx / sll : 0;
        }
        if (a <= 0)
            continue;
        double err = 0;
        for (int i = 0; i < n; i++) {
            double r = a * L[i] + b - x[i];
            err += r * r;
        }
        if (err < best) {
            best = (float)err;
            *scale = (float)a;
            *min = (float)-b;
        }
    }
}

/* Fits x[0..n) ~= scale * L with L in -nneg..nneg-1; the scale is signed so
 * the element of largest magnitude can use the extra negative level. */
static float fit_sym(const float *x, int n, int nneg)
{
    float xm = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > fabsf(xm))
            xm = x[i];
    if (xm == 0)
        return 0;
    float best_scale = -xm / (float)nneg, best = INFINITY;
    for (int step = -4; step <= 6; step++) {
        float iscale = -((float)nneg + 0.1f * (float)step) / xm;
        double sll = 0, slx = 0;
        int L[32]; /* [n] */
        for (int i = 0; i < n; i++) {
            L[i] = clampi(nearest(x[i] * iscale), -nneg, nneg - 1);
            sll += (double)L[i] * L[i];
            slx += (double)L[i] * x[i];
        }
        if (sll <= 0)
            continue;
        double a = slx / sll, err = 0;
        for (int i = 0; i < n; i++) {
            double r = a * L[i] - x[i];
            err += r * r;
        }
        if (err < best) {
            best = (float)err;
            best_scale = (float)a;
        }
    }
    return best_scale;
}

/* Quantizes the sub-block scales of an affine type to 0..smax against a
 * super-scale, and fills L[256] with the final quants for those rounded scales. */
static void affine_block(const float *x, int sub, int nmax, int smax, lb_f16 *d16, lb_f16 *dmin16,
                         int *sc, int *m, uint8_t *L)
{
    int nsub = LB_QK_K / sub;
    float scale[16], min[16], max_scale = 0, max_min = 0; /* [nsub] */
    for (int s = 0; s < nsub; s++) {
        fit_affine(x + s * sub, sub, nmax, &scale[s], &min[s]);
        max_scale = fmaxf(max_scale, scale[s]);
        max_min = fmaxf(max_min, min[s]);
    }
    *d16 = lb_f32_to_f16(max_scale / (float)smax);
    *dmin16 = lb_f32_to_f16(max_min / (float)smax);
    float d = lb_f16_to_f32(*d16), dmin = lb_f16_to_f32(*dmin16);
    for (int s = 0; s < nsub; s++) {
        sc[s] = d > 0 ? clampi(nearest(scale[s] / d), 0, smax) : 0;
        m[s] = dmin > 0 ? clampi(nearest(min[s] / dmin), 0, smax) : 0;
        float dl = d * (float)sc[s], ml = dmin * (float)m[s];
        for (int e = s * sub; e < (s + 1) * sub; e++)
            L[e] = (uint8_t)(dl > 0 ? clampi(nearest((x[e] + ml) / dl), 0, nmax) : 0);
    }
}

/* The symmetric counterpart: sub-block scales to -smax..smax-1, quants to
 * -nneg..nneg-1 stored in L[256] as q + nneg. */
static void sym_block(const float *x, int nneg, int smax, lb_f16 *d16, int *sc, uint8_t *L)
{
    float scale[16], big = 0; /* [16 sub-blocks of 16] */
    for (int s = 0; s < 16; s++) {
        scale[s] = fit_sym(x + 16 * s, 16, nneg);
        if (fabsf(scale[s]) > fabsf(big))
            big = scale[s];
    }
    *d16 = lb_f32_to_f16(-big / (float)smax);
    float d = lb_f16_to_f32(*d16);
    for (int s = 0; s < 16; s++) {
        sc[s] = d != 0 ? clampi(nearest(scale[s] / d), -smax, smax - 1) : 0;
        float dl = d * (float)sc[s];
        for (int e = 16 * s; e < 16 * s + 16; e++)
            L[e] = (uint8_t)(dl != 0 ? clampi(nearest(x[e] / dl), -nneg, nneg - 1) + nneg : nneg);
    }
}

static void quant_q2_K(const float *src, void *dst, int64_t n)
{
    lb_block_q2_K *out = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        lb_block_q2_K *b = &out[i];
        int sc[16], m[16];
        uint8_t L[LB_QK_K];
        affine_block(src + i * LB_QK_K, 16, 3, 15, &b->d, &b->dmin, sc, m, L);
        memset(b->qs, 0, sizeof b->qs);
        for (int s = 0; s < 16; s++)
            b->scales[s] = (uint8_t)(sc[s] | (m[s] << 4));
        for (int e = 0; e < LB_QK_K; e++)
            b->qs[32 * (e / 128) + e % 32] |= (uint8_t)(L[e] << (2 * ((e % 128) / 32)));
    }
}

static void quant_q3_K(const float *src, void *dst, int64_t n)
{
    lb_block_q3_K *out = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        lb_block_q3_K *b = &out[i];
        int sc[16];
        uint8_t L[LB_QK_K];
        sym_block(src + i * LB_QK_K, 4, 32, &b->d, sc, L);
        memset(b->scales, 0, sizeof b->scales);
        memset(b->hmask, 0, sizeof b->hmask);
        memset(b->qs, 0, sizeof b->qs);
        for (int s = 0; s < 16; s++) {
            int v = sc[s] + 32;
            b->scales[s % 8] |= (uint8_t)((v & 0xF) << (4 * (s / 8)));
            b->scales[8 + s % 4] |= (uint8_t)((v >> 4) << (2 * (s / 4)));
        }
        for (int e = 0; e < LB_QK_K; e++) {
            b->qs[32 * (e / 128) + e % 32] |= (uint8_t)((L[e] & 3) << (2 * ((e % 128) / 32)));
            b->hmask[e % 32] |= (uint8_t)((L[e] >> 2) << (e / 32));
        }
    }
}

static void pack_q4_K_scales(uint8_t *out, const int *sc, const int *m)
{
    memset(out, 0, LB_K_SCALE_SIZE);
    for (int s = 0; s < 8; s++) {
        if (s < 4) {
            out[s] |= (uint8_t)sc[s];
            out[s + 4] |= (uint8_t)m[s];
        } else {
            out[s + 4] = (uint8_t)((sc[s] & 0xF) | ((m[s] & 0xF) << 4));
            out[s - 4] |= (uint8_t)((sc[s] >> 4) << 6);
            out[s] |= (uint8_t)((m[s] >> 4) << 6);
        }
    }
}

static void quant_q4_K(const float *src, void *dst, int64_t n)
{
    lb_block_q4_K *out = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        lb_block_q4_K *b = &out[i];
        int sc[8], m[8];
        uint8_t L[LB_QK_K];
        affine_block(src + i * LB_QK_K, 32, 15, 63, &b->d, &b->dmin, sc, m, L);
        pack_q4_K_scales(b->scales, sc, m);
        memset(b->qs, 0, sizeof b->qs);
        for (int e = 0; e < LB_QK_K; e++)
            b->qs[32 * (e / 64) + e % 32] |= (uint8_t)(L[e] << (4 * ((e % 64) / 32)));
    }
}

static void quant_q5_K(const float *src, void *dst, int64_t n)
{
    lb_block_q5_K *out = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        lb_block_q5_K *b = &out[i];
        int sc[8], m[8];
        uint8_t L[LB_QK_K];
        affine_block(src + i * LB_QK_K, 32, 31, 63, &b->d, &b->dmin, sc, m, L);
        pack_q4_K_scales(b->scales, sc, m);
        memset(b->qs, 0, sizeof b->qs);
        memset(b->qh, 0, sizeof b->qh);
        for (int e = 0; e < LB_QK_K; e++) {
            b->qs[32 * (e / 64) + e % 32] |= (uint8_t)((L[e] & 0xF) << (4 * ((e % 64) / 32)));
            b->qh[e % 32] |= (uint8_t)((L[e] >> 4) << (e / 32));
        }
    }
}

static void quant_q6_K(const float *src, void *dst, int64_t n)
{
    lb_block_q6_K *out = dst;
    for (int64_t i = 0; i < n / LB_QK_K; i++) {
        lb_block_q6_K *b = &out[i];
        int sc[16];
        uint8_t L[LB_QK_K];
        sym_block(src + i * LB_QK_K, 32, 128, &b->d, sc, L);
        memset(b->ql, 0, sizeof b->ql);
        memset(b->qh, 0, sizeof b->qh);
        for (int s = 0; s < 16; s++)
            b->scales[s] = (int8_t)sc[s];
        for (int e = 0; e < LB_QK_K; e++) {
            int nn = e / 128, k = (e % 128) / 32, l = e % 32;
            b->ql[64 * nn + 32 * (k % 2) + l] |= (uint8_t)((L[e] & 0xF) << (4 * (k / 2)));
            b->qh[32 * nn + l] |= (uint8_t)((L[e] >> 4) << (2 * k));
        }
    }
}

void lb__quant_ref_register_k(lb_quant_traits *t)
{
    t[LB_TYPE_Q2_K] = (lb_quant_traits){LB_TYPE_A8_K, dequant_q2_K, quant_q2_K, dot_q2_K};
    t[LB_TYPE_Q3_K] = (lb_quant_traits){LB_TYPE_A8_K, dequant_q3_K, quant_q3_K, dot_q3_K};
    t[LB_TYPE_Q4_K] = (lb_quant_traits){LB_TYPE_A8_K, dequant_q4_K, quant_q4_K, dot_q4_K};
    t[LB_TYPE_Q5_K] = (lb_quant_traits){LB_TYPE_A8_K, dequant_q5_K, quant_q5_K, dot_q5_K};
    t[LB_TYPE_Q6_K] = (lb_quant_traits){LB_TYPE_A8_K, dequant_q6_K, quant_q6_K, dot_q6_K};
    t[LB_TYPE_A8_K] = (lb_quant_traits){LB_TYPE_A8_K, dequant_a8_K, quant_a8_K, NULL};
}
