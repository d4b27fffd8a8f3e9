/* Tests the quantized-KV attention kernels (kernels/kvq.h) of every SIMD set
 * of this build (AVX2, NEON, WASM SIMD128) against the scalar references at
 * awkward head sizes, token counts and strides, for 8-, 4-, 3- and 2-bit
 * codes.  The variants sum in another order (and AVX2/NEON fuse), so they
 * must agree within a bound on the float rounding, stated below. */
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels.h"

static uint64_t rng_state = 0x6a09e667f3bcc909ull;
static uint32_t rng_u32(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 16);
}
static float rng_sym(void) { return (float)(rng_u32() & 0xffffff) / 8388608.0f - 1.0f; }   /* [-1, 1) */

static const int bits_list[4] = {8, 4, 3, 2};
static const int dims[] = {8, 16, 24, 64, 72, 128, 256};
static const int n_tokens[] = {0, 1, 2, 3, 5, 7, 31, 32, 33, 63, 64};
#define N_DIMS (int)(sizeof dims / sizeof dims[0])
#define N_NT (int)(sizeof n_tokens / sizeof n_tokens[0])
#define MAX_DIM 256
#define STRIDE_PAD 7   /* odd extra bytes per row: rows are unaligned */

static uint8_t codes[MAX_DIM * (64 + STRIDE_PAD)];   /* [dim][stride] key codes, channel by channel */
static uint8_t rows[64 * (64 + 4 + STRIDE_PAD)];     /* [64 tokens][stride] value rows with scale, min */

/* The magnitude the float sums of one output round against: the sum of the
 * absolute values of every term added into it. */
static double bound(double mag, int terms) { return (double)(terms + 4) * ldexp(1.0, -23) * mag + 1e-30; }

static void compare_k_scores(const lb_kernel_set *v)
{
    const lb_kvq_kernels *ref = &lb_kernels_scalar()->kvq, *simd = &v->kvq;
    double worst = 0;
    for (int b = 0; b < 4; b++) {
        const int bits = bits_list[b], rb = lb_kvq_row_bytes(bits);
        const size_t stride = (size_t)rb + STRIDE_PAD;
        for (int di = 0; di < N_DIMS; di++) {
            const int dim = dims[di];
            lb_f16 sc[MAX_DIM], mn[MAX_DIM];     /* [dim] */
            float q[MAX_DIM], s0[64], s1[64];    /* [dim], [64 tokens] */
            for (size_t i = 0; i < (size_t)dim * stride; i++)
                codes[i] = (uint8_t)rng_u32();
            for (int d = 0; d < dim; d++) {
                sc[d] = lb_f32_to_f16(0.01f + 0.1f * fabsf(rng_sym()));
                mn[d] = lb_f32_to_f16(2.0f * rng_sym());
                q[d] = (d % 17 == 3) ? 30.0f * rng_sym() : rng_sym();   /* an outlier channel now and then */
            }
            ref->k_scores(bits, dim, codes + 1, stride, sc, mn, q, s0);
            simd->k_scores(bits, dim, codes + 1, stride, sc, mn, q, s1);
            int bad = 0;
            for (int t = 0; t < 64; t++) {
                uint8_t c[64];
                double mag = 0;
                for (int d = 0; d < dim; d++) {
                    lb_kvq_unpack_row(bits, codes + 1 + (size_t)d * stride, c);
                    mag += fabs((double)q[d]) * (fabs((double)lb_f16_to_f32(mn[d])) + lb_f16_to_f32(sc[d]) * c[t]);
                }
                double err = fabs((double)s0[t] - s1[t]);
                bad += !(err <= bound(mag, dim));
                if (mag > 0 && err / mag > worst)
                    worst = err / mag;
            }
            CHECKF(bad == 0, "%s k_scores bits %d dim %d: %d of 64 scores off", v->isa, bits, dim, bad);
        }
    }
    printf("  %s k_scores: worst |simd-ref| / sum|terms| = %.3g\n", v->isa, worst);
}

static void compare_v_accum(const lb_kernel_set *v)
{
    const lb_kvq_kernels *ref = &lb_kernels_scalar()->kvq, *simd = &v->kvq;
    double worst = 0;
    for (int b = 0; b < 4; b++) {
        const int bits = bits_list[b], rb = lb_kvq_row_bytes(bits);
        const size_t stride = (size_t)rb + 4 + STRIDE_PAD;
        for (int ni = 0; ni < N_NT; ni++) {
            const int n = n_tokens[ni];
            float p[64], o0[64], o1[64];   /* [n tokens], [64 channels] x 2 */
            for (size_t i = 0; i < (size_t)n * stride; i++)
                rows[i] = (uint8_t)rng_u32();
            for (int t = 0; t < n; t++) {
                lb_f16 d = lb_f32_to_f16(0.01f + 0.1f * fabsf(rng_sym())), m = lb_f32_to_f16(2.0f * rng_sym());
                memcpy(rows + (size_t)t * stride + rb, &d, 2);
                memcpy(rows + (size_t)t * stride + rb + 2, &m, 2);
                p[t] = fabsf(rng_sym());
            }
            for (int i = 0; i < 64; i++)
                o0[i] = o1[i] = rng_sym();
            float start[64];
            memcpy(start, o0, sizeof start);
            ref->v_accum(bits, n, rows, stride, p, o0);
            simd->v_accum(bits, n, rows, stride, p, o1);
            int bad = 0;
            for (int i = 0; i < 64; i++) {
                double mag = fabs((double)start[i]);
                uint8_t c[64];
                for (int t = 0; t < n; t++) {
                    lb_f16 d16, m16;
                    memcpy(&d16, rows + (size_t)t * stride + rb, 2);
                    memcpy(&m16, rows + (size_t)t * stride + rb + 2, 2);
                    lb_kvq_unpack_row(bits, rows + (size_t)t * stride, c);
                    mag += p[t] * (fabs((double)lb_f16_to_f32(m16)) + lb_f16_to_f32(d16) * c[i]);
                }
                double err = fabs((double)o0[i] - o1[i]);
                bad += !(err <= bound(mag, n));
                if (mag > 0 && err / mag > worst)
                    worst = err / mag;
            }
            CHECKF(bad == 0, "%s v_accum bits %d n %d: %d of 64 channels off", v->isa, bits, n, bad);
        }
    }
    printf("  %s v_accum: worst |simd-ref| / sum|terms| = %.3g\n", v->isa, worst);
}

