/* Tests the fixed-rounding float kernels (kernels/fmath.h): the references
 * follow the stated summation orders, lb_expf is accurate, and every SIMD
 * variant (AVX2, NEON, WASM SIMD128) equals the reference bit for bit at
 * awkward lengths (the -relaxed WASM builds' exp within a stated tolerance:
 * see is_wasm). */
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/fmath.h"
#include "kernels/kernels.h"

static const int64_t lens[] = {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 96, 127, 128, 129, 255, 257, 1023};
#define N_LENS (int)(sizeof lens / sizeof lens[0])
#define MAX_N 1024

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rng_sym(void) { return (float)((double)(rng_u64() >> 11) * (2.0 / 9007199254740992.0) - 1.0); }

static lb_f16 ha[MAX_N], hb[MAX_N];   /* [MAX_N] f16 operands */
static float xf[MAX_N], ya[MAX_N], yb[MAX_N], ga[MAX_N], gb[MAX_N], uf[MAX_N];   /* [MAX_N] */

static void fill_f16(int64_t n, int scale_bits)
{
    for (int64_t i = 0; i < n; i++) {
        ha[i] = lb_f32_to_f16(rng_sym() * ldexpf(1.0f, (int)(rng_u64() % (unsigned)scale_bits)));
        hb[i] = lb_f32_to_f16(rng_sym());
    }
}

static double dot_exact(int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)lb_f16_to_f32(ha[i]) * lb_f16_to_f32(hb[i]);
    return s;
}

static void set_prod(int64_t i, float a, float b)
{
    ha[i] = lb_f32_to_f16(a);
    hb[i] = lb_f32_to_f16(b);
}

/* The lane structure is visible when a lane's running sum passes 2^24. */
static void test_dot_orders(void)
{
    const lb_fmath *r = lb_fmath_scalar();
    for (int v = 0; v < 2; v++) {
        for (int i = 0; i < 64; i++)
            set_prod(i, 0.0f, 0.0f);
        set_prod(0, 4096.0f, 4096.0f);     /* 2^24 in lane 0 */
        set_prod(v ? 1 : 16, 1.0f, 1.0f);  /* 1 in lane 1 (kept), or lane 0 after 2^24 (lost: tie to even) */
        set_prod(32, -4096.0f, 4096.0f);   /* lane 0 back to 0 */
        float want = v ? 1.0f : 0.0f;
        CHECKF(r->dot16(64, ha, hb) == want, "dot16 variant %d: %g", v, r->dot16(64, ha, hb));
    }
    /* dot64: i=0 and i=64 share a lane; i=0 and i=16 do not */
    for (int i = 0; i < 128; i++)
        set_prod(i, 0.0f, 0.0f);
    set_prod(0, 4096.0f, 4096.0f);
    set_prod(64, 1.0f, 1.0f);
    set_prod(16, -4096.0f, 4096.0f);
    CHECK(r->dot64(128, 128, ha, hb) == 0.0f);   /* (2^24 + 1) rounds to 2^24 in lane 0 */
    set_prod(64, 0.0f, 0.0f);
    set_prod(17, 1.0f, 1.0f);
    CHECK(r->dot64(128, 128, ha, hb) == 1.0f);
    /* the tail past n_vec is summed in double: 2^24 + 1 survives there */
    for (int i = 0; i < 128; i++)
        set_prod(i, 0.0f, 0.0f);
    set_prod(0, 4096.0f, 4096.0f);
    set_prod(70, 1.0f, 1.0f);
    set_prod(71, -4096.0f, 4096.0f);
    CHECK(r->dot64(96, 64, ha, hb) == 1.0f);
    CHECK(r->dot64(96, 128, ha, hb) == 0.0f);   /* all 96 in lanes: 2^24 + 1 rounds in the lane reduction */
}

