/* Tests of LBQV, the 2-bit E8-lattice vector type: its codebook against the
 * rule that defines it, the nearest-codeword search against brute force,
 * the reference dot product against its own dequantization, every SIMD
 * kernel set against the reference (bit-exact) at awkward block counts,
 * including the optional multi-row kernels and lb_matmul at 1-9 rows, and
 * the quantizer's error against LBQ2's. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "quant/lbq.h"
#include "quant/lbqv.h"
#include "quant/ldlq.h"
#include "quant/quant.h"
#include "quant/quantize.h"

static uint64_t rng_state = 0x13198A2E03707344ull;
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
    float u1 = ((float)(rng_u64() >> 40) + 1.0f) / (float)((1u << 24) + 1), u2 = rng_unit(); /* u1 in (0, 1) */
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

#define MAX_BLOCKS 43
static const int blocks[] = {1, 2, 3, 5, 7, 11, 16, 43};
#define N_BLOCKS (int)(sizeof blocks / sizeof blocks[0])

static void test_type_table(void)
{
    CHECK(lb_type_from_name("lbqv") == LB_TYPE_LBQV && LB_TYPE_LBQV == 103);
    CHECK(lb_type_row_bytes(LB_TYPE_LBQV, 768) == 3 * sizeof(lb_block_lbqv));
    CHECK(lb_type_row_bytes(LB_TYPE_LBQV, 300) == 0);
    const lb_quant_traits *t = lb_quant_ref(LB_TYPE_LBQV);
    CHECK(t && t->act_type == LB_TYPE_A8_H && t->vec_dot && t->dequant && t->quantize);
    CHECK(lb_quantize_supported(LB_TYPE_LBQV));
    CHECK(lb_type_layout_of(104) == NULL);
}

/* The table follows its rule (bench/lbqv_codebook.c), and all 2^16 codes
 * decode to distinct points of E8 shifted by +-1/4 (in quarter units: c - s
 * has entries = 2 mod 4 with sum divisible by 8). */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_codebook(void)
{
    int prev_norm = 0, n10 = 0;
    for (int p = 0; p < 256; p++) {
        int norm = 0, sum = 0;
        for (int j = 0; j < 8; j++) {
            int a = abs(lb__lbqv_grid[p][j]);
            CHECK(a == 2 || a == 6 || a == 10);
            norm += a * a;
            sum += a;
        }
        /* entry 7 is negative exactly when the pattern needs an odd number of negative signs */
        CHECKF((lb__lbqv_grid[p][7] < 0) == (((sum / 2) / 2) & 1), "pattern %d", p);
        CHECK(norm >= prev_norm);
        prev_norm = norm;
        n10 += norm <= 160; /* norm^2 <= 10 in lattice units */
    }
    CHECK(n10 == 227 && prev_norm == 192);
    static uint64_t all[65536];
    int bad = 0;
    for (int code = 0; code < 65536; code++) {
        int8_t c[8];
        lb__lbqv_codeword((uint8_t)(code & 255), (uint8_t)(code >> 8), c);
        int sh = code >> 15 ? 1 : -1, sum = 0;
        for (int j = 0; j < 8; j++) {
            int v = c[j] - sh;
            bad += ((v % 4) + 4) % 4 != 2 || abs(c[j]) > 11;
            sum += v;
        }
        bad += sum % 8 != 0;
        memcpy(&all[code], c, 8);
    }
    CHECK(bad == 0);
    qsort(all, 65536, 8, cmp_u64);
    int dup = 0;
    for (int i = 1; i < 65536; i++)
        dup += all[i] == all[i - 1];
    CHECK(dup == 0);
}

