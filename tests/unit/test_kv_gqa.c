/* The grouped-query kernels of the quantized KV cache (k_scores_n,
 * v_accum_n): the AVX2 variants against the scalar references, and both
 * against nq calls of the single-head kernels, for 1..9 heads, every bit
 * width, awkward token counts and unaligned, odd strides. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/kvq.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static float uniform(void) { return (float)(next_u32() & 0xffffff) / 16777216.0f; }
static float sgauss(void) { return (uniform() + uniform() + uniform() - 1.5f) * 2.0f; }

static const int bits_list[4] = {8, 4, 3, 2};

static double rel(double a, double b) { return fabs(a - b) / (1 + fabs(b)); }

static void test_k_scores_n(void)
{
    const lb_kvq_kernels *ref = lb_kvq_scalar(), *simd = lb_kvq_avx2();
    if (!simd) {
        printf("  (no AVX2 on this CPU: the dispatched set is checked against the scalar one)\n");
        simd = lb_kvq_get();
    }
    const int dims[3] = {64, 128, 256}, nqs[6] = {1, 2, 3, 4, 5, 9};
    static uint8_t codes[256 * 2 * 64 + 64];
    static float q[9 * 260], s0[9 * 70], s1[9 * 70], s2[9 * 70];
    for (int b = 0; b < 4; b++) {
        const int bits = bits_list[b], rb = lb_kvq_row_bytes(bits);
        for (int di = 0; di < 3; di++) {
            const int dim = dims[di];
            lb_f16 sc[256], mn[256];
            for (int i = 0; i < 2 * dim * rb + 64; i++)
                codes[i] = (uint8_t)next_u32();
            for (int d = 0; d < dim; d++) {
                sc[d] = lb_f32_to_f16(0.01f + 0.1f * uniform());
                mn[d] = lb_f32_to_f16(sgauss());
            }
            for (int ni = 0; ni < 6; ni++) {
                const int nq = nqs[ni];
                const size_t qs = (size_t)dim + 3, ss = 67;   /* odd strides */
                for (size_t i = 0; i < (size_t)nq * qs; i++)
                    q[i] = sgauss();
                /* codes + 3: rows not aligned; stride two 64-token halves of a group */
                ref->k_scores_n(bits, dim, codes + 3, 2 * (size_t)rb, sc, mn, q, qs, nq, s0, ss);
                simd->k_scores_n(bits, dim, codes + 3, 2 * (size_t)rb, sc, mn, q, qs, nq, s1, ss);
                /* errors relative to the sum of the terms' magnitudes (float
                 * rounding in another order; the sums cancel a lot) */
                double w1 = 0, w2 = 0;
                for (int g = 0; g < nq; g++) {
                    simd->k_scores(bits, dim, codes + 3, 2 * (size_t)rb, sc, mn, q + g * qs, s2 + g * ss);
                    double mag = 0;
                    for (int d = 0; d < dim; d++)
                        mag += fabs(q[g * qs + d]) * (lb_f16_to_f32(sc[d]) * ((1 << bits) - 1) +
                                                       fabs(lb_f16_to_f32(mn[d])));
                    for (int t = 0; t < 64; t++) {
                        w1 = fmax(w1, fabs(s1[g * ss + t] - s0[g * ss + t]) / mag);
                        w2 = fmax(w2, fabs(s2[g * ss + t] - s0[g * ss + t]) / mag);
                    }
                }
                CHECKF(w1 < 1e-6, "k_scores_n bits %d dim %d heads %d: %g", bits, dim, nq, w1);
                CHECKF(w2 < 1e-6, "k_scores bits %d dim %d heads %d: %g", bits, dim, nq, w2);
            }
        }
    }
}

static void test_v_accum_n(void)
{
    const lb_kvq_kernels *ref = lb_kvq_scalar(), *simd = lb_kvq_avx2();
    if (!simd)
        simd = lb_kvq_get();
    const int ns[11] = {1, 2, 3, 5, 7, 31, 63, 64, 65, 127, 128}, nqs[5] = {1, 2, 4, 5, 9};
    static uint8_t rows[200 * 80];
    static float p[9 * 140], o0[9 * 70], o1[9 * 70];
    for (int b = 0; b < 4; b++) {
        const int bits = bits_list[b], rb = lb_kvq_row_bytes(bits);
        for (int ni = 0; ni < 11; ni++) {
            const int n = ns[ni];
            const size_t stride = (size_t)rb + 4 + 5;
            for (size_t i = 0; i < stride * (size_t)n; i++)
                rows[i] = (uint8_t)next_u32();
            for (int t = 0; t < n; t++) {
                lb_f16 d = lb_f32_to_f16(0.01f + 0.1f * uniform()), m = lb_f32_to_f16(sgauss());
                memcpy(rows + t * stride + rb, &d, 2);
                memcpy(rows + t * stride + rb + 2, &m, 2);
            }
            for (int ki = 0; ki < 5; ki++) {
                const int nq = nqs[ki];
                const size_t ps = 131, os = 69;
                for (size_t i = 0; i < (size_t)nq * ps; i++)
                    p[i] = uniform() / 64;
                for (size_t i = 0; i < (size_t)nq * os; i++)
                    o0[i] = o1[i] = sgauss();
                ref->v_accum_n(bits, n, rows, stride, p, ps, nq, o0, os);
                simd->v_accum_n(bits, n, rows, stride, p, ps, nq, o1, os);
                double w = 0;
                for (int g = 0; g < nq; g++)
                    for (int i = 0; i < 64; i++)
                        w = fmax(w, rel(o1[g * os + i], o0[g * os + i]));
                /* the gaps between heads are left alone */
                for (int g = 0; g + 1 < nq; g++)
                    for (size_t i = 64; i < os; i++)
                        CHECK(o1[g * os + i] == o0[g * os + i]);
                CHECKF(w < 1e-5, "v_accum_n bits %d n %d heads %d: %g", bits, n, nq, w);
            }
        }
    }
}

int main(void)
{
    RUN(test_k_scores_n);
    RUN(test_v_accum_n);
    return check_done();
}