static void test_dot_accuracy(void)
{
    const lb_fmath *r = lb_fmath_scalar();
    for (int li = 0; li < N_LENS; li++) {
        int64_t n = lens[li];
        fill_f16(n, 8);
        double e = dot_exact(n), bound = 0;
        for (int64_t i = 0; i < n; i++)
            bound += fabs((double)lb_f16_to_f32(ha[i]) * lb_f16_to_f32(hb[i]));
        bound = bound * 1e-6 + 1e-30;
        CHECKF(fabs(r->dot16(n, ha, hb) - e) <= bound, "dot16 n=%lld", (long long)n);
        int64_t nv = ((n + 31) / 32 * 32) & ~(int64_t)63;
        CHECKF(fabs(r->dot64(n, nv, ha, hb) - e) <= bound, "dot64 n=%lld", (long long)n);
    }
}

static void test_expf(void)
{
    CHECK(lb_expf(0.0f) == 1.0f);
    CHECK(lb_expf(-INFINITY) == 0.0f);
    CHECK(isinf(lb_expf(INFINITY)) && lb_expf(INFINITY) > 0);
    CHECK(isnan(lb_expf(NAN)));
    CHECK(isinf(lb_expf(100.0f)));
    CHECK(lb_expf(-200.0f) == 0.0f);
    /* subnormal results are correctly rounded multiples of 2^-149 */
    float s = lb_expf(-100.0f);
    CHECKF(s > 0 && fabs(s - exp(-100.0)) <= 0x1p-149, "exp(-100) = %g", s);
    double worst = 0;
    for (int i = 0; i < 200000; i++) {
        float x = rng_sym() * 87.0f;
        double e = exp((double)x);
        double ulp = ldexp(1.0, ilogb(e) - 23);
        double err = fabs(lb_expf(x) - e) / ulp;
        if (err > worst)
            worst = err;
    }
    /* the method is good to about 2 ulp of the result (measured 2.15 here) */
    CHECKF(worst <= 2.5, "worst error %.3f ulp", worst);
}

