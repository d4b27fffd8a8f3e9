/* Tests of the K-quant kernels: the scalar reference against llama.cpp files
 * (ground truth), against itself (dot == dequantized dot, exactly, on integer
 * data), and every SIMD kernel set of this build (AVX2, NEON, WASM SIMD128)
 * against the reference. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "format/gguf.h"
#include "kernels/kernels.h"
#include "quant/blocks.h"
#include "quant/quant.h"

/* ---- deterministic random numbers */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_u64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint32_t rng_u32(uint32_t n) { return (uint32_t)(rng_u64() % n); }
static float rng_unit(void) { return (float)(rng_u64() >> 40) / (float)(1u << 24); } /* [0,1) */
static float rng_gauss(void)
{
    float u1 = rng_unit() + 1e-7f, u2 = rng_unit();
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

/* ---- the five types, described by where their fields sit */
typedef struct {
    lb_type type;
    const char *name;
    size_t bytes;                 /* per 256-element block */
    size_t off_d, off_dmin;       /* off_dmin == SIZE_MAX: no min */
    size_t off_scales, n_scales;
    float max_rel_rms_file;       /* ground-truth bound against the f16 model */
    float max_rel_rms_gauss;      /* our reference quantizer on Gaussian data */
} ktype;

static const ktype ktypes[] = {
    {LB_TYPE_Q2_K, "q2_K", sizeof(lb_block_q2_K), offsetof(lb_block_q2_K, d), offsetof(lb_block_q2_K, dmin),
     offsetof(lb_block_q2_K, scales), 16, 0.35f, 0.30f},
    {LB_TYPE_Q3_K, "q3_K", sizeof(lb_block_q3_K), offsetof(lb_block_q3_K, d), SIZE_MAX,
     offsetof(lb_block_q3_K, scales), 12, 0.18f, 0.17f},
    {LB_TYPE_Q4_K, "q4_K", sizeof(lb_block_q4_K), offsetof(lb_block_q4_K, d), offsetof(lb_block_q4_K, dmin),
     offsetof(lb_block_q4_K, scales), 12, 0.09f, 0.085f},
    {LB_TYPE_Q5_K, "q5_K", sizeof(lb_block_q5_K), offsetof(lb_block_q5_K, d), offsetof(lb_block_q5_K, dmin),
     offsetof(lb_block_q5_K, scales), 12, 0.045f, 0.043f},
    {LB_TYPE_Q6_K, "q6_K", sizeof(lb_block_q6_K), offsetof(lb_block_q6_K, d), SIZE_MAX,
     offsetof(lb_block_q6_K, scales), 16, 0.022f, 0.022f},
};
#define N_KTYPES (int)(sizeof ktypes / sizeof ktypes[0])

static void put_f16(uint8_t *p, float v)
{
    lb_f16 h = lb_f32_to_f16(v);
    memcpy(p, &h, 2);
}

/* A finite, sane f16 scale of random sign and magnitude 1e-4 .. 1e-1. */
static float rand_scale(void)
{
    float mag = powf(10.0f, -4.0f + 3.0f * rng_unit());
    return rng_u32(4) == 0 ? -mag : mag;
}

/* nb random blocks, with edge cases mixed in: saturated scales and quants,
 * zero scales, empty quants. */
static void make_blocks(const ktype *kt, uint8_t *buf, int nb)
{
    for (int b = 0; b < nb; b++) {
        uint8_t *p = buf + (size_t)b * kt->bytes;
        for (size_t i = 0; i < kt->bytes; i++)
            p[i] = (uint8_t)rng_u64();
        int mode = (int)rng_u32(10);
        if (mode == 6 || mode == 7) {  /* all quant bits set, scales at their extreme */
            memset(p, 0xFF, kt->bytes);
            memset(p + kt->off_scales, kt->type == LB_TYPE_Q6_K && mode == 7 ? 0x80 : 0xFF, kt->n_scales);
        }
        if (mode == 8) {               /* empty quants, max scales */
            memset(p, 0, kt->bytes);
            memset(p + kt->off_scales, 0xFF, kt->n_scales);
        }
        put_f16(p + kt->off_d, mode == 9 ? 0.0f : rand_scale());
        if (kt->off_dmin != SIZE_MAX)
            put_f16(p + kt->off_dmin, mode == 9 && rng_u32(2) ? 0.0f : rand_scale());
    }
}

/* n activations: Gaussian, plus per block a chance of outliers, exact
 * rounding ties, or all zeros. */
static void make_acts(float *x, int n)
{
    for (int b = 0; b < n / LB_QK_K; b++) {
        float *y = x + b * LB_QK_K;
        int mode = (int)rng_u32(6);
        for (int i = 0; i < LB_QK_K; i++)
            y[i] = rng_gauss();
        if (mode == 1)
            y[rng_u32(LB_QK_K)] = 1000.0f;
        if (mode == 2 || mode == 3) {
            /* max|x| = 127 * step, so d = step and x / d = k + 0.5 exactly */
            float step = mode == 2 ? 1.0f : 0.5f;
            for (int i = 0; i < LB_QK_K; i++)
                y[i] = ((float)((int)rng_u32(254) - 127) + 0.5f) * step;
            y[0] = 127.0f * step;
        }
        if (mode == 4)
            memset(y, 0, LB_QK_K * sizeof *y);
    }
}

static const int sizes_k[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 43, 22};
#define N_SIZES (int)(sizeof sizes_k / sizeof sizes_k[0])
#define MAX_BLOCKS 43

/* The SIMD kernel set under test (main runs the comparisons once per set),
 * or NULL when the build has none. */
static const lb_kernel_set *cur_set;

/* ---- A8_K quantizer: the rule itself, then SIMD == reference */
static void test_a8_rule(void)
{
    const lb_quant_traits *r = lb_quant_ref(LB_TYPE_A8_K);
    CHECK(r && r->quantize);
    if (!r || !r->quantize)
        return;
    float x[LB_QK_K]; /* [256] */
    lb_block_a8_K a;
    for (int i = 0; i < LB_QK_K; i++)
        x[i] = (float)(i % 9) - 4.5f;          /* ties at +-0.5 .. +-4.5 */
    x[255] = 127.0f;                            /* d = 1 */
    r->quantize(x, &a, LB_QK_K);
    CHECK(a.d == 1.0f);
    static const int8_t want[9] = {-4, -4, -2, -2, 0, 0, 2, 2, 4}; /* half to even */
    int ok = 1;
    for (int i = 0; i < 255; i++)
        ok &= a.qs[i] == want[i % 9];
    CHECK(ok);
    CHECK(a.qs[255] == 127);
    for (int k = 0; k < 16; k++) {
        int s = 0;
        for (int i = 0; i < 16; i++)
            s += a.qs[16 * k + i];
        CHECKF(a.bsums[k] == s, "bsums[%d] = %d, want %d", k, a.bsums[k], s);
    }
    memset(x, 0, sizeof x);
    x[7] = -3.0f;                               /* the extreme may be negative */
    r->quantize(x, &a, LB_QK_K);
    CHECK(a.qs[7] == -127 && fabsf(a.d - 3.0f / 127.0f) == 0.0f);
    memset(x, 0, sizeof x);
    r->quantize(x, &a, LB_QK_K);
    CHECK(a.d == 0.0f && a.qs[0] == 0 && a.bsums[15] == 0);
}

static void test_a8_simd(void)
{
    const lb_kernel_set *ks = lb_kernels_scalar(), *kv = cur_set;
    if (!kv) {
        printf("  (no SIMD kernel set: skipped)\n");
        return;
    }
    static float x[MAX_BLOCKS * LB_QK_K];
    static lb_block_a8_K a0[MAX_BLOCKS], a1[MAX_BLOCKS];
    for (int rep = 0; rep < 4; rep++)
        for (int si = 0; si < N_SIZES; si++) {
            int n = sizes_k[si] * LB_QK_K;
            make_acts(x, n);
            memset(a0, 0x55, sizeof a0);
            memset(a1, 0xAA, sizeof a1);
            ks->quantize[LB_TYPE_A8_K](x, a0, n);
            kv->quantize[LB_TYPE_A8_K](x, a1, n);
            CHECKF(memcmp(a0, a1, (size_t)sizes_k[si] * sizeof *a0) == 0, "%s n=%d rep=%d", kv->isa, n, rep);
        }
}

/* ---- dequantize: SIMD == reference, bit for bit */
static void test_dequant_simd(void)
{
    const lb_kernel_set *ks = lb_kernels_scalar(), *kv = cur_set;
    if (!kv) {
        printf("  (no SIMD kernel set: skipped)\n");
        return;
    }
    static uint8_t w[MAX_BLOCKS * sizeof(lb_block_q6_K)];
    static float y0[MAX_BLOCKS * LB_QK_K], y1[MAX_BLOCKS * LB_QK_K];
    for (int t = 0; t < N_KTYPES; t++) {
        const ktype *kt = &ktypes[t];
        CHECKF(ks->dequant[kt->type] && kv->dequant[kt->type], "%s", kt->name);
        if (!ks->dequant[kt->type] || !kv->dequant[kt->type])
            continue;
        int bad = 0;
        for (int rep = 0; rep < 3; rep++)
            for (int si = 0; si < N_SIZES; si++) {
                int n = sizes_k[si] * LB_QK_K;
                make_blocks(kt, w, sizes_k[si]);
                ks->dequant[kt->type](w, y0, n);
                kv->dequant[kt->type](w, y1, n);
                bad += memcmp(y0, y1, (size_t)n * sizeof(float)) != 0;
            }
        CHECKF(bad == 0, "%s %s: %d mismatching cases", kv->isa, kt->name, bad);
    }
}

/* The -relaxed WebAssembly builds' Q4_K and Q6_K dots keep the reference's
 * lanes and order, with relaxed SIMD's multiply-add for its fused one
 * (kernels/wasm/wasm_k.c).  Where the engine does not fuse it, each of nb
 * super-blocks adds one rounding of at most 2^-24 of a partial sum, itself
 * at most sum |w_i a_i|, plus 2^-149 where the product is subnormal; allowed:
 * twice that.  Everything else, there and in every other build, bit for bit. */
static int float_tolerant(const lb_kernel_set *kv, uint32_t type)
{
#if defined(LB_WASM_RELAXED)
    return strncmp(kv->isa, "wasm", 4) == 0 && (type == LB_TYPE_Q4_K || type == LB_TYPE_Q6_K);
#else
    (void)kv;
    (void)type;
    return 0;
#endif
}
static double madd_tol(int nb, double mag) { return 2.0 * nb * (0x1p-24 * mag + 0x1p-149); }

/* sum |w_i a_i| over n elements of a weight row and A8_K activations */
static double dot_mag(const ktype *kt, const void *w, const lb_block_a8_K *a, int n)
{
    static float wf[MAX_BLOCKS * LB_QK_K], af[MAX_BLOCKS * LB_QK_K];
    lb_kernels_scalar()->dequant[kt->type](w, wf, n);
    lb_quant_ref(LB_TYPE_A8_K)->dequant(a, af, n);
    double mag = 0;
    for (int i = 0; i < n; i++)
        mag += fabs((double)wf[i] * af[i]);
    return mag;
}

/* ---- dot products: SIMD vs reference bit for bit (and, to say how far off
 * a failure is, within 1e-6 of sum |w_i a_i|) */
static void test_dot_simd(void)
{
    const lb_kernel_set *ks = lb_kernels_scalar(), *kv = cur_set;
    if (!kv) {
        printf("  (no SIMD kernel set: skipped)\n");
        return;
    }
    static uint8_t w[MAX_BLOCKS * sizeof(lb_block_q6_K)];
    static float x[MAX_BLOCKS * LB_QK_K], wf[MAX_BLOCKS * LB_QK_K], af[MAX_BLOCKS * LB_QK_K];
    static lb_block_a8_K a[MAX_BLOCKS];
    const lb_quant_traits *ra = lb_quant_ref(LB_TYPE_A8_K);
    for (int t = 0; t < N_KTYPES; t++) {
        const ktype *kt = &ktypes[t];
        CHECKF(ks->vec_dot[kt->type] && kv->vec_dot[kt->type], "%s", kt->name);
        if (!ks->vec_dot[kt->type] || !kv->vec_dot[kt->type])
            continue;
        double worst = 0;
        int exact = 0, cases = 0;
        for (int rep = 0; rep < 3; rep++)
            for (int si = 0; si < N_SIZES; si++) {
                int n = sizes_k[si] * LB_QK_K;
                make_blocks(kt, w, sizes_k[si]);
                make_acts(x, n);
                ra->quantize(x, a, n);
                ks->dequant[kt->type](w, wf, n);
                ra->dequant(a, af, n);
                double mag = 0;
                for (int i = 0; i < n; i++)
                    mag += fabs((double)wf[i] * af[i]);
                float s0 = NAN, s1 = NAN;
                ks->vec_dot[kt->type](n, &s0, w, a);
                kv->vec_dot[kt->type](n, &s1, w, a);
                double err = fabs((double)s0 - s1), tol = 1e-6 * mag + 1e-30;
                if (float_tolerant(kv, kt->type))
                    tol = madd_tol(sizes_k[si], mag);
                CHECKF(err <= tol, "%s %s n=%d: simd %.9g ref %.9g (sum|wa| %.6g)", kv->isa, kt->name, n, s1, s0, mag);
                if (mag > 0 && err / mag > worst)
                    worst = err / mag;
                exact += memcmp(&s0, &s1, sizeof s0) == 0;
                cases++;
            }
        printf("  %s %s: worst |simd-ref|/sum|wa| = %.3g, bit-exact %d/%d\n", kv->isa, kt->name, worst, exact, cases);
        /* every K-quant kernel follows the reference's float order (ref_k.c) */
        if (!float_tolerant(kv, kt->type))
            CHECKF(exact == cases, "%s %s: only %d of %d dots bit-exact", kv->isa, kt->name, exact, cases);
    }
}

/* ---- scales at the edges of float: activations scaled down to 1e-30 .. 1e-41
 * make d_a * d_w tiny or subnormal in some blocks of a row (the WebAssembly
 * kernels' exact fused multiply-add has a separate path for those rows),
 * and half-integer activations with power-of-two scales make float ties
 * likely.  SIMD must equal the reference bit for bit. */
static void test_dot_edges(void)
{
    const lb_kernel_set *ks = lb_kernels_scalar(), *kv = cur_set;
    if (!kv) {
        printf("  (no SIMD kernel set: skipped)\n");
        return;
    }
    static uint8_t w[MAX_BLOCKS * sizeof(lb_block_q6_K)];
    static float x[MAX_BLOCKS * LB_QK_K];
    static lb_block_a8_K a[MAX_BLOCKS];
    const lb_quant_traits *ra = lb_quant_ref(LB_TYPE_A8_K);
    const float tiny[] = {1e-30f, 1e-33f, 1e-36f, 1e-38f, 1e-40f, 1e-41f};
    for (int t = 0; t < N_KTYPES; t++) {
        const ktype *kt = &ktypes[t];
        if (!ks->vec_dot[kt->type] || !kv->vec_dot[kt->type])
            continue;
        int exact = 0, cases = 0;
        for (int rep = 0; rep < 6; rep++)
            for (int si = 0; si < N_SIZES; si++) {
                int nb = sizes_k[si], n = nb * LB_QK_K;
                make_blocks(kt, w, nb);
                make_acts(x, n);
                for (int b = 0; b < nb; b++) {
                    float f = rep < 4 ? (rng_u32(3) ? tiny[rng_u32(6)] : 1.0f) : 1.0f;
                    if (rep >= 4)   /* power-of-two weight scales: products land on ties more often */
                        put_f16(w + (size_t)b * kt->bytes + kt->off_d, ldexpf(1.0f, -(int)rng_u32(12)));
                    for (int i = 0; i < LB_QK_K; i++)
                        x[b * LB_QK_K + i] *= f;
                }
                ra->quantize(x, a, n);
                float s0 = NAN, s1 = NAN;
                ks->vec_dot[kt->type](n, &s0, w, a);
                kv->vec_dot[kt->type](n, &s1, w, a);
                int same = memcmp(&s0, &s1, sizeof s0) == 0;
                if (float_tolerant(kv, kt->type))
                    CHECKF(fabs((double)s0 - s1) <= madd_tol(nb, dot_mag(kt, w, a, n)),
                           "%s %s edges rep %d n=%d: simd %a ref %a", kv->isa, kt->name, rep, n, s1, s0);
                else
                    CHECKF(same, "%s %s edges rep %d n=%d: simd %a ref %a", kv->isa, kt->name, rep, n, s1, s0);
                exact += same;
                cases++;
            }
        printf("  %s %s edges: bit-exact %d/%d\n", kv->isa, kt->name, exact, cases);
    }
}

/* ---- the integer part is exact: with d_w = dmin_w = d_a = 1 every product
 * is an integer, so the reference dot, the SIMD dot and the dot of the
 * dequantized rows must all equal the exact integer sum.  This also ties the
 * reference dot to the reference dequantizer bit for bit. */
static void set_unit_scales(const ktype *kt, uint8_t *w, int nb)
{
    for (int b = 0; b < nb; b++) {
        put_f16(w + (size_t)b * kt->bytes + kt->off_d, 1.0f);
        if (kt->off_dmin != SIZE_MAX)
            put_f16(w + (size_t)b * kt->bytes + kt->off_dmin, 1.0f);
    }
}

/* Activations are kept to +-31 (or all 127 when saturating) so that 43
 * blocks of random data stay inside float's exact integers (2^24). */
static void make_int_acts(lb_block_a8_K *a, int nb, int saturate)
{
    for (int b = 0; b < nb; b++) {
        a[b].d = 1.0f;
        for (int i = 0; i < LB_QK_K; i++)
            a[b].qs[i] = (int8_t)(saturate ? 127 : (int)rng_u32(63) - 31);
        for (int k = 0; k < 16; k++) {
            int s = 0;
            for (int i = 0; i < 16; i++)
                s += a[b].qs[16 * k + i];
            a[b].bsums[k] = (int16_t)s;
        }
    }
}

static void test_dot_integer(void)
{
    const lb_kernel_set *ks = lb_kernels_scalar(), *kv = cur_set;
    static uint8_t w[MAX_BLOCKS * sizeof(lb_block_q6_K)];
    static float wf[MAX_BLOCKS * LB_QK_K];
    static lb_block_a8_K a[MAX_BLOCKS];
    for (int t = 0; t < N_KTYPES; t++) {
        const ktype *kt = &ktypes[t];
        if (!ks->vec_dot[kt->type] || !ks->dequant[kt->type]) {
            CHECKF(0, "%s: no reference", kt->name);
            continue;
        }
        int bad_ref = 0, bad_simd = 0;
        for (int rep = 0; rep < 4; rep++)
            for (int si = 0; si < N_SIZES; si++) {
                int nb = sizes_k[si], n = nb * LB_QK_K;
                make_blocks(kt, w, nb);
                set_unit_scales(kt, w, nb);
                make_int_acts(a, nb, 0);
                ks->dequant[kt->type](w, wf, n);
                int64_t want = 0;
                for (int i = 0; i < n; i++)
                    want += (int64_t)wf[i] * a[i / LB_QK_K].qs[i % LB_QK_K];
                if (llabs(want) >= (1 << 23)) {  /* beyond exact float integers: data too extreme */
                    CHECKF(0, "%s: test data too large (%lld)", kt->name, (long long)want);
                    continue;
                }
                float s0 = NAN, s1 = NAN;
                ks->vec_dot[kt->type](n, &s0, w, a);
                bad_ref += s0 != (float)want;
                if (kv) {
                    kv->vec_dot[kt->type](n, &s1, w, a);
                    bad_simd += s1 != (float)want;
                }
                if (s0 != (float)want || (kv && s1 != (float)want))
                    fprintf(stderr, "  %s n=%d: want %lld ref %.1f simd %.1f\n", kt->name, n, (long long)want, s0, s1);
            }
        CHECKF(bad_ref == 0, "%s: reference dot != integer sum in %d cases", kt->name, bad_ref);
        CHECKF(bad_simd == 0, "%s: SIMD dot != integer sum in %d cases", kt->name, bad_simd);

        /* saturation: every quant bit set, extreme scales, all activations 127;
         * the sums leave the exact-float range, so compare SIMD with reference
         * bit for bit and the reference with the int64 truth loosely. */
        for (int v = 0; v < 2; v++) {
            memset(w, 0xFF, kt->bytes);
            memset(w + kt->off_scales, kt->type == LB_TYPE_Q6_K && v ? 0x80 : 0xFF, kt->n_scales);
            set_unit_scales(kt, w, 1);
            make_int_acts(a, 1, 1);
            ks->dequant[kt->type](w, wf, LB_QK_K);
            int64_t want = 0;
            for (int i = 0; i < LB_QK_K; i++)
                want += (int64_t)wf[i] * 127;
            float s0 = NAN, s1 = NAN;
            ks->vec_dot[kt->type](LB_QK_K, &s0, w, a);
            CHECKF(fabs((double)s0 - (double)want) <= 1e-6 * fabs((double)want) + 1, "%s saturated: ref %.1f want %lld",
                   kt->name, s0, (long long)want);
            if (kv) {
                kv->vec_dot[kt->type](LB_QK_K, &s1, w, a);
                if (float_tolerant(kv, kt->type))
                    CHECKF(fabs((double)s0 - s1) <= madd_tol(1, dot_mag(kt, w, a, LB_QK_K)), "%s saturated: simd %.1f ref %.1f",
                           kt->name, s1, s0);
                else
                    CHECKF(s0 == s1, "%s saturated: simd %.1f ref %.1f", kt->name, s1, s0);
            }
        }
    }
}

/* ---- reference quantizers: valid blocks that round-trip with low error */
static void test_quantize_roundtrip(void)
{
    static float x[16 * LB_QK_K], y[16 * LB_QK_K], y1[16 * LB_QK_K];
    static uint8_t w[16 * sizeof(lb_block_q6_K)];
    const int n = 16 * LB_QK_K;
    const lb_kernel_set *kv = cur_set;
    for (int t = 0; t < N_KTYPES; t++) {
        const ktype *kt = &ktypes[t];
        const lb_quant_traits *r = lb_quant_ref(kt->type);
        CHECKF(r && r->quantize && r->dequant, "%s", kt->name);
        if (!r || !r->quantize || !r->dequant)
            continue;
        for (int i = 0; i < n; i++)   /* per-block spread varies, some offset: a min matters */
            x[i] = rng_gauss() * (0.01f + 0.01f * (float)(i / LB_QK_K)) + (i / LB_QK_K % 3 == 0 ? 0.02f : 0.0f);
        r->quantize(x, w, n);
        r->dequant(w, y, n);
        double e2 = 0, s2 = 0;
        for (int i = 0; i < n; i++) {
            e2 += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            s2 += (double)x[i] * x[i];
        }
        double rel = sqrt(e2 / s2);
        printf("  %s reference quantizer: relative RMS error %.4f on Gaussian data\n", kt->name, rel);
        CHECKF(rel < kt->max_rel_rms_gauss, "%s: relative RMS %.4f", kt->name, rel);
        if (kv) {
            kv->dequant[kt->type](w, y1, n);
            CHECKF(memcmp(y, y1, sizeof y) == 0, "%s: SIMD dequant of quantizer output", kt->name);
        }
        memset(x, 0, LB_QK_K * sizeof *x);
        r->quantize(x, w, LB_QK_K);
        r->dequant(w, y, LB_QK_K);
        int zero = 1;
        for (int i = 0; i < LB_QK_K; i++)
            zero &= y[i] == 0.0f;
        CHECKF(zero, "%s: zeros do not round-trip", kt->name);
    }
}

/* ---- ground truth: llama.cpp's K-quant files against the f16 file they were
 * made from.  A misplaced bit gives errors near 100%, not a few percent. */
static void check_file(const lb_gguf *gf, const char *file)
{
    lb_gguf *g = NULL;
    lb_err err;
    lb_status st = lb_gguf_open_file(check_shared(file), true, &g, &err);
    CHECKF(st == LB_OK, "%s: %s", file, err.msg);
    if (st != LB_OK)
        return;
    const lb_kernel_set *kv = cur_set;
    int seen[LB_TYPE_COUNT] = {0};
    for (int64_t ti = 0; ti < lb_gguf_n_tensors(g); ti++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, ti);
        const ktype *kt = NULL;
        for (int k = 0; k < N_KTYPES; k++)
            if (ktypes[k].type == t->type)
                kt = &ktypes[k];
        if (!kt || seen[t->type] >= 3)
            continue;
        seen[t->type]++;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        const lb_gguf_tensor *tf = lb_gguf_find_tensor(gf, name);
        CHECKF(tf && tf->type == LB_TYPE_F16, "%s: no f16 counterpart of %s", file, name);
        if (!tf || tf->type != LB_TYPE_F16)
            continue;
        int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        float *y = malloc((size_t)n * sizeof *y);   /* [n] dequantized */
        float *y1 = malloc((size_t)n * sizeof *y1); /* [n] SIMD dequantized */
        if (!y || !y1) {
            CHECK(0);
            free(y);
            free(y1);
            continue;
        }
        lb_quant_ref(kt->type)->dequant(t->data, y, n);
        const lb_f16 *h = tf->data;
        double e2 = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++) {
            lb_f16 hv;
            memcpy(&hv, h + i, 2);
            double f = lb_f16_to_f32(hv);
            e2 += (y[i] - f) * (y[i] - f);
            s2 += f * f;
        }
        double rel = sqrt(e2 / s2);
        printf("  %s %-26s %s: relative RMS error %.4f\n", file, name, kt->name, rel);
        CHECKF(rel < kt->max_rel_rms_file, "%s %s (%s): relative RMS %.4f", file, name, kt->name, rel);
        if (kv) {
            kv->dequant[kt->type](t->data, y1, n);
            CHECKF(memcmp(y, y1, (size_t)n * sizeof *y) == 0, "%s %s: SIMD dequant differs", file, name);
        }
        free(y);
        free(y1);
    }
    lb_gguf_free(g);
}