static void test_nearest(void)
{
    static int8_t cb[65536][8];
    for (int code = 0; code < 65536; code++)
        lb__lbqv_codeword((uint8_t)(code & 255), (uint8_t)(code >> 8), cb[code]);
    int wrong = 0;
    for (int trial = 0; trial < 300; trial++) {
        float t[8];
        float scale = trial < 100 ? 4.0f : trial < 200 ? 1.5f : 12.0f; /* typical, small, clipped */
        for (int j = 0; j < 8; j++)
            t[j] = scale * rng_gauss();
        double best = INFINITY;
        for (int code = 0; code < 65536; code++) {
            double e = 0;
            for (int j = 0; j < 8; j++)
                e += ((double)t[j] - cb[code][j]) * ((double)t[j] - cb[code][j]);
            best = e < best ? e : best;
        }
        uint8_t idx, sg;
        float got = lb__lbqv_nearest(t, &idx, &sg);
        int8_t c[8];
        lb__lbqv_codeword(idx, sg, c);
        double e = 0;
        for (int j = 0; j < 8; j++)
            e += ((double)t[j] - c[j]) * ((double)t[j] - c[j]);
        if (e > best * (1 + 1e-5) + 1e-6 || fabs(e - got) > 1e-3 * (1 + e))
            wrong++;
    }
    CHECKF(wrong == 0, "%d of 300 searches missed the nearest codeword", wrong);
}

static void random_blocks(lb_block_lbqv *b, int nb)
{
    for (int i = 0; i < nb; i++) {
        uint8_t *p = (uint8_t *)&b[i];
        for (size_t k = 0; k < sizeof b[i]; k++)
            p[k] = (uint8_t)rng_u64();
        b[i].d = lb_f32_to_f16(0.001f + 0.01f * rng_unit());
    }
}

static void test_dot_vs_dequant(void)
{
    const lb_quant_traits *t = lb_quant_ref(LB_TYPE_LBQV), *ta = lb_quant_ref(LB_TYPE_A8_H);
    static lb_block_lbqv w[MAX_BLOCKS];
    static lb_block_a8_K a[MAX_BLOCKS];
    static float x[MAX_BLOCKS * 256], wd[MAX_BLOCKS * 256];
    for (int bi = 0; bi < N_BLOCKS; bi++) {
        int nb = blocks[bi], n = nb * 256;
        random_blocks(w, nb);
        for (int i = 0; i < n; i++)
            x[i] = rng_gauss();
        ta->quantize(x, a, n);
        t->dequant(w, wd, n);
        float s;
        t->vec_dot(n, &s, w, a);
        double ref = 0, mag = 0;
        for (int i = 0; i < n; i++) {
            ref += (double)wd[i] * x[i];
            mag += fabs((double)wd[i] * x[i]);
        }
        /* the only differences: int8 activations (1/254 of each block's max) */
        CHECKF(fabs(s - ref) <= 0.02 * mag / sqrt((double)nb * 16), "%d blocks: %g vs %g", nb, s, ref);
    }
}

static void test_simd_bitexact(void)
{
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4);
    const lb_kernel_set *ks = lb_kernels_scalar();
    static lb_block_lbqv w[MAX_BLOCKS];
    static lb_block_a8_K a[MAX_BLOCKS];
    static float x[MAX_BLOCKS * 256];
    static lb_block_a8_K a4[4][MAX_BLOCKS]; /* [4 rows][blocks] */
    int n4 = 0;
    for (int v = 0; v < ns; v++) {
        const lb_kernel_set *kv = sets[v];
        CHECK(kv->vec_dot[LB_TYPE_LBQV] != NULL);
        for (int bi = 0; bi < N_BLOCKS; bi++)
            for (int mode = 0; mode < 3; mode++) {
                int nb = blocks[bi], n = nb * 256;
                random_blocks(w, nb);
                for (int i = 0; i < n; i++)
                    x[i] = rng_gauss() * (mode == 1 && i % 97 == 0 ? 50.0f : 1.0f);
                if (mode == 2) { /* an all-zero block and full-scale activations */
                    memset(&w[nb / 2], 0, sizeof w[0]);
                    for (int i = 0; i < n; i++)
                        x[i] = i % 2 ? 1.0f : -1.0f;
                }
                ks->quantize[LB_TYPE_A8_H](x, a, n);
                float s0, s1;
                ks->vec_dot[LB_TYPE_LBQV](n, &s0, w, a);
                kv->vec_dot[LB_TYPE_LBQV](n, &s1, w, a);
                CHECKF(memcmp(&s0, &s1, sizeof s0) == 0, "%s, %d blocks, mode %d: %.9g vs %.9g", kv->isa, nb,
                       mode, s0, s1);
                if (!kv->vec_dot4[LB_TYPE_LBQV])
                    continue;
                /* four activation rows at once: each row's bits as the one-row reference */
                for (int j = 0; j < 4; j++) {
                    for (int i = 0; i < n; i++)
                        x[i] = rng_gauss() * (j == 2 && i % 61 == 0 ? 30.0f : 1.0f);
                    ks->quantize[LB_TYPE_A8_H](x, a4[j], n);
                }
                float r4[4 * 3];
                kv->vec_dot4[LB_TYPE_LBQV](n, r4, 3, w, a4[0], sizeof a4[0]);
                for (int j = 0; j < 4; j++) {
                    float r1;
                    ks->vec_dot[LB_TYPE_LBQV](n, &r1, w, a4[j]);
                    CHECKF(memcmp(&r1, &r4[3 * j], sizeof r1) == 0, "%s dot4 row %d, %d blocks: %.9g vs %.9g",
                           kv->isa, j, nb, r4[3 * j], r1);
                }
                n4++;
            }
    }
    printf("  (%d SIMD set(s) compared, %d four-row checks)\n", ns, n4);
}