static void test_exp_sum_silu_ref(void)
{
    const lb_fmath *r = lb_fmath_scalar();
    for (int64_t i = 0; i < 40; i++)
        xf[i] = rng_sym() * 10.0f;
    double sum = r->exp_sum(40, ya, xf, 10.0f), want = 0;
    for (int64_t i = 0; i < 40; i++) {
        CHECK(ya[i] == lb_expf(xf[i] - 10.0f));
        want += exp((double)xf[i] - 10.0);
    }
    CHECKF(fabs(sum - want) <= 1e-6 * want, "%g vs %g", sum, want);
    for (int64_t i = 0; i < 40; i++) {
        ga[i] = rng_sym() * 20.0f;
        uf[i] = rng_sym();
        gb[i] = ga[i];
    }
    r->silu_mul(40, gb, uf);
    for (int64_t i = 0; i < 40; i++) {
        double want_s = ga[i] / (1.0 + exp(-(double)ga[i])) * uf[i];
        CHECKF(fabs(gb[i] - want_s) <= 1e-6 * fabs(want_s) + 1e-30, "silu %g", ga[i]);
    }
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* The -relaxed WebAssembly builds take relaxed SIMD's multiply-add for
 * lb_expf's fused ones, which an engine may split in two, so there exp_sum
 * and silu_mul are allowed 8 ulp of relative error plus 2^-140 of absolute
 * error where the result is subnormal, and the sum of exp_sum 8 ulp.  The f16
 * dots, to_f16 and every other build stay bit for bit. */
static int is_wasm(const lb_fmath *s)
{
#if defined(LB_WASM_RELAXED)
    return strncmp(s->isa, "wasm", 4) == 0;
#else
    (void)s;
    return 0;
#endif
}
static int close_ulps(float a, float b, double ulps)
{
    if (same_bits(a, b) || (isnan(a) && isnan(b)))
        return 1;
    return isfinite(a) && isfinite(b) && fabs((double)a - b) <= ulps * 0x1p-24 * fabs((double)a) + 0x1p-140;
}

static lb_f16 hm[6 * MAX_N];   /* [6][stride] rows for dot64_rows */

static void simd_equals_ref(const lb_fmath *s)
{
    const lb_fmath *r = lb_fmath_scalar();
    for (int rep = 0; rep < 4; rep++)
        for (int li = 0; li < N_LENS; li++) {
            int64_t n = lens[li];
            fill_f16(n, rep == 3 ? 24 : 6);
            CHECKF(same_bits(r->dot16(n, ha, hb), s->dot16(n, ha, hb)), "%s dot16 n=%lld", s->isa, (long long)n);
            for (int64_t nv = 0; nv <= n + 64; nv += 64)
                CHECKF(same_bits(r->dot64(n, nv, ha, hb), s->dot64(n, nv, ha, hb)), "%s dot64 n=%lld nv=%lld",
                       s->isa, (long long)n, (long long)nv);
            if (s->dot64_rows) {
                /* 6 rows, the last with an infinity in it (rep 1, 2) */
                size_t stride = (size_t)n + (size_t)(rep & 1);
                for (size_t k = 0; k < 6 * stride && k < 6 * (size_t)MAX_N; k++)
                    hm[k] = lb_f32_to_f16(rng_sym() * 4.0f);
                if (n > 0 && (rep == 1 || rep == 2))
                    hm[5 * stride + (size_t)(rng_u64() % (uint64_t)n)] = rep == 1 ? 0x7c00 : 0xfc00;
                /* rep 3: one b of 65504, beyond what the WebAssembly variant pre-scales */
                const lb_f16 keep = n > 0 ? hb[n / 2] : 0;
                if (n > 0 && rep == 3)
                    hb[n / 2] = 0x7bff;
                for (int64_t nv = 0; nv <= n + 64; nv += 64) {
                    float out[6];
                    s->dot64_rows(6, n, nv, hm, stride, hb, 0.125f, out);
                    for (int k = 0; k < 6; k++)
                        CHECKF(same_bits(r->dot64(n, nv, hm + (size_t)k * stride, hb) * 0.125f, out[k]),
                               "%s dot64_rows n=%lld nv=%lld row %d", s->isa, (long long)n, (long long)nv, k);
                }
                if (n > 0)
                    hb[n / 2] = keep;
            }
            for (int64_t i = 0; i < n; i++) {
                /* arguments up to +-130 reach the overflow, underflow and subnormal ranges */
                xf[i] = rep == 3 ? rng_sym() * 130.0f : rng_sym() * 30.0f;
                ga[i] = gb[i] = rep == 2 ? rng_sym() * 120.0f : rng_sym() * 8.0f;
                uf[i] = rng_sym();
            }
            if (n > 2) {
                xf[1] = -INFINITY;
                ga[1] = gb[1] = 0.0f;
            }
            const int wasm = is_wasm(s);
            double sr = r->exp_sum(n, ya, xf, 3.0f), ss = s->exp_sum(n, yb, xf, 3.0f);
            CHECKF(sr == ss || (wasm && isfinite(sr) && fabs(sr - ss) <= 8 * 0x1p-24 * sr), "%s exp_sum n=%lld: %.17g vs %.17g", s->isa,
                   (long long)n, sr, ss);
            int bad = 0;
            for (int64_t i = 0; i < n; i++)
                bad += wasm ? !close_ulps(ya[i], yb[i], 8) : !same_bits(ya[i], yb[i]);
            CHECKF(bad == 0, "%s exp_sum values n=%lld: %d differ", s->isa, (long long)n, bad);
            r->silu_mul(n, ga, uf);
            s->silu_mul(n, gb, uf);
            bad = 0;
            for (int64_t i = 0; i < n; i++)
                bad += wasm ? !close_ulps(ga[i], gb[i], 8) : !same_bits(ga[i], gb[i]);
            CHECKF(bad == 0, "%s silu_mul n=%lld: %d differ", s->isa, (long long)n, bad);
            r->to_f16(n, xf, ha);
            s->to_f16(n, xf, hb);
            CHECKF(memcmp(ha, hb, (size_t)n * sizeof *ha) == 0, "%s to_f16 n=%lld", s->isa, (long long)n);
        }
}

/* Every SIMD set of this build (AVX2, NEON, WASM SIMD128). */
static void test_simd_equals_ref(void)
{
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4);
    if (ns == 0)
        printf("  (no SIMD kernel set: skipped)\n");
    for (int i = 0; i < ns; i++)
        simd_equals_ref(&sets[i]->fmath);
}