static void test_ground_truth(void)
{
    lb_gguf *gf = NULL;
    lb_err err;
    lb_status st = lb_gguf_open_file(check_shared("models/techdocs-28M-f16.gguf"), true, &gf, &err);
    CHECKF(st == LB_OK, "f16 model: %s", err.msg);
    if (st != LB_OK)
        return;
    check_file(gf, "models/techdocs-28M-Q4_K_M.gguf");
    check_file(gf, "models/techdocs-28M-Q3_K_M.gguf");
    check_file(gf, "models/techdocs-28M-Q2_K.gguf");
    lb_gguf_free(gf);
}

/* ---- WebAssembly's emulated fused multiply-add (kernels/wasm/wasm_fma.h)
 * equals fmaf: a case where rounding the double sum to float would round
 * twice, near-ties built on purpose, random operands and special values. */
#if defined(__wasm_simd128__)
#include "kernels/wasm/wasm_fma.h"

static int fma4_matches(float d, const float x[4], const float acc[4])
{
    float got[4];
    wasm_v128_store(got, lb__wasm_fma4(d, wasm_v128_load(x), wasm_v128_load(acc)));
    int ok = 1;
    for (int k = 0; k < 4; k++) {
        float want = fmaf(d, x[k], acc[k]);
        ok &= memcmp(&want, &got[k], 4) == 0 || (want != want && got[k] != got[k]);
    }
    return ok;
}

