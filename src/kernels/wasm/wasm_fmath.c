/* WebAssembly SIMD128 variants of the fixed-rounding float kernels
 * (kernels/fmath.h).  A 16-lane vector of the contract is four f32x4; each
 * variant performs the reference's operations in the reference's order, so
 * the results are equal bit for bit.  The product of two f16 values is exact
 * in float, so in the dots multiply-then-add rounds once, as the reference
 * does; lb_expf's fused multiply-adds are lb__wasm_madd: emulated exactly
 * (kernels/wasm/wasm_fma.h), or in the -relaxed builds relaxed SIMD's
 * multiply-add, exact where the CPU fuses it (x86 with FMA3, Arm) and within
 * a few ulp elsewhere (tests/unit/test_fmath.c). */
#include "kernels/kernels.h"

#if defined(__wasm_simd128__)
#include <string.h>
#include <wasm_simd128.h>

#include "kernels/wasm/wasm_relaxed.h"

/* Four f16 values to float, exactly as lb_f16_to_f32: normal values have
 * their exponent rebased in the integer bits, subnormal ones (and zero) are
 * their mantissa times 2^-24; inf and NaN (NaNs quieted) are patched in.  No
 * float operation sees a subnormal operand, which costs x86 a microcode
 * assist of about a hundred cycles (WebAssembly cannot flush them to zero):
 * attention's probabilities, converted here, are often below f16's normal
 * range. */
static inline v128_t ld4(const lb_f16 *p)
{
    v128_t w = wasm_u32x4_load16x4(p);
    v128_t sign = wasm_i32x4_shl(wasm_v128_and(w, wasm_i32x4_splat(0x8000)), 16);
    v128_t em = wasm_i32x4_shl(wasm_v128_and(w, wasm_i32x4_splat(0x7fff)), 13);
    v128_t sub = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_v128_and(w, wasm_i32x4_splat(0x3ff))),
                                wasm_f32x4_splat(0x1p-24f));
    v128_t f = wasm_v128_bitselect(sub, wasm_i32x4_add(em, wasm_i32x4_splat(0x38000000)),
                                   wasm_i32x4_eq(wasm_v128_and(w, wasm_i32x4_splat(0x7c00)), wasm_i32x4_splat(0)));
    v128_t special = wasm_i32x4_eq(wasm_v128_and(w, wasm_i32x4_splat(0x7c00)), wasm_i32x4_splat(0x7c00));
    v128_t quiet = wasm_v128_and(wasm_i32x4_ne(wasm_v128_and(em, wasm_i32x4_splat(0x7fe000)), wasm_i32x4_splat(0)),
                                 wasm_i32x4_splat(0x400000));
    v128_t inf_nan = wasm_v128_or(wasm_v128_or(em, wasm_i32x4_splat(0x7f800000)), quiet);
    return wasm_v128_or(sign, wasm_v128_bitselect(inf_nan, f, special));
}

/* The 16-lane reduction of the contract: l + l+8, then + the upper 4, then (0+2) + (1+3). */
static inline float reduce16(const v128_t v[4])
{
    v128_t t4 = wasm_f32x4_add(wasm_f32x4_add(v[3], v[1]), wasm_f32x4_add(v[2], v[0]));
    return (wasm_f32x4_extract_lane(t4, 0) + wasm_f32x4_extract_lane(t4, 2)) +
           (wasm_f32x4_extract_lane(t4, 1) + wasm_f32x4_extract_lane(t4, 3));
}

/* Four finite f16 values (the 16-bit lanes sign-extended to 32) to float:
 * the sign lands in bit 31 and its copies in bits 28..30 are masked off. */
static inline v128_t cvt4_finite(v128_t w32)
{
    return wasm_f32x4_mul(wasm_v128_and(wasm_i32x4_shl(w32, 13), wasm_i32x4_splat((int32_t)0x8fffe000)),
                          wasm_f32x4_splat(0x1p112f));
}

/* acc[k] += a * b for the 16 elements at a, b (the products are exact).
 * Without inf or NaN among them (the usual case) the short conversion
 * cvt4_finite does; else ld4 patches the special values in. */