/* The SIMD sets of this build that have dot64_rows (into out[4]). */
static int dot64_rows_sets(const lb_fmath *out[4])
{
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4), n = 0;
    for (int i = 0; i < ns; i++)
        if (sets[i]->fmath.dot64_rows)
            out[n++] = &sets[i]->fmath;
    return n;
}

/* dot64_rows over attention keys of 64-wide heads (n = n_vec = 64, many
 * rows, the WebAssembly set's four-row path): bit for bit dot64 * scale with
 * an inf or NaN in an early row (the rest fall back), signed zeros (products
 * of -0 must come out as dot64's zeroed accumulators make them), rows 65
 * apart, and row counts that leave 1..3 over. */
static void test_dot64_rows_64(void)
{
    const lb_fmath *r = lb_fmath_scalar();
    const lb_fmath *with[4];
    int ns = dot64_rows_sets(with), bad = 0, cases = 0;
    static const int row_counts[] = {1, 4, 5, 7, 8, 13};
    for (int i = 0; i < ns; i++) {
        const lb_fmath *s = with[i];
        for (int mode = 0; mode < 4; mode++)
            for (int rc = 0; rc < 6; rc++) {
                const int rows = row_counts[rc];
                const size_t stride = mode == 3 ? 65 : 64;
                /* mode 2: b all -0, even rows +0 (every product -0), odd rows zeros of either sign */
                for (size_t k = 0; k < (size_t)rows * stride; k++)
                    hm[k] = mode == 2 ? (k / stride % 2 && rng_u64() & 1 ? 0x8000 : 0)
                                      : lb_f32_to_f16(rng_sym() * 4.0f);
                for (int e = 0; e < 64; e++)
                    hb[e] = mode == 2 ? 0x8000 : lb_f32_to_f16(rng_sym());
                if (mode == 1)   /* an infinity and a NaN in the first rows */
                    hm[(size_t)(rng_u64() % 64)] = 0x7c00, hm[stride * (rows > 2 ? 2 : 0) + 5] = 0x7e01;
                float out[13];
                s->dot64_rows(rows, 64, 64, hm, stride, hb, 0.125f, out);
                for (int k = 0; k < rows; k++, cases++) {
                    float want = r->dot64(64, 64, hm + (size_t)k * stride, hb) * 0.125f;
                    bad += !(same_bits(want, out[k]) || (isnan(want) && isnan(out[k])));
                }
            }
    }
    printf("  %d rows compared\n", cases);
    CHECKF(bad == 0, "dot64_rows n=64: %d of %d rows differ from dot64", bad, cases);
}

/* dot64_heads (64-wide keys against up to 8 query heads), where a set has
 * it: bit for bit dot64 * scale for every head and row, at row counts
 * around its groups of 8, 1..8 heads, rows 65 apart, with an inf and a NaN,
 * and with signed zeros (a -0 product must give dot64's +0), the outputs
 * strided with a guard after each head's rows. */