static void test_wasm_fma(void)
{
    /* exact sum 1 + 2^-24 + 2^-60: above the float midpoint, so 1 + 2^-23;
     * the double sum drops 2^-60 and the float rounding then ties to 1 */
    const float d0 = -262143.0f * 0x1p-60f, x0[4] = {262145.0f, 262145.0f, 1.0f, 0.0f};
    const float a0[4] = {1.0f + 0x1p-23f, -(1.0f + 0x1p-23f), 1.0f, -0.0f};
    float got[4];
    wasm_v128_store(got, lb__wasm_fma4(d0, wasm_v128_load(x0), wasm_v128_load(a0)));
    CHECKF(got[0] == 1.0f + 0x1p-23f, "double-rounding case: %a", (double)got[0]);
    CHECK(fma4_matches(d0, x0, a0));
    int bad = 0;
    for (int rep = 0; rep < 200000; rep++) {
        float x[4], acc[4], d = ldexpf(rng_gauss(), (int)rng_u32(40) - 20);
        for (int k = 0; k < 4; k++) {
            x[k] = (float)((int)rng_u32(1u << 24) - (1 << 23));
            acc[k] = ldexpf(rng_gauss(), (int)rng_u32(60) - 10);
            if (rep & 1) {
                /* acc + d*x close to a float tie: acc = -(d*x rounded) + half an ulp or so */
                float p = d * x[k];
                acc[k] = -p + ldexpf((float)(rng_u32(5)) - 2.0f, ilogbf(p) - 24);
            }
        }
        bad += !fma4_matches(d, x, acc);
    }
    CHECKF(bad == 0, "%d of 200000 random cases differ from fmaf", bad);
    const float inf = __builtin_inff();
    const float xs[4] = {inf, -inf, 0.0f, 1.0f}, as[4] = {1.0f, 2.0f, inf, __builtin_nanf("")};
    CHECK(fma4_matches(2.0f, xs, as));
    const float xz[4] = {0.0f, -0.0f, 1e-30f, 3.0f}, az[4] = {-0.0f, -0.0f, -0.0f, -6.0f};
    CHECK(fma4_matches(-1.0f, xz, az));
    CHECK(fma4_matches(1e-45f, xz, az));
}
#else
static void test_wasm_fma(void) { printf("  (not a WebAssembly SIMD build: skipped)\n"); }
#endif