static inline void mac16(v128_t acc[4], const lb_f16 *a, const lb_f16 *b)
{
    v128_t a0 = wasm_v128_load(a), a1 = wasm_v128_load(a + 8), b0 = wasm_v128_load(b), b1 = wasm_v128_load(b + 8);
    const v128_t e = wasm_i16x8_splat(0x7c00);
    v128_t special = wasm_v128_or(wasm_v128_or(wasm_i16x8_eq(wasm_v128_and(a0, e), e), wasm_i16x8_eq(wasm_v128_and(a1, e), e)),
                                  wasm_v128_or(wasm_i16x8_eq(wasm_v128_and(b0, e), e), wasm_i16x8_eq(wasm_v128_and(b1, e), e)));
    if (__builtin_expect(wasm_v128_any_true(special), 0)) {
        for (int k = 0; k < 4; k++)
            acc[k] = wasm_f32x4_add(acc[k], wasm_f32x4_mul(ld4(a + 4 * k), ld4(b + 4 * k)));
        return;
    }
    acc[0] = wasm_f32x4_add(acc[0], wasm_f32x4_mul(cvt4_finite(wasm_i32x4_extend_low_i16x8(a0)),
                                                   cvt4_finite(wasm_i32x4_extend_low_i16x8(b0))));
    acc[1] = wasm_f32x4_add(acc[1], wasm_f32x4_mul(cvt4_finite(wasm_i32x4_extend_high_i16x8(a0)),
                                                   cvt4_finite(wasm_i32x4_extend_high_i16x8(b0))));
    acc[2] = wasm_f32x4_add(acc[2], wasm_f32x4_mul(cvt4_finite(wasm_i32x4_extend_low_i16x8(a1)),
                                                   cvt4_finite(wasm_i32x4_extend_low_i16x8(b1))));
    acc[3] = wasm_f32x4_add(acc[3], wasm_f32x4_mul(cvt4_finite(wasm_i32x4_extend_high_i16x8(a1)),
                                                   cvt4_finite(wasm_i32x4_extend_high_i16x8(b1))));
}

static float dot16(int64_t n, const lb_f16 *a, const lb_f16 *b)
{
    v128_t acc[4] = {wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0), wasm_f32x4_splat(0)};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        mac16(acc, a + i, b + i);
    if (i < n) {
        lb_f16 ta[16] = {0}, tb[16] = {0};   /* the tail, zero-padded */
        memcpy(ta, a + i, (size_t)(n - i) * sizeof *a);
        memcpy(tb, b + i, (size_t)(n - i) * sizeof *b);
        mac16(acc, ta, tb);
    }
    return reduce16(acc);
}

static float dot64(int64_t n, int64_t n_vec, const lb_f16 *a, const lb_f16 *b)
{
    v128_t acc[16];   /* [4 vectors of 16][4 quarters] */
    for (int j = 0; j < 16; j++)
        acc[j] = wasm_f32x4_splat(0);
    int64_t nv = n_vec < n ? n_vec : n, i = 0;
    for (; i + 64 <= nv; i += 64)
        for (int v = 0; v < 4; v++)
            mac16(acc + 4 * v, a + i + 16 * v, b + i + 16 * v);
    if (i < nv) {
        lb_f16 ta[64] = {0}, tb[64] = {0};
        memcpy(ta, a + i, (size_t)(nv - i) * sizeof *a);
        memcpy(tb, b + i, (size_t)(nv - i) * sizeof *b);
        for (int v = 0; v < 4; v++)
            mac16(acc + 4 * v, ta + 16 * v, tb + 16 * v);
    }
    v128_t r[4];
    for (int k = 0; k < 4; k++)
        r[k] = wasm_f32x4_add(wasm_f32x4_add(acc[k], acc[8 + k]), wasm_f32x4_add(acc[4 + k], acc[12 + k]));
    double sum = reduce16(r);
    /* the tail one product at a time in double, as in the reference */
    float prod[4];
    for (i = n_vec; i + 4 <= n; i += 4) {
        wasm_v128_store(prod, wasm_f32x4_mul(ld4(a + i), ld4(b + i)));
        for (int j = 0; j < 4; j++)
            sum += (double)prod[j];
    }
    for (; i < n; i++)
        sum += (double)(lb_f16_to_f32(a[i]) * lb_f16_to_f32(b[i]));
    return (float)sum;
}

/* acc[k] += a * b for 16 elements: a f16, bs the other operand widened and
 * scaled by 2^112 (|b| < 2^15, so bs stays finite).  The finite f16 bits
 * shifted into float position are a * 2^-112 exactly (as in cvt4_finite, less
 * its multiplication), so each product is a * b exactly, as in mac16; an
 * inf or NaN among the 16 a takes ld4 and bs scaled back. */
