/* Tests of lowbit's own LBQ2/LBQ3/LBQ4 formats: the rotation, the reference dot
 * product against its own dequantization, every SIMD kernel set against the
 * reference (bit-exact) at awkward block counts, and the quality quantizer's
 * error, with and without an importance vector. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/threadpool.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "quant/lbq.h"
#include "quant/quant.h"
#include "quant/quantize.h"

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint64_t rng_u64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rng_unit(void) { return (float)(rng_u64() >> 40) / (float)(1u << 24); }
static float rng_gauss(void)
{
    float u1 = rng_unit() + 1e-7f, u2 = rng_unit();
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

#define MAX_BLOCKS 43
static const int blocks[] = {1, 2, 3, 5, 7, 11, 16, 43};
#define N_BLOCKS (int)(sizeof blocks / sizeof blocks[0])

static const uint32_t lbq_types[3] = {LB_TYPE_LBQ2, LB_TYPE_LBQ3, LB_TYPE_LBQ4};
static const size_t lbq_sizes[3] = {sizeof(lb_block_lbq2), sizeof(lb_block_lbq3), sizeof(lb_block_lbq4)};

static void test_type_table(void)
{
    CHECK(lb_type_from_name("lbq2") == LB_TYPE_LBQ2 && lb_type_from_name("LBQ3") == LB_TYPE_LBQ3);
    CHECK(lb_type_row_bytes(LB_TYPE_LBQ2, 512) == 2 * sizeof(lb_block_lbq2));
    CHECK(lb_type_row_bytes(LB_TYPE_LBQ3, 256) == sizeof(lb_block_lbq3));
    CHECK(lb_type_row_bytes(LB_TYPE_LBQ2, 300) == 0); /* not a whole block */
    CHECK(lb_type_row_bytes(LB_TYPE_A8_H, 256) == sizeof(lb_block_a8_K));
    const lb_quant_traits *t2 = lb_quant_ref(LB_TYPE_LBQ2), *t3 = lb_quant_ref(LB_TYPE_LBQ3);
    CHECK(t2 && t2->act_type == LB_TYPE_A8_H && t2->vec_dot && t2->dequant);
    CHECK(t3 && t3->act_type == LB_TYPE_A8_H && t3->vec_dot && t3->dequant);
    CHECK(lb_quantize_supported(LB_TYPE_LBQ2) && lb_quantize_supported(LB_TYPE_LBQ3));
    CHECK(lb_type_from_name("lbq4") == LB_TYPE_LBQ4 && lb_type_row_bytes(LB_TYPE_LBQ4, 768) == 3 * 134);
    const lb_quant_traits *t4 = lb_quant_ref(LB_TYPE_LBQ4);
    CHECK(t4 && t4->act_type == LB_TYPE_A8_H && t4->vec_dot && t4->dequant && lb_quantize_supported(LB_TYPE_LBQ4));
    /* an id next to ours that names nothing stays unknown, so such files are refused */
    CHECK(lb_type_layout_of(104) == NULL);
}

static void test_rotation(void)
{
    float x[256], y[256];
    double n0 = 0, n1 = 0, maxd = 0;
    for (int i = 0; i < 256; i++) {
        x[i] = y[i] = rng_gauss();
        n0 += (double)x[i] * x[i];
    }
    lb__lbq_rotate(y);
    for (int i = 0; i < 256; i++)
        n1 += (double)y[i] * y[i];
    CHECKF(fabs(n1 / n0 - 1) < 1e-5, "norm ratio %g", n1 / n0);
    lb__lbq_unrotate(y);
    /* a plain comparison, not fmax: aarch64 gcc 12 -O2 crashes vectorizing a double fmax reduction */
    for (int i = 0; i < 256; i++) {
        double d = fabs((double)y[i] - x[i]);
        if (d > maxd)
            maxd = d;
    }
    CHECKF(maxd < 1e-5, "round trip off by %g", maxd);
    /* incoherence: a single spike spreads evenly over the block */
    memset(y, 0, sizeof y);
    y[37] = 16.0f;
    lb__lbq_rotate(y);
    int even = 1, neg = 0;
    for (int i = 0; i < 256; i++) {
        even &= fabsf(y[i]) == 1.0f;
        neg += y[i] < 0;
    }
    CHECK(even);
    CHECKF(neg > 64 && neg < 192, "%d negative", neg);
}