/* The references themselves: scores equal a plain dequantize-and-dot. */
static void test_reference(void)
{
    const lb_kvq_kernels *ref = &lb_kernels_scalar()->kvq;
    const int dim = 24, bits = 3, rb = lb_kvq_row_bytes(bits);
    lb_f16 sc[24], mn[24];
    float q[24], s[64];
    for (int i = 0; i < dim * rb; i++)
        codes[i] = (uint8_t)rng_u32();
    for (int d = 0; d < dim; d++) {
        sc[d] = lb_f32_to_f16(0.25f);
        mn[d] = lb_f32_to_f16(-1.0f);
        q[d] = (float)(d % 5) - 2.0f;    /* small integers: every sum is exact */
    }
    ref->k_scores(bits, dim, codes, (size_t)rb, sc, mn, q, s);
    int bad = 0;
    for (int t = 0; t < 64; t++) {
        double want = 0;
        for (int d = 0; d < dim; d++) {
            float x[64];
            lb_kvq_dequantize_row(bits, codes + d * rb, sc[d], mn[d], x);
            want += (double)q[d] * x[t];
        }
        bad += s[t] != (float)want;
    }
    CHECKF(bad == 0, "%d scores differ from dequantize-and-dot", bad);
}

/* The grouped-query forms equal nq single calls of the same set up to float
 * rounding (the kvq.h contract; tested at 1e-5 relative to 1 + |result|). */
static int close_all(const float *a, const float *b, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        bad += !(fabs((double)a[i] - b[i]) <= 1e-5 * (1 + fabs((double)a[i])));
    return bad;
}

static void compare_grouped(const lb_kernel_set *v)
{
    const lb_kvq_kernels *simd = &v->kvq;
    enum { NQ = 3, DIM = 72 };
    for (int b = 0; b < 4; b++) {
        const int bits = bits_list[b], rb = lb_kvq_row_bytes(bits);
        const size_t kstride = (size_t)rb + STRIDE_PAD, vstride = (size_t)rb + 4 + STRIDE_PAD;
        lb_f16 sc[DIM], mn[DIM];
        float q[NQ][DIM], s1[NQ][64], sn[NQ][80], p[NQ][64], o1[NQ][64], on[NQ][70];
        for (size_t i = 0; i < (size_t)DIM * kstride; i++)
            codes[i] = (uint8_t)rng_u32();
        for (int d = 0; d < DIM; d++) {
            sc[d] = lb_f32_to_f16(0.01f + 0.1f * fabsf(rng_sym()));
            mn[d] = lb_f32_to_f16(rng_sym());
            for (int g = 0; g < NQ; g++)
                q[g][d] = rng_sym();
        }
        simd->k_scores_n(bits, DIM, codes, kstride, sc, mn, q[0], DIM, NQ, sn[0], 80);
        int bad = 0;
        for (int g = 0; g < NQ; g++) {
            simd->k_scores(bits, DIM, codes, kstride, sc, mn, q[g], s1[g]);
            bad += close_all(s1[g], sn[g], 64) != 0;
        }
        CHECKF(bad == 0, "%s k_scores_n bits %d: %d of %d heads differ from k_scores", v->isa, bits, bad, NQ);
        const int n = 37;
        for (size_t i = 0; i < (size_t)n * vstride; i++)
            rows[i] = (uint8_t)rng_u32();
        for (int t = 0; t < n; t++) {
            lb_f16 d = lb_f32_to_f16(0.05f), m = lb_f32_to_f16(rng_sym());
            memcpy(rows + (size_t)t * vstride + rb, &d, 2);
            memcpy(rows + (size_t)t * vstride + rb + 2, &m, 2);
            for (int g = 0; g < NQ; g++)
                p[g][t] = fabsf(rng_sym());
        }
        for (int g = 0; g < NQ; g++)
            for (int i = 0; i < 64; i++)
                o1[g][i] = on[g][i] = rng_sym();
        simd->v_accum_n(bits, n, rows, vstride, p[0], 64, NQ, on[0], 70);
        bad = 0;
        for (int g = 0; g < NQ; g++) {
            simd->v_accum(bits, n, rows, vstride, p[g], o1[g]);
            bad += close_all(o1[g], on[g], 64) != 0;
        }
        CHECKF(bad == 0, "%s v_accum_n bits %d: %d of %d heads differ from v_accum", v->isa, bits, bad, NQ);
    }
}

static void test_variants(void)
{
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4);
    if (ns == 0)
        printf("  (no SIMD kernel set: skipped)\n");
    for (int i = 0; i < ns; i++) {
        CHECK(sets[i]->kvq.k_scores && sets[i]->kvq.v_accum);
        compare_k_scores(sets[i]);
        compare_v_accum(sets[i]);
        compare_grouped(sets[i]);
    }
}

int main(void)
{
    RUN(test_reference);
    RUN(test_variants);
    return check_done();
}