static inline void mac16s(v128_t acc[4], const lb_f16 *a, const float *bs)
{
    v128_t a0 = wasm_v128_load(a), a1 = wasm_v128_load(a + 8);
    const v128_t e = wasm_i16x8_splat(0x7c00), m = wasm_i32x4_splat((int32_t)0x8fffe000);
    v128_t special = wasm_v128_or(wasm_i16x8_eq(wasm_v128_and(a0, e), e), wasm_i16x8_eq(wasm_v128_and(a1, e), e));
    if (__builtin_expect(wasm_v128_any_true(special), 0)) {
        for (int k = 0; k < 4; k++)
            acc[k] = wasm_f32x4_add(acc[k], wasm_f32x4_mul(ld4(a + 4 * k), wasm_f32x4_mul(wasm_v128_load(bs + 4 * k),
                                                                                              wasm_f32x4_splat(0x1p-112f))));
        return;
    }
    acc[0] = wasm_f32x4_add(acc[0], wasm_f32x4_mul(wasm_v128_and(wasm_i32x4_shl(wasm_i32x4_extend_low_i16x8(a0), 13), m),
                                                   wasm_v128_load(bs)));
    acc[1] = wasm_f32x4_add(acc[1], wasm_f32x4_mul(wasm_v128_and(wasm_i32x4_shl(wasm_i32x4_extend_high_i16x8(a0), 13), m),
                                                   wasm_v128_load(bs + 4)));
    acc[2] = wasm_f32x4_add(acc[2], wasm_f32x4_mul(wasm_v128_and(wasm_i32x4_shl(wasm_i32x4_extend_low_i16x8(a1), 13), m),
                                                   wasm_v128_load(bs + 8)));
    acc[3] = wasm_f32x4_add(acc[3], wasm_f32x4_mul(wasm_v128_and(wasm_i32x4_shl(wasm_i32x4_extend_high_i16x8(a1), 13), m),
                                                   wasm_v128_load(bs + 12)));
}

/* The 16 lanes 16v .. 16v+15 of dot64's 64 for one row (as 4 vectors):
 * each the sum of its elements i = 16v + l (mod 64), i < nv, in order.  a
 * is not read past nv (a partial 16 is copied, zero-padded; bs is zero
 * there), and a lane that gets no product stays +0, as in dot64. */
static inline void lane_group(const lb_f16 *a, const float *bs, int64_t nv, int v, v128_t acc[4])
{
    for (int k = 0; k < 4; k++)
        acc[k] = wasm_f32x4_splat(0);
    int64_t i = 16 * v;
    for (; i + 16 <= nv; i += 64)
        mac16s(acc, a + i, bs + i);
    if (i < nv) {
        lb_f16 ta[16];   /* [16] the partial 16, zero-padded */
        wasm_v128_store(ta, wasm_i16x8_splat(0));
        wasm_v128_store(ta + 8, wasm_i16x8_splat(0));
        memcpy(ta, a + i, (size_t)(nv - i) * sizeof *a);
        mac16s(acc, ta, bs + i);
    }
}

/* reduce16's t4 for one row of exactly 64 elements (a head dimension of 64:
 * dot64's one pass, each of the 64 lanes one product (0 + a[i] * b[i], as
 * from its zeroed accumulators), then its reductions), the products as in
 * mac16s.  Returns 0, leaving *t4 unset, when the row holds an inf or NaN. */