/* Random but valid blocks: any bit pattern is a valid quant; d finite and small. */
static void random_blocks(uint8_t *w, int nb, size_t bsize)
{
    for (size_t i = 0; i < (size_t)nb * bsize; i++)
        w[i] = (uint8_t)rng_u64();
    for (int b = 0; b < nb; b++) {
        lb_f16 d = lb_f32_to_f16((rng_unit() + 0.01f) * 0.01f);
        memcpy(w + (size_t)b * bsize, &d, sizeof d);
    }
}

static void make_acts(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = rng_gauss() * (i % 97 == 0 ? 20.0f : 1.0f);
    if (n >= 512)
        memset(x + 256, 0, 256 * sizeof *x); /* an all-zero block */
}

/* The reference dot equals the dot of the rotated dequantized weights with
 * the dequantized activations (up to float rounding): the integer path and
 * the unpacking agree with dequantization. */
static void test_dot_vs_dequant(void)
{
    static float x[MAX_BLOCKS * 256], w[MAX_BLOCKS * 256], xa[MAX_BLOCKS * 256];
    static uint8_t wq[MAX_BLOCKS * sizeof(lb_block_lbq4)];
    static lb_block_a8_K a[MAX_BLOCKS];
    const uint32_t *types = lbq_types;
    for (int ti = 0; ti < 3; ti++) {
        const lb_quant_traits *t = lb_quant_ref(types[ti]), *ta = lb_quant_ref(LB_TYPE_A8_H);
        for (int bi = 0; bi < N_BLOCKS; bi++) {
            int n = blocks[bi] * 256;
            make_acts(x, n);
            for (int i = 0; i < n; i++)
                w[i] = rng_gauss();
            lb_quantize_row(types[ti], w, wq, n, NULL);
            ta->quantize(x, a, n);
            t->dequant(wq, w, n);
            ta->dequant(a, xa, n);
            double ref = 0, mag = 0;
            for (int b = 0; b < n / 256; b++) {
                lb__lbq_rotate(w + 256 * b);
                for (int i = 256 * b; i < 256 * b + 256; i++) {
                    ref += (double)w[i] * xa[i];
                    mag += fabs((double)w[i] * xa[i]);
                }
            }
            float s = 0;
            t->vec_dot(n, &s, wq, a);
            CHECKF(fabs(s - ref) <= 1e-4 * mag + 1e-6, "type %u n=%d: dot %g, dequantized %g", types[ti], n, s, ref);
        }
    }
}