static void test_dot64_heads(void)
{
    const lb_fmath *r = lb_fmath_scalar();
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4), bad = 0, cases = 0, guards = 0;
    static const int row_counts[] = {1, 7, 8, 9, 16, 21};
    static lb_f16 qs[8 * 64];   /* [head][64] */
    for (int i = 0; i < ns; i++) {
        const lb_fmath *s = &sets[i]->fmath;
        if (!s->dot64_heads)
            continue;
        for (int mode = 0; mode < 4; mode++)
            for (int rc = 0; rc < 6; rc++)
                for (int nb = 1; nb <= 8; nb++) {
                    const int rows = row_counts[rc];
                    const size_t stride = mode == 3 ? 65 : 64, ostride = (size_t)rows + 1;
                    for (size_t k = 0; k < (size_t)rows * stride; k++)
                        hm[k] = mode == 2 ? (k / stride % 2 && rng_u64() & 1 ? 0x8000 : 0)
                                          : lb_f32_to_f16(rng_sym() * 4.0f);
                    for (int e = 0; e < 64 * nb; e++)
                        qs[e] = mode == 2 ? 0x8000 : lb_f32_to_f16(rng_sym());
                    if (mode == 1)
                        hm[(size_t)(rng_u64() % 64)] = 0x7c00, hm[stride * (size_t)(rows - 1) + 5] = 0x7e01;
                    float out[8 * 22];
                    for (size_t k = 0; k < sizeof out / sizeof out[0]; k++)
                        out[k] = -777.0f;
                    s->dot64_heads(rows, hm, stride, qs, nb, 0.125f, out, ostride);
                    for (int g = 0; g < nb; g++) {
                        guards += out[(size_t)g * ostride + (size_t)rows] != -777.0f;
                        for (int k = 0; k < rows; k++, cases++) {
                            float want = r->dot64(64, 64, hm + (size_t)k * stride, qs + 64 * g) * 0.125f;
                            float got = out[(size_t)g * ostride + (size_t)k];
                            bad += !(same_bits(want, got) || (isnan(want) && isnan(got)));
                        }
                    }
                }
    }
    printf("  %d head-rows compared\n", cases);
    CHECKF(bad == 0, "dot64_heads: %d of %d results differ from dot64", bad, cases);
    CHECKF(guards == 0, "dot64_heads wrote past a head's rows %d times", guards);
}

/* dot64_rows as attention's values call it: rows n_ctx apart, b the
 * probabilities, n past the 64-aligned n_vec (the tail added in double one
 * product at a time), and row counts around the AVX2 variant's groups of 8:
 * bit for bit dot64 * scale. */
static void test_dot64_rows_tails(void)
{
    const lb_fmath *r = lb_fmath_scalar();
    const lb_fmath *with[4];
    int ns = dot64_rows_sets(with), bad = 0, cases = 0;
    static const int row_counts[] = {1, 7, 8, 9, 17, 64, 75};
    static const int64_t shapes[][2] = {{150, 128}, {64, 64}, {100, 128}, {71, 64}, {200, 192}, {127, 64}, {20, 0}};
    enum { STRIDE = 211 };
    static lb_f16 rows_v[75 * STRIDE];
    for (int i = 0; i < ns; i++) {
        const lb_fmath *s = with[i];
        for (int li = 0; li < 7; li++)
            for (int rc = 0; rc < 7; rc++) {
                const int64_t n = shapes[li][0], nv = shapes[li][1];
                const int rows = row_counts[rc];
                for (size_t k = 0; k < (size_t)rows * STRIDE; k++)
                    rows_v[k] = lb_f32_to_f16(rng_sym() * 4.0f);
                for (int64_t e = 0; e < n; e++)
                    hb[e] = lb_f32_to_f16(rng_sym() * (float)(1 + (rng_u64() % 1000)) * 1e-3f);
                float out[75];
                s->dot64_rows(rows, n, nv, rows_v, STRIDE, hb, 0.5f, out);
                for (int k = 0; k < rows; k++, cases++)
                    bad += !same_bits(r->dot64(n, nv, rows_v + (size_t)k * STRIDE, hb) * 0.5f, out[k]);
            }
    }
    printf("  %d rows compared\n", cases);
    CHECKF(bad == 0, "dot64_rows with tails: %d of %d rows differ from dot64", bad, cases);
}