/* Every multi-row kernel a set has (vec_dot_w4, vec_dot4, vec_dot8), on
 * 9 weight rows and 9 activation rows, each result bit for bit the scalar
 * reference's: random block bytes, outlier activations, all-zero blocks,
 * a row stride wider than a row, and lb_matmul (the dispatcher that mixes
 * them) at 1-9 activation rows and 1-9 weight rows. */
enum { MR = 9 };
static void test_simd_rows(void)
{
    /* the AVX-512 lbqv kernels need VBMI, BITALG and GFNI besides the set's
     * features; without them the set keeps the AVX2 kernel */
    const lb_kernel_set *k5 = lb_kernels_avx512(), *k2 = lb_kernels_avx2();
    if (k5 && k2) {
        const lb_cpu_features *f = lb_cpu();
        bool own = f->avx512vbmi && f->avx512bitalg && f->gfni;
        CHECK((k5->vec_dot[LB_TYPE_LBQV] != k2->vec_dot[LB_TYPE_LBQV]) == own);
        CHECK((k5->vec_dot_w4[LB_TYPE_LBQV] != NULL) == own && (k5->vec_dot4[LB_TYPE_LBQV] != NULL) == own);
    }
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4);
    const lb_kernel_set *ks = lb_kernels_scalar();
    const size_t pad = 3 * sizeof(lb_block_lbqv);   /* extra bytes per weight row: stride wider than the row */
    static uint8_t wbuf[MR * (MAX_BLOCKS * sizeof(lb_block_lbqv) + 3 * sizeof(lb_block_lbqv))];
    static lb_block_a8_K act[MR][MAX_BLOCKS]; /* [MR rows][blocks] */
    static float x[MR * MAX_BLOCKS * 256];    /* [MR][n] */
    static float ref[MR][MR];                 /* [weight row][activation row] */
    int nw4 = 0, nd4 = 0, nd8 = 0, bad = 0;
    for (int bi = 0; bi < N_BLOCKS; bi++) {
        int nb = blocks[bi], n = nb * 256;
        size_t stride = nb * sizeof(lb_block_lbqv) + (bi % 2 ? pad : 0);
        for (int r = 0; r < MR; r++) {
            lb_block_lbqv *w = (lb_block_lbqv *)(wbuf + r * stride);
            random_blocks(w, nb);
            if (r == 4)
                memset(&w[nb / 2], 0, sizeof w[0]);   /* an all-zero block */
            if (r == 7)
                for (int i = 0; i < nb; i++)
                    w[i].scales[0] = w[i].scales[3] = 0xFF;   /* largest group scales */
        }
        for (int j = 0; j < MR; j++) {
            for (int i = 0; i < n; i++)
                x[j * n + i] = rng_gauss() * (j == 3 && i % 53 == 0 ? 40.0f : 1.0f);
            if (j == 5)
                for (int i = 0; i < n; i++)
                    x[j * n + i] = i % 3 ? 1.0f : -1.0f;   /* full-scale activations */
            ks->quantize[LB_TYPE_A8_H](x + j * n, act[j], n);
        }
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < MR; j++)
                ks->vec_dot[LB_TYPE_LBQV](n, &ref[r][j], wbuf + r * stride, act[j]);
        for (int v = 0; v < ns; v++) {
            const lb_kernel_set *kv = sets[v];
            lb_vec_dot_w4_fn w4 = kv->vec_dot_w4[LB_TYPE_LBQV];
            for (int r0 = 0; w4 && r0 + 4 <= MR; r0++)
                for (int j = 0; j < MR; j += 4) {
                    float s[4];
                    w4(n, s, wbuf + r0 * stride, stride, act[j]);
                    for (int r = 0; r < 4; r++)
                        bad += memcmp(&s[r], &ref[r0 + r][j], sizeof s[r]) != 0;
                    nw4++;
                }
            lb_vec_dot4_fn d4[2] = {kv->vec_dot4[LB_TYPE_LBQV], kv->vec_dot8[LB_TYPE_LBQV]};
            for (int k = 0; k < 2; k++) {
                int rows = 4 << k;
                for (int j0 = 0; d4[k] && j0 + rows <= MR; j0++)
                    for (int r = 0; r < MR; r += 2) {
                        float s[8 * 2];
                        d4[k](n, s, 2, wbuf + r * stride, act[j0], sizeof act[0]);
                        for (int j = 0; j < rows; j++)
                            bad += memcmp(&s[2 * j], &ref[r][j0 + j], sizeof s[0]) != 0;
                        *(k ? &nd8 : &nd4) += 1;
                    }
            }
        }
        CHECKF(bad == 0, "%d blocks: %d multi-row results differ from the reference", nb, bad);
        bad = 0;
        /* lb_matmul with the chosen set: rows w x activation rows t */
        if (bi % 3 == 0 || nb == 43) {
            lb_pool *pool = lb_pool_new(2);
            static float y[MR * MR];
            static _Alignas(64) uint8_t scratch[MR * MAX_BLOCKS * sizeof(lb_block_a8_K)];
            CHECK(lb_matmul_scratch(LB_TYPE_LBQV, n, MR) <= sizeof scratch);
            int mbad = 0;
            for (int rows = 1; rows <= MR; rows++)
                for (int t = 1; t <= MR; t++) {
                    lb_matw mw = {wbuf, LB_TYPE_LBQV, rows, n, stride};
                    lb_matmul(pool, &mw, x, t, y, scratch);
                    for (int j = 0; j < t; j++)
                        for (int r = 0; r < rows; r++)
                            mbad += memcmp(&y[j * rows + r], &ref[r][j], sizeof y[0]) != 0;
                }
            CHECKF(mbad == 0, "%d blocks: %d lb_matmul results differ from the reference", nb, mbad);
            lb_pool_free(pool);
        }
    }
    printf("  (%d set(s): %d four-weight-row, %d four-row, %d eight-row calls checked)\n", ns, nw4, nd4, nd8);
}