static void test_simd_bitexact(void)
{
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4);
    const lb_kernel_set *ks = lb_kernels_scalar();
    static float x[MAX_BLOCKS * 256];
    static uint8_t wq[MAX_BLOCKS * sizeof(lb_block_lbq4)];
    static lb_block_a8_K a0[MAX_BLOCKS], a1[MAX_BLOCKS];
    /* own random stream, so that the later tests' data do not depend on how
     * many kernel sets this build has */
    uint64_t saved = rng_state;
    if (!ns)
        printf("  (no SIMD kernel set: skipped)\n");
    for (int si = 0; si < ns; si++) {
        const lb_kernel_set *kv = sets[si];
        int bad_q = 0, bad_d = 0;
        rng_state = 0x082EFA98EC4E6C89ull;   /* the same data for every set */
        for (int rep = 0; rep < 3; rep++)
            for (int bi = 0; bi < N_BLOCKS; bi++) {
                int nb = blocks[bi], n = nb * 256;
                make_acts(x, n);
                memset(a0, 0x55, sizeof a0);
                memset(a1, 0xAA, sizeof a1);
                ks->quantize[LB_TYPE_A8_H](x, a0, n);
                kv->quantize[LB_TYPE_A8_H](x, a1, n);
                bad_q += memcmp(a0, a1, (size_t)nb * sizeof *a0) != 0;
                const uint32_t *types = lbq_types;
                for (int ti = 0; ti < 3; ti++) {
                    random_blocks(wq, nb, lbq_sizes[ti]);
                    float s0 = -1, s1 = -2;
                    ks->vec_dot[types[ti]](n, &s0, wq, a0);
                    kv->vec_dot[types[ti]](n, &s1, wq, a0);
                    if (memcmp(&s0, &s1, sizeof s0)) {
                        bad_d++;
                        fprintf(stderr, "  %s type %u n=%d: %.9g vs %.9g\n", kv->isa, types[ti], n, s0, s1);
                    }
                }
            }
        CHECKF(bad_q == 0, "%s: %d A8_H blocks differ", kv->isa, bad_q);
        CHECKF(bad_d == 0, "%s: %d dot products differ", kv->isa, bad_d);
        /* the set's own kernels, not the reference it was filled from, were compared */
        int own = 0;
        for (int ti = 0; ti < 3; ti++)
            own += kv->vec_dot[lbq_types[ti]] != ks->vec_dot[lbq_types[ti]];
        printf("  %s: %d of 3 LBQ dot products are its own\n", kv->isa, own);
        CHECKF(own == 3, "%s: %d of 3 LBQ types have a SIMD dot product", kv->isa, own);
    }
    rng_state = saved;
}

/* Every set's 4-row dot (where it has one) gives, for each row, the scalar
 * reference's bits, at awkward block counts and a result stride that is not 1. */
static void test_dot4_bitexact(void)
{
    const lb_kernel_set *sets[5];
    int ns = lb_kernels_variants(sets, 4);
    const lb_kernel_set *ks = lb_kernels_scalar();
    sets[ns++] = ks;
    static float x[MAX_BLOCKS * 256];
    static uint8_t wq[MAX_BLOCKS * sizeof(lb_block_lbq4)];
    static lb_block_a8_K a[4][MAX_BLOCKS + 1];   /* [4 rows][blocks], rows one block longer than needed */
    int checked = 0, bad = 0;
    /* own random stream: the data of the tests after this one must not depend
     * on how many sets of this build have a dot4 */
    uint64_t saved = rng_state;
    rng_state = 0x13198A2E03707344ull;
    for (int si = 0; si < ns; si++)
        for (int ti = 0; ti < 3; ti++) {
            lb_vec_dot4_fn dot4 = sets[si]->vec_dot4[lbq_types[ti]];
            if (!dot4)
                continue;
            for (int bi = 0; bi < N_BLOCKS; bi++) {
                int nb = blocks[bi], n = nb * 256;
                for (int j = 0; j < 4; j++) {
                    make_acts(x, n);
                    x[j] = 50.0f * (float)(j + 1);   /* rows with different scales */
                    ks->quantize[LB_TYPE_A8_H](x, a[j], n);
                }
                random_blocks(wq, nb, lbq_sizes[ti]);
                float s4[4 * 3], s1;
                for (int k = 0; k < 12; k++)
                    s4[k] = -7.0f;
                dot4(n, s4, 3, wq, a, sizeof a[0]);
                for (int j = 0; j < 4; j++) {
                    ks->vec_dot[lbq_types[ti]](n, &s1, wq, a[j]);
                    if (memcmp(&s1, &s4[3 * j], sizeof s1)) {
                        bad++;
                        fprintf(stderr, "  %s dot4 type %u n=%d row %d: %.9g vs %.9g\n", sets[si]->isa, lbq_types[ti],
                                n, j, s1, s4[3 * j]);
                    }
                }
                bad += s4[1] != -7.0f || s4[2] != -7.0f || s4[10] != -7.0f;   /* only every third slot written */
                checked++;
            }
        }
    rng_state = saved;
    printf("  dot4: %d (set, type, length) cases\n", checked);
    CHECKF(bad == 0, "%d 4-row dot products differ from the reference", bad);
    /* every SIMD set has them (prefill would silently fall back to one row at a time) */
    for (int si = 0; si + 1 < ns; si++)
        CHECKF(sets[si]->vec_dot4[LB_TYPE_LBQ2] && sets[si]->vec_dot4[LB_TYPE_LBQ3] && sets[si]->vec_dot4[LB_TYPE_LBQ4],
               "%s lacks an LBQ vec_dot4", sets[si]->isa);
}