/* dot64_values, where a set has it: attention's values for 1..8 query
 * heads at once, bit for bit dot64 of every head and row, over contexts
 * whose n_vec is the attention's (the sequence padded to 32, whole
 * 64-groups: all tail below 32 positions, partial groups, tails after
 * whole groups), row counts around groups of 8 and past 64, rows n_ctx
 * apart, an infinity and a NaN, signed zeros (every product -0), a context
 * too long for the stack copy (the per-head fallback), a guard after each
 * head's outputs, and NaNs in the positions past n that the kernel may read. */
static void test_dot64_values(void)
{
    const lb_fmath *r = lb_fmath_scalar();
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4), bad = 0, cases = 0, guards = 0;
    static const int row_counts[] = {8, 13, 64, 72};
    static const int64_t lens_v[] = {1, 7, 20, 31, 32, 40, 63, 64, 65, 80, 95, 96, 100, 128, 140, 161, 300, 1100};
    enum { STRIDE = 1109, HEADS = 8, ROWS = 72 };
    static lb_f16 vals[ROWS * STRIDE], probs[HEADS * STRIDE];
    static float out[HEADS * (ROWS + 1)];
    for (int i = 0; i < ns; i++) {
        const lb_fmath *s = &sets[i]->fmath;
        if (!s->dot64_values)
            continue;
        for (size_t li = 0; li < sizeof lens_v / sizeof lens_v[0]; li++)
            for (int rc = 0; rc < 4; rc++)
                for (int nb = 1; nb <= HEADS; nb++) {
                    const int64_t n = lens_v[li], nv = ((n + 31) / 32 * 32) & ~(int64_t)63;
                    const int rows = row_counts[rc], mode = (int)((li + (size_t)rc + (size_t)nb) % 4);
                    if (n == 1100 && nb < 8 && rc != 0)
                        continue;   /* the fallback once per row count is enough */
                    /* mode 2: probabilities all -0, values +0 or zeros of either sign (every product -0) */
                    /* NaNs past n up to the rounding to 8 the kernel may read (fmath.h): they must not count */
                    for (int k = 0; k < rows; k++)
                        for (int64_t e = 0; e < (n + 7) / 8 * 8; e++)
                            vals[(size_t)k * STRIDE + (size_t)e] =
                                e >= n      ? 0x7e01
                                : mode == 2 ? (k % 2 && rng_u64() & 1 ? 0x8000 : 0)
                                            : lb_f32_to_f16(rng_sym() * 4.0f);
                    for (int g = 0; g < nb; g++)
                        for (int64_t e = 0; e < n; e++)
                            probs[(size_t)g * STRIDE + (size_t)e] =
                                mode == 2 ? 0x8000 : lb_f32_to_f16(rng_sym() * (float)(1 + rng_u64() % 1000) * 1e-3f);
                    if (mode == 1)   /* an infinity in row 0 and a NaN in the last row */
                        vals[rng_u64() % (uint64_t)n] = 0x7c00,
                        vals[(size_t)(rows - 1) * STRIDE + rng_u64() % (uint64_t)n] = 0x7e01;
                    const size_t ostride = (size_t)rows + 1;
                    for (size_t k = 0; k < (size_t)nb * ostride; k++)
                        out[k] = -777.0f;
                    s->dot64_values(rows, n, nv, vals, STRIDE, probs, STRIDE, nb, out, ostride);
                    for (int g = 0; g < nb; g++) {
                        guards += out[(size_t)g * ostride + (size_t)rows] != -777.0f;
                        for (int k = 0; k < rows; k++, cases++) {
                            float want = r->dot64(n, nv, vals + (size_t)k * STRIDE, probs + (size_t)g * STRIDE);
                            float got = out[(size_t)g * ostride + (size_t)k];
                            bad += !(same_bits(want, got) || (isnan(want) && isnan(got)));
                        }
                    }
                }
    }
    printf("  %d head-rows compared\n", cases);
    CHECKF(bad == 0, "dot64_values: %d of %d results differ from dot64", bad, cases);
    CHECKF(guards == 0, "dot64_values wrote past a head's rows %d times", guards);
}