static inline int row64_t4(const lb_f16 *a, const float *bs, v128_t *t4)
{
    v128_t h[8];   /* [8] the row's 64 f16, 8 per vector */
    const v128_t e = wasm_i16x8_splat(0x7c00);
    v128_t mx = wasm_i16x8_splat(0);
    for (int j = 0; j < 8; j++) {
        h[j] = wasm_v128_load(a + 8 * j);
        mx = wasm_u16x8_max(mx, wasm_v128_and(h[j], e));
    }
    if (__builtin_expect(wasm_v128_any_true(wasm_i16x8_eq(mx, e)), 0))
        return 0;
    const v128_t m = wasm_i32x4_splat((int32_t)0x8fffe000), zero = wasm_f32x4_splat(0);
    v128_t red[4];   /* dot64's lanes 4k..4k+3 of its 16 after (0 + 2) + (1 + 3) */
    for (int k = 0; k < 4; k++) {
        v128_t p[4];   /* elements 16v + 4k .. +3: the half k % 2 of vector 2v + k / 2 */
        for (int v = 0; v < 4; v++) {
            const v128_t hv = h[2 * v + k / 2];
            const v128_t w32 = k & 1 ? wasm_i32x4_extend_high_i16x8(hv) : wasm_i32x4_extend_low_i16x8(hv);
            p[v] = wasm_f32x4_add(zero, wasm_f32x4_mul(wasm_v128_and(wasm_i32x4_shl(w32, 13), m),
                                                       wasm_v128_load(bs + 16 * v + 4 * k)));
        }
        red[k] = wasm_f32x4_add(wasm_f32x4_add(p[0], p[2]), wasm_f32x4_add(p[1], p[3]));
    }
    *t4 = wasm_f32x4_add(wasm_f32x4_add(red[3], red[1]), wasm_f32x4_add(red[2], red[0]));
    return 1;
}

/* reduce16's last step, (0 + 2) + (1 + 3), of four rows' t4 at once: lane k
 * of the result is row k's, the same additions in the same order. */
static inline v128_t finish4x4(const v128_t t[4])
{
    const v128_t a = wasm_i32x4_shuffle(t[0], t[1], 0, 4, 1, 5), b = wasm_i32x4_shuffle(t[2], t[3], 0, 4, 1, 5);
    const v128_t c = wasm_i32x4_shuffle(t[0], t[1], 2, 6, 3, 7), d = wasm_i32x4_shuffle(t[2], t[3], 2, 6, 3, 7);
    return wasm_f32x4_add(wasm_f32x4_add(wasm_i32x4_shuffle(a, b, 0, 1, 4, 5), wasm_i32x4_shuffle(c, d, 0, 1, 4, 5)),
                          wasm_f32x4_add(wasm_i32x4_shuffle(a, b, 2, 3, 6, 7), wasm_i32x4_shuffle(c, d, 2, 3, 6, 7)));
}

/* Longest b that dot64_rows widens on the stack (16 KiB); longer ones (a
 * context past 4096 positions) take dot64 row by row. */
#define ROWS_MAX_B 4096

/* dot64 for many rows against one b: the same lanes, order and tail as
 * dot64, with b widened (and scaled, see mac16s) once. */
static void dot64_rows(int64_t rows, int64_t n, int64_t n_vec, const lb_f16 *a, size_t stride, const lb_f16 *b,
                       float scale, float *out)
{
    const int64_t nv = n_vec < n ? n_vec : n, nv64 = (nv + 63) & ~(int64_t)63;
    const int64_t nb = (nv64 > n ? nv64 : n + 3) & ~(int64_t)3;
    /* every |b| < 2^15 (0x7800 is 2^15 in f16 bits): else, and for long b, dot64 per row */
    int big = nb > ROWS_MAX_B;
    for (int64_t i = 0; i < nv && !big; i++)
        big = (b[i] & 0x7fff) >= 0x7800;
    if (big) {
        for (int64_t r = 0; r < rows; r++)
            out[r] = dot64(n, n_vec, a + (size_t)r * stride, b) * scale;
        return;
    }
    float bs[ROWS_MAX_B];   /* [nb] b * 2^112 for i < nv, b past it (the tail), zero past n */
    int64_t i = 0;
    for (; i + 4 <= nv; i += 4)
        wasm_v128_store(bs + i, wasm_f32x4_mul(ld4(b + i), wasm_f32x4_splat(0x1p112f)));
    for (; i < nv; i++)
        bs[i] = lb_f16_to_f32(b[i]) * 0x1p112f;
    for (; i < n; i++)
        bs[i] = lb_f16_to_f32(b[i]);
    for (; i < nb; i++)
        bs[i] = 0.0f;
    int64_t r = 0;
    /* rows of 64 (the keys of 64-wide heads), four at a time; a row with an
     * inf or NaN sends it and the rest to the general loop */
    for (; n == 64 && n_vec == 64 && r + 4 <= rows; r += 4) {
        v128_t t[4];
        int ok = 1;
        for (int k = 0; k < 4; k++)
            ok &= row64_t4(a + (size_t)(r + k) * stride, bs, &t[k]);
        if (!ok)
            break;
        wasm_v128_store(out + r, wasm_f32x4_mul(finish4x4(t), wasm_f32x4_splat(scale)));
    }
    for (; r < rows; r++) {
        const lb_f16 *ar = a + (size_t)r * stride;
        /* dot64's reduction (lane groups 0 + 2) + (1 + 3), each group summed
         * on its own so that its accumulators stay in registers */
        v128_t s02[4], s13[4], g[4], red[4];
        lane_group(ar, bs, nv, 0, s02);
        lane_group(ar, bs, nv, 2, g);
        for (int k = 0; k < 4; k++)
            s02[k] = wasm_f32x4_add(s02[k], g[k]);
        lane_group(ar, bs, nv, 1, s13);
        lane_group(ar, bs, nv, 3, g);
        for (int k = 0; k < 4; k++)
            red[k] = wasm_f32x4_add(s02[k], wasm_f32x4_add(s13[k], g[k]));
        double sum = reduce16(red);
        float prod[4];
        for (i = n_vec; i + 4 <= n; i += 4) {
            wasm_v128_store(prod, wasm_f32x4_mul(ld4(ar + i), wasm_v128_load(bs + i)));
            for (int j = 0; j < 4; j++)
                sum += (double)prod[j];
        }
        for (; i < n; i++)
            sum += (double)(lb_f16_to_f32(ar[i]) * bs[i]);
        out[r] = (float)sum * scale;
    }
}