/* lb_matmul over LBQ weights (which takes the 4-row path for whole groups of
 * four activation rows and the 1-row path for the rest) equals the scalar
 * reference row by row, for batch sizes around multiples of four. */
static void test_matmul_rows(void)
{
    enum { ROWS = 5, NB = 3, COLS = NB * 256, MAXN = 9 };
    static float x[MAXN * COLS], y[MAXN * ROWS];     /* [n][COLS], [n][ROWS] */
    static uint8_t wq[ROWS * NB * sizeof(lb_block_lbq4)];   /* [ROWS] rows */
    static lb_block_a8_K a[NB];
    static _Alignas(32) lb_block_a8_K scratch[MAXN * NB];   /* [MAXN rows][NB blocks] */
    const lb_kernel_set *ks = lb_kernels_scalar();
    lb_pool *pool = lb_pool_new(2);
    CHECK(pool != NULL);
    if (!pool)
        return;
    const int ns[] = {1, 3, 4, 5, 8, 9};
    int bad = 0;
    uint64_t saved = rng_state;   /* own stream, as in test_dot4_bitexact */
    rng_state = 0xA4093822299F31D0ull;
    for (int ti = 0; ti < 3; ti++) {
        size_t rb = NB * lbq_sizes[ti];
        random_blocks(wq, ROWS * NB, lbq_sizes[ti]);
        lb_matw w = {wq, lbq_types[ti], ROWS, COLS, rb};
        CHECK(lb_matmul_scratch(lbq_types[ti], COLS, MAXN) <= sizeof scratch);
        for (int ni = 0; ni < 6; ni++) {
            int n = ns[ni];
            make_acts(x, n * COLS);
            lb_matmul(pool, &w, x, n, y, scratch);
            for (int t = 0; t < n; t++) {
                ks->quantize[LB_TYPE_A8_H](x + (size_t)t * COLS, a, COLS);
                for (int r = 0; r < ROWS; r++) {
                    float s;
                    ks->vec_dot[lbq_types[ti]](COLS, &s, wq + (size_t)r * rb, a);
                    bad += memcmp(&s, &y[t * ROWS + r], sizeof s) != 0;
                }
            }
        }
    }
    rng_state = saved;
    CHECKF(bad == 0, "%d matmul outputs differ from the reference", bad);
    lb_pool_free(pool);
}

/* rel RMS error of the quality quantizer on heavy-tailed rows */
static double rel_err(uint32_t type, const float *x, int n, const float *imp, double *werr)
{
    static uint8_t q[4096 * 2]; /* [4096] at up to 16 bits each */
    static float y[4096];
    lb_quantize_row(type, x, q, n, imp);
    lb_quant_ref(type)->dequant(q, y, n);
    double e = 0, s = 0, we = 0;
    for (int i = 0; i < n; i++) {
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        s += (double)x[i] * x[i];
        we += (imp ? imp[i] : 1.0) * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    }
    if (werr)
        *werr = we;
    return sqrt(e / s);
}