/* ---- speed, for information: one 4096-element Q4_K row dotted repeatedly
 * by the reference and by each SIMD set (not a pass/fail criterion: the
 * machine is shared). */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double ns_per_dot(lb_vec_dot_fn dot, int n, const void *w, const void *a)
{
    float s = 0, sink = 0;
    int reps = 0;
    double t0 = now_s(), t;
    do {
        for (int k = 0; k < 64; k++, reps++) {
            dot(n, &s, w, a);
            sink += s;
        }
        t = now_s() - t0;
    } while (t < 0.15);
    CHECK(sink == sink || sink != sink);   /* keeps the calls */
    return 1e9 * t / reps;
}

static void test_speed(void)
{
    enum { NB = 16 };
    static uint8_t w[NB * sizeof(lb_block_q6_K)];
    static float x[NB * LB_QK_K];
    static lb_block_a8_K a[NB];
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4);
    const lb_type types[2] = {LB_TYPE_Q4_K, LB_TYPE_Q6_K};
    for (int ti = 0; ti < 2; ti++) {
        const ktype *kt = NULL;
        for (int k = 0; k < N_KTYPES; k++)
            if (ktypes[k].type == types[ti])
                kt = &ktypes[k];
        make_blocks(kt, w, NB);
        make_acts(x, NB * LB_QK_K);
        lb_quant_ref(LB_TYPE_A8_K)->quantize(x, a, NB * LB_QK_K);
        double ref = ns_per_dot(lb_kernels_scalar()->vec_dot[kt->type], NB * LB_QK_K, w, a);
        printf("  speed %s n=%d: scalar %.0f ns", kt->name, NB * LB_QK_K, ref);
        for (int i = 0; i < ns; i++) {
            double t = ns_per_dot(sets[i]->vec_dot[kt->type], NB * LB_QK_K, w, a);
            printf(", %s %.0f ns (%.1fx)", sets[i]->isa, t, ref / t);
        }
        printf("\n");
    }
}

int main(void)
{
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4);
    cur_set = ns ? sets[0] : NULL;
    printf("  SIMD kernel sets: %d%s\n", ns, ns ? "" : " (SIMD comparisons skipped)");
    RUN(test_ground_truth);
    RUN(test_a8_rule);
    RUN(test_quantize_roundtrip);
    RUN(test_wasm_fma);
    for (int i = 0; i < (ns ? ns : 1); i++) {
        cur_set = ns ? sets[i] : NULL;
        if (cur_set)
            printf("  -- %s\n", cur_set->isa);
        RUN(test_a8_simd);
        RUN(test_dequant_simd);
        RUN(test_dot_integer);
        RUN(test_dot_simd);
        RUN(test_dot_edges);
    }
    RUN(test_speed);
    return check_done();
}