/* lb_expf on 4 lanes (see fmath.c for the method), its fused multiply-adds
 * being lb__wasm_madd (wasm_relaxed.h). */
static inline v128_t exp4(v128_t x)
{
    const v128_t shift = wasm_f32x4_splat(0x1.8p23f);
    v128_t z = lb__wasm_madd(wasm_f32x4_splat(0x1.715476p+0f), x, shift);
    v128_t n = wasm_f32x4_sub(z, shift);
    v128_t r = lb__wasm_madd(wasm_f32x4_splat(-0x1.7f7d1cp-20f), n,
                             lb__wasm_madd(wasm_f32x4_splat(-0x1.62e4p-1f), n, x));
    v128_t r2 = wasm_f32x4_mul(r, r);
    v128_t p54 = lb__wasm_madd(wasm_f32x4_splat(0x1.0e4020p-7f), r, wasm_f32x4_splat(0x1.573e2ep-5f));
    v128_t p32 = lb__wasm_madd(wasm_f32x4_splat(0x1.555e66p-3f), r, wasm_f32x4_splat(0x1.fffdb6p-2f));
    v128_t p10 = lb__wasm_madd(wasm_f32x4_splat(0x1.ffffecp-1f), r, wasm_f32x4_splat(1.0f));
    v128_t p = lb__wasm_madd(lb__wasm_madd(p54, r2, p32), r2, p10);
    /* p * 2^k1 * 2^(k-k1), k1 = k/2 toward zero; n clamped so the exponent
     * arithmetic stays valid where the selects below override it */
    v128_t nc = wasm_f32x4_pmin(wasm_f32x4_splat(192.0f), wasm_f32x4_pmax(wasm_f32x4_splat(-192.0f), n));
    v128_t k = wasm_i32x4_trunc_sat_f32x4(nc);
    v128_t k1 = wasm_i32x4_shr(wasm_i32x4_sub(k, wasm_i32x4_shr(k, 31)), 1);
    const v128_t bias = wasm_i32x4_splat(127);
    v128_t s1 = wasm_i32x4_shl(wasm_i32x4_add(k1, bias), 23);
    v128_t s2 = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_sub(k, k1), bias), 23);
    v128_t res = wasm_f32x4_mul(wasm_f32x4_mul(p, s1), s2);
    v128_t big = wasm_f32x4_gt(wasm_f32x4_abs(n), wasm_f32x4_splat(192.0f));
    v128_t alt = wasm_v128_bitselect(wasm_f32x4_splat(0.0f), wasm_f32x4_splat(__builtin_inff()),
                                     wasm_f32x4_le(n, wasm_f32x4_splat(0.0f)));
    res = wasm_v128_bitselect(alt, res, big);
    /* NaN in, NaN out (the clamp above turned n's NaN into a number) */
    return wasm_v128_bitselect(res, n, wasm_f32x4_eq(n, n));
}