static double rel_rms(const float *x, const float *y, int n)
{
    double e = 0, s = 0;
    for (int i = 0; i < n; i++) {
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        s += (double)x[i] * x[i];
    }
    return sqrt(e / s);
}

static void test_quality(void)
{
    enum { N = 4096 };
    static float x[N], y[N], imp[N];
    static lb_block_lbqv q[N / 256];
    static lb_block_lbq2 q2[N / 256];
    const lb_quant_traits *tv = lb_quant_ref(LB_TYPE_LBQV), *t2 = lb_quant_ref(LB_TYPE_LBQ2);
    for (int heavy = 0; heavy < 2; heavy++) {
        for (int i = 0; i < N; i++) {
            float g = rng_gauss();
            if (heavy) { /* Student-t with 3 degrees of freedom */
                float c = 0;
                for (int k = 0; k < 3; k++) {
                    float z = rng_gauss();
                    c += z * z;
                }
                g = g / sqrtf(c / 3 + 1e-6f);
            }
            x[i] = 0.02f * g;
        }
        lb_quantize_row(LB_TYPE_LBQV, x, q, N, NULL);
        tv->dequant(q, y, N);
        double ev = rel_rms(x, y, N);
        tv->quantize(x, q, N);
        tv->dequant(q, y, N);
        double ep = rel_rms(x, y, N);
        lb_quantize_row(LB_TYPE_LBQ2, x, q2, N, NULL);
        t2->dequant(q2, y, N);
        double e2 = rel_rms(x, y, N);
        printf("  %s rows: relative RMS lbqv %.3f (plain %.3f), lbq2 %.3f\n", heavy ? "t3" : "Gaussian", ev, ep, e2);
        CHECK(ev < 0.315 && ev < 0.95 * e2 && ev <= ep * 1.0001);
    }
    /* with an importance vector, the weighted error must fall */
    for (int i = 0; i < N; i++) {
        x[i] = 0.02f * rng_gauss();
        imp[i] = (i % 7 == 0 ? 20.0f : 1.0f) * (0.5f + rng_unit());
    }
    double ew[2];
    for (int k = 0; k < 2; k++) {
        lb_quantize_row(LB_TYPE_LBQV, x, q, N, k ? imp : NULL);
        tv->dequant(q, y, N);
        double e = 0;
        for (int i = 0; i < N; i++)
            e += imp[i] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        ew[k] = e;
    }
    printf("  importance-weighted error: with the vector %.3g, without %.3g\n", ew[1], ew[0]);
    CHECK(ew[1] < 0.9 * ew[0]);
}