static void test_quality(void)
{
    enum { N = 4096 };
    static float x[N], imp[N];
    for (int i = 0; i < N; i++) {
        float g = rng_gauss();
        x[i] = (i % 61 == 0) ? 8.0f * g : g; /* outliers, as real weight rows have */
    }
    double e2 = rel_err(LB_TYPE_LBQ2, x, N, NULL, NULL), e3 = rel_err(LB_TYPE_LBQ3, x, N, NULL, NULL);
    double k2 = rel_err(LB_TYPE_Q2_K, x, N, NULL, NULL), k3 = rel_err(LB_TYPE_Q3_K, x, N, NULL, NULL);
    printf("  rel RMS: lbq2 %.4f (2.19 bpw), q2_K %.4f (2.63), lbq3 %.4f (3.19), q3_K %.4f (3.44)\n", e2, k2, e3, k3);
    /* a 4-level grid on Gaussianized data cannot beat ~0.34; the outliers must not make it worse */
    CHECKF(e2 < 0.36, "lbq2 %.4f", e2);
    CHECKF(e3 < 0.20 && e3 < 0.6 * e2, "lbq3 %.4f", e3);
    /* the rotation buys what the outliers cost Q2_K: fewer bits, about the same error */
    CHECKF(e2 < 1.1 * k2, "lbq2 %.4f vs q2_K %.4f", e2, k2);
    /* LBQ4 against Q4_K (4.19 against 4.5 bpw), with the same importance
     * weighting (none here) and on the same heavy-tailed rows */
    double e4 = rel_err(LB_TYPE_LBQ4, x, N, NULL, NULL), k4 = rel_err(LB_TYPE_Q4_K, x, N, NULL, NULL);
    printf("  rel RMS: lbq4 %.4f (4.19 bpw), q4_K %.4f (4.5)\n", e4, k4);
    CHECKF(e4 < k4, "lbq4 %.4f vs q4_K %.4f", e4, k4);
    CHECKF(e4 < 0.6 * e3, "lbq4 %.4f vs lbq3 %.4f", e4, e3);
    /* importance: a few columns dominate; error feedback must lower the weighted error */
    for (int i = 0; i < N; i++)
        imp[i] = (i % 16 == 3) ? 50.0f : 0.5f + rng_unit();
    double w_plain, w_imp;
    rel_err(LB_TYPE_LBQ2, x, N, NULL, &w_plain);
    rel_err(LB_TYPE_LBQ2, x, N, imp, &w_imp);
    /* plain rounding's weighted error, measured with the same weights */
    static uint8_t q[N];
    static float y[N];
    lb_quantize_row(LB_TYPE_LBQ2, x, q, N, NULL);
    lb_quant_ref(LB_TYPE_LBQ2)->dequant(q, y, N);
    w_plain = 0;
    for (int i = 0; i < N; i++)
        w_plain += imp[i] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    printf("  weighted error: plain %.2f, with importance %.2f\n", w_plain, w_imp);
    CHECKF(w_imp < 0.8 * w_plain, "importance-weighted %.3f vs plain %.3f", w_imp, w_plain);
    /* the same importance vector given to both 4-bit types */
    double w4, wk4;
    rel_err(LB_TYPE_LBQ4, x, N, imp, &w4);
    rel_err(LB_TYPE_Q4_K, x, N, imp, &wk4);
    printf("  weighted error at 4 bits: lbq4 %.3f, q4_K %.3f\n", w4, wk4);
    CHECKF(w4 < wk4, "lbq4 weighted %.3f vs q4_K %.3f", w4, wk4);
    /* all-zero rows stay zero */
    memset(x, 0, 512 * sizeof *x);
    lb_quantize_row(LB_TYPE_LBQ2, x, q, 512, NULL);
    lb_quant_ref(LB_TYPE_LBQ2)->dequant(q, y, 512);
    int zero = 1;
    for (int i = 0; i < 512; i++)
        zero &= y[i] == 0.0f;
    CHECK(zero);
}

int main(void)
{
    RUN(test_type_table);
    RUN(test_rotation);
    RUN(test_dot_vs_dequant);
    RUN(test_simd_bitexact);
    RUN(test_dot4_bitexact);
    RUN(test_matmul_rows);
    RUN(test_quality);
    return check_done();
}