static double exp_sum(int64_t n, float *y, const float *x, float max)
{
    const v128_t mx = wasm_f32x4_splat(max);
    double sum = 0;
    for (int64_t i = 0; i < n; i += 16) {
        float t[16];   /* this chunk of 16, past n: placeholders, zeroed below */
        v128_t v[4];
        int64_t m = n - i < 16 ? n - i : 16;
        for (int l = 0; l < 16; l++)
            t[l] = l < m ? x[i + l] : max;
        for (int k = 0; k < 4; k++)
            v[k] = exp4(wasm_f32x4_sub(wasm_v128_load(t + 4 * k), mx));
        for (int k = 0; k < 4; k++)
            wasm_v128_store(t + 4 * k, v[k]);
        for (int l = 0; l < 16; l++) {
            if (l < m)
                y[i + l] = t[l];
            else
                t[l] = 0.0f;
        }
        for (int k = 0; k < 4; k++)
            v[k] = wasm_v128_load(t + 4 * k);
        sum += (double)reduce16(v);
    }
    return sum;
}

static void silu_mul(int64_t n, float *g, const float *u)
{
    const v128_t one = wasm_f32x4_splat(1.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v128_t x = wasm_v128_load(g + i);
        v128_t e = exp4(wasm_f32x4_sub(wasm_f32x4_splat(0.0f), x));
        v128_t s = wasm_f32x4_div(x, wasm_f32x4_add(one, e));
        wasm_v128_store(g + i, wasm_f32x4_mul(s, wasm_v128_load(u + i)));
    }
    for (; i < n; i++) {
        float s = g[i] / (1.0f + lb_expf(0.0f - g[i]));
        g[i] = s * u[i];
    }
}

/* Four floats to f16 bits in 32-bit lanes, as lb_f32_to_f16: normal results
 * rounded to nearest even by adding 0xfff plus the lowest kept bit, results
 * below the smallest normal half by adding 0.5f (whose ulp, 2^-24, is the
 * half's subnormal step, so the float addition does the rounding), then
 * overflow to inf and inf/NaN (quieted, top payload bits kept) selected in. */
static inline v128_t f16x4(v128_t x)
{
    const v128_t ax = wasm_v128_and(x, wasm_i32x4_splat(0x7fffffff));
    const v128_t sign = wasm_u32x4_shr(wasm_v128_and(x, wasm_i32x4_splat((int32_t)0x80000000)), 16);
    v128_t odd = wasm_v128_and(wasm_u32x4_shr(ax, 13), wasm_i32x4_splat(1));
    v128_t hn = wasm_i32x4_sub(wasm_u32x4_shr(wasm_i32x4_add(wasm_i32x4_add(ax, wasm_i32x4_splat(0xfff)), odd), 13),
                               wasm_i32x4_splat(112 << 10));
    v128_t hs = wasm_i32x4_sub(wasm_f32x4_add(ax, wasm_f32x4_splat(0.5f)), wasm_i32x4_splat(0x3f000000));
    v128_t nan = wasm_u32x4_gt(ax, wasm_i32x4_splat(0x7f800000));
    v128_t hx = wasm_v128_or(wasm_i32x4_splat(0x7c00),
                             wasm_v128_and(nan, wasm_v128_or(wasm_i32x4_splat(0x200),
                                                             wasm_v128_and(wasm_u32x4_shr(ax, 13), wasm_i32x4_splat(0x3ff)))));
    v128_t h = wasm_v128_bitselect(hs, hn, wasm_u32x4_lt(ax, wasm_i32x4_splat(0x38800000)));
    h = wasm_v128_bitselect(wasm_i32x4_splat(0x7c00), h, wasm_u32x4_ge(ax, wasm_i32x4_splat(0x477ff000)));
    h = wasm_v128_bitselect(hx, h, wasm_u32x4_ge(ax, wasm_i32x4_splat(0x7f800000)));
    return wasm_v128_or(h, sign);
}

static void to_f16(int64_t n, const float *x, lb_f16 *y)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        wasm_v128_store(y + i, wasm_u16x8_narrow_i32x4(f16x4(wasm_v128_load(x + i)), f16x4(wasm_v128_load(x + i + 4))));
    for (; i < n; i++)
        y[i] = lb_f32_to_f16(x[i]);
}

void lb__fmath_register_wasm(lb_fmath *f)
{
    f->dot16 = dot16;
    f->dot64 = dot64;
    f->exp_sum = exp_sum;
    f->silu_mul = silu_mul;
    f->dot64_rows = dot64_rows;
    f->to_f16 = to_f16;
}
#endif