/* With a full input covariance the output error (w - q) H (w - q)^T must
 * fall well below that of rounding without it (correlated inputs). */
static void test_hessian(void)
{
    enum { ROWS = 4, COLS = 512, R = 24 };
    static float w[ROWS * COLS], h[COLS * COLS], a[R * COLS], y[COLS], err[COLS];
    static lb_block_lbqv q[ROWS * COLS / 256];
    for (int i = 0; i < ROWS * COLS; i++)
        w[i] = 0.02f * rng_gauss();
    for (int i = 0; i < R * COLS; i++) /* inputs from a low-rank factor plus noise */
        a[i] = rng_gauss() * (i % COLS < 40 ? 4.0f : 1.0f);
    for (int i = 0; i < COLS; i++)
        for (int k = 0; k < COLS; k++) {
            double s = i == k ? 0.05 : 0;
            for (int r = 0; r < R; r++)
                s += (double)a[r * COLS + i] * a[r * COLS + k] / R;
            h[i * COLS + k] = (float)s;
        }
    CHECK(lb_quantize_hessian_supported(LB_TYPE_LBQV));
    const lb_quant_traits *t = lb_quant_ref(LB_TYPE_LBQV);
    double e[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        lb_err le = {0};
        CHECK(lb_quantize_hessian(LB_TYPE_LBQV, w, ROWS, COLS, k ? h : NULL, NULL, q, 2, &le) == LB_OK);
        for (int r = 0; r < ROWS; r++) {
            t->dequant(q + r * COLS / 256, y, COLS);
            for (int i = 0; i < COLS; i++)
                err[i] = w[r * COLS + i] - y[i];
            e[k] += lb_ldlq_quad(h, err, COLS);
        }
    }
    printf("  output error with the Hessian %.3g, without %.3g\n", e[1], e[0]);
    CHECK(e[1] < 0.7 * e[0]);
    lb_err le = {0};
    CHECK(lb_quantize_hessian(LB_TYPE_LBQV, w, 1, 300, h, NULL, q, 1, &le) == LB_ERR_INVALID_ARG);
}

int main(void)
{
    RUN(test_type_table);
    RUN(test_codebook);
    RUN(test_nearest);
    RUN(test_dot_vs_dequant);
    RUN(test_simd_bitexact);
    RUN(test_simd_rows);
    RUN(test_quality);
    RUN(test_hessian);
    return check_done();
}