/* The elementwise steps (RoPE both ways, RMSNorm's scale_mul, add): every
 * SIMD set equals the scalar references bit for bit over head sizes and
 * rotated widths that leave vector tails (n_rot 2..130, also below
 * head_dim), lengths of lens[], and values from tiny to huge with infinities
 * and NaN. */
static float ew_value(int rep)
{
    if (rep == 2 && rng_u64() % 61 == 0)
        return (rng_u64() & 1) ? INFINITY : NAN;
    return rng_sym() * ldexpf(1.0f, (int)(rng_u64() % 40) - 20);
}

static void test_elementwise(void)
{
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4), cases = 0, bad = 0;
    const lb_fmath *r = lb_fmath_scalar();
    static const int rots[] = {2, 6, 8, 10, 16, 18, 32, 34, 64, 66, 128, 130};
    static float xa[3 * 160], xb[3 * 160], cs[130];   /* [heads][head_dim], [n_rot/2][2] */
    for (int si = 0; si < ns; si++) {
        const lb_fmath *s = &sets[si]->fmath;
        for (int rep = 0; rep < 3; rep++)
            for (size_t ri = 0; ri < sizeof rots / sizeof rots[0]; ri++)
                for (int extra = 0; extra <= 30; extra += 30)
                    for (int neox = 0; neox < 2; neox++) {
                        const int n_rot = rots[ri], hd = n_rot + extra, heads = 1 + rep;
                        for (int i = 0; i < heads * hd; i++)
                            xa[i] = xb[i] = ew_value(rep);
                        for (int i = 0; i < n_rot / 2; i++) {
                            float th = rng_sym() * 1000.0f;
                            cs[2 * i] = cosf(th);
                            cs[2 * i + 1] = sinf(th);
                        }
                        (neox ? r->rope_neox : r->rope_norm)(xa, heads, hd, n_rot, cs);
                        (neox ? s->rope_neox : s->rope_norm)(xb, heads, hd, n_rot, cs);
                        for (int i = 0; i < heads * hd; i++)
                            bad += !same_bits(xa[i], xb[i]) && !(isnan(xa[i]) && isnan(xb[i]));
                        cases++;
                    }
        for (int rep = 0; rep < 3; rep++)
            for (int li = 0; li < N_LENS; li++) {
                int64_t n = lens[li];
                for (int64_t i = 0; i < n; i++) {
                    xf[i] = ew_value(rep);
                    uf[i] = ew_value(rep);
                    ya[i] = yb[i] = ew_value(rep);
                }
                const float scale = ldexpf(1.0f + rng_sym() * 0.5f, (int)(rng_u64() % 20) - 10);
                r->scale_mul(n, ga, xf, scale, uf);
                s->scale_mul(n, gb, xf, scale, uf);
                r->add(n, ya, xf);
                s->add(n, yb, xf);
                for (int64_t i = 0; i < n; i++) {
                    bad += !same_bits(ga[i], gb[i]) && !(isnan(ga[i]) && isnan(gb[i]));
                    bad += !same_bits(ya[i], yb[i]) && !(isnan(ya[i]) && isnan(yb[i]));
                }
                cases += 2;
            }
    }
    printf("  %d cases over %d SIMD sets\n", cases, ns);
    CHECKF(bad == 0, "elementwise steps: %d values differ from the references", bad);
}

int main(void)
{
    RUN(test_dot_orders);
    RUN(test_dot_accuracy);
    RUN(test_expf);
    RUN(test_exp_sum_silu_ref);
    RUN(test_simd_equals_ref);
    RUN(test_dot64_rows_64);
    RUN(test_dot64_rows_tails);
    RUN(test_dot64_heads);
    RUN(test_dot64_values);
    RUN(test_elementwise);
    return check_done();
}
