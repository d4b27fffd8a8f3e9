/* Tests the 8-lane Q4_K / Q6_K dot products (quant/ref_k.c): the reference
 * equals the exact dot of the dequantized operands within float rounding and
 * follows the stated lane order, and every SIMD variant equals it bit for bit
 * (the -relaxed WebAssembly builds' within a stated tolerance: see matches). */
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels.h"
#include "quant/blocks.h"

#define NB 8   /* super-blocks per row: 2048 elements */
#define N (NB * LB_QK_K)

static uint64_t rng_state = 0x3243f6a8885a308dull;
static uint32_t rng_u32(uint32_t n)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) % n);
}

static lb_block_q4_K w4[NB];
static lb_block_q6_K w6[NB];
static lb_block_a8_K act[NB];
static float xa[N], wd[N];   /* [N] activations (input to the quantizer), dequantized weights */

static void fill(int mode)
{
    for (int i = 0; i < NB; i++) {
        uint8_t *p4 = (uint8_t *)&w4[i], *p6 = (uint8_t *)&w6[i];
        for (size_t k = 0; k < sizeof w4[i]; k++)
            p4[k] = (uint8_t)(mode == 1 ? 0xFF : rng_u32(256));
        for (size_t k = 0; k < sizeof w6[i]; k++)
            p6[k] = (uint8_t)(mode == 1 ? 0xFF : rng_u32(256));
        float sc = ldexpf(1.0f + (float)rng_u32(1000) / 1000.0f, -(int)rng_u32(12));
        w4[i].d = lb_f32_to_f16(sc);
        w4[i].dmin = lb_f32_to_f16(sc * 0.5f);
        w6[i].d = lb_f32_to_f16(sc);
        if (mode == 1)
            for (int k = 0; k < 16; k++)
                w6[i].scales[k] = k & 1 ? 127 : -128;
    }
    for (int i = 0; i < N; i++)
        xa[i] = mode == 1 ? (i & 1 ? 1.0f : -1.0f) : ((float)rng_u32(20001) - 10000.0f) / 1000.0f;
    lb_kernels_scalar()->quantize[LB_TYPE_A8_K](xa, act, N);
}

static double exact_dot(lb_type t, const void *w)
{
    lb_kernels_scalar()->dequant[t](w, wd, N);
    double s = 0;
    for (int i = 0; i < NB; i++)
        for (int e = 0; e < LB_QK_K; e++)
            s += (double)wd[i * LB_QK_K + e] * act[i].qs[e] * act[i].d;
    return s;
}

static double abs_dot(void)
{
    double s = 0;
    for (int i = 0; i < NB; i++)
        for (int e = 0; e < LB_QK_K; e++)
            s += fabs((double)wd[i * LB_QK_K + e] * act[i].qs[e] * act[i].d);
    return s;
}

static void test_reference_accuracy(void)
{
    const lb_kernel_set k = *lb_kernels_scalar();
    for (int rep = 0; rep < 20; rep++) {
        fill(rep == 0);
        float s4, s6;
        k.vec_dot[LB_TYPE_Q4_K](N, &s4, w4, act);
        double e4 = exact_dot(LB_TYPE_Q4_K, w4), b4 = abs_dot() * 1e-5;
        k.vec_dot[LB_TYPE_Q6_K](N, &s6, w6, act);
        double e6 = exact_dot(LB_TYPE_Q6_K, w6), b6 = abs_dot() * 1e-5;
        CHECKF(fabs(s4 - e4) <= b4, "q4_K rep %d: %.9g vs %.9g", rep, s4, e4);
        CHECKF(fabs(s6 - e6) <= b6, "q6_K rep %d: %.9g vs %.9g", rep, s6, e6);
    }
}

/* Lane order: element 0 of blocks 0 and 2 adds +2^24 and -2^24 to float
 * lane 0; block 1 adds 1 at element 0 (lane 0: 2^24 + 1 rounds to 2^24, the
 * sum is 0) or at element 4 (lane 1: kept, the sum is 1). */
static void test_lane_order(void)
{
    const lb_kernel_set k = *lb_kernels_scalar();
    for (int variant = 0; variant < 2; variant++) {
        memset(w6, 0, sizeof w6);
        memset(act, 0, sizeof act);
        const int e[3] = {0, variant ? 4 : 0, 0};
        const float da[3] = {16777216.0f, 1.0f, 16777216.0f};
        const int8_t q[3] = {1, 1, -1};
        for (int i = 0; i < 3; i++) {
            w6[i].d = lb_f32_to_f16(1.0f);
            w6[i].scales[0] = 1;
            w6[i].ql[e[i]] = 0x01;           /* low 4 bits 1 */
            w6[i].qh[e[i]] = 0x02;           /* high 2 bits 2: quant (1 | 32) - 32 = 1 */
            act[i].d = da[i];
            act[i].qs[e[i]] = q[i];
        }
        float s;
        k.vec_dot[LB_TYPE_Q6_K](3 * LB_QK_K, &s, w6, act);
        CHECKF(s == (variant ? 1.0f : 0.0f), "variant %d: %g", variant, s);
    }
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

#if defined(LB_WASM_RELAXED)
/* sum |w_i a_i| over the first n elements */
static double mag_of(uint32_t type, const void *w, int n)
{
    static float wf[N], af[N];
    lb_kernels_scalar()->dequant[type](w, wf, n);
    lb_quant_ref(LB_TYPE_A8_K)->dequant(act, af, n);
    double m = 0;
    for (int i = 0; i < n; i++)
        m += fabs((double)wf[i] * af[i]);
    return m;
}
#endif

/* Bit for bit, except in the -relaxed WebAssembly builds on an engine that
 * does not fuse relaxed SIMD's multiply-add (kernels/wasm/wasm_k.c): nb extra
 * roundings of at most 2^-24 of sum |w a| each, and as many again allowed. */
static int matches(const lb_kernel_set *v, uint32_t type, const void *w, int nb, float s0, float s1)
{
    if (same_bits(s0, s1))
        return 1;
#if defined(LB_WASM_RELAXED)
    if (strncmp(v->isa, "wasm", 4) == 0)
        return fabs((double)s0 - s1) <= 2.0 * nb * (0x1p-24 * mag_of(type, w, nb * LB_QK_K) + 0x1p-149);
#endif
    (void)v;
    (void)type;
    (void)w;
    (void)nb;
    return 0;
}

static void equals_reference(const lb_kernel_set *v)
{
    const lb_kernel_set r = *lb_kernels_scalar(), a = *v;
    int bad4 = 0, bad6 = 0, exact = 0, cases = 0;
    for (int rep = 0; rep < 200; rep++) {
        fill(rep == 0);
        for (int nb = 1; nb <= NB; nb++) {
            float s0, s1;
            r.vec_dot[LB_TYPE_Q4_K](nb * LB_QK_K, &s0, w4, act);
            a.vec_dot[LB_TYPE_Q4_K](nb * LB_QK_K, &s1, w4, act);
            bad4 += !matches(v, LB_TYPE_Q4_K, w4, nb, s0, s1);
            exact += same_bits(s0, s1);
            r.vec_dot[LB_TYPE_Q6_K](nb * LB_QK_K, &s0, w6, act);
            a.vec_dot[LB_TYPE_Q6_K](nb * LB_QK_K, &s1, w6, act);
            bad6 += !matches(v, LB_TYPE_Q6_K, w6, nb, s0, s1);
            exact += same_bits(s0, s1);
            cases += 2;
        }
    }
    printf("  %s: %d of %d dots bit-exact\n", v->isa, exact, cases);
    CHECKF(bad4 == 0, "%s q4_K: %d mismatches", v->isa, bad4);
    CHECKF(bad6 == 0, "%s q6_K: %d mismatches", v->isa, bad6);
}

/* Every SIMD set of this build (AVX2, NEON, WASM SIMD128). */
static void test_simd_equals_reference(void)
{
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4);
    if (ns == 0)
        printf("  (no SIMD kernel set: skipped)\n");
    for (int i = 0; i < ns; i++)
        equals_reference(sets[i]);
}


/* vec_dot_w4 (four weight rows against one activation row) of every SIMD set
 * that has it for Q4_K/Q6_K: bit for bit its own vec_dot per row, and the
 * reference's as equals_reference states, at awkward lengths, with rows
 * further apart than their size, random and extreme bytes. */
#define W4_NB 43
static lb_block_a8_K act_w4[W4_NB];
static float xa_w4[W4_NB * LB_QK_K];   /* [W4_NB * 256] activations before quantization */

static void rows4_case(const lb_kernel_set *v, uint32_t type, int nb, int mode, int *bad_self, int *bad_ref)
{
    static uint8_t rows[4 * (W4_NB * sizeof(lb_block_q6_K) + 2)];   /* [4][stride] */
    const size_t bsz = type == LB_TYPE_Q4_K ? sizeof(lb_block_q4_K) : sizeof(lb_block_q6_K);
    const size_t stride = nb * bsz + 2;   /* 2-byte aligned: the blocks hold f16 scales */
    for (size_t k = 0; k < sizeof rows; k++)
        rows[k] = (uint8_t)(mode ? 0xFF : rng_u32(256));
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < nb; i++) {
            uint8_t *blk = rows + r * stride + i * bsz;
            /* every other block: any f16 below 2 in magnitude (zero and subnormal
             * ones too: most real Q6_K scales are subnormal) */
            lb_f16 d = i & 1 ? (lb_f16)(rng_u32(0x4000) | (rng_u32(2) << 15))
                             : lb_f32_to_f16(ldexpf(1.0f + (float)rng_u32(1000) / 1000.0f, -(int)rng_u32(12)));
            if (type == LB_TYPE_Q4_K) {
                lb_block_q4_K *q = (lb_block_q4_K *)blk;
                q->d = d;
                q->dmin = mode ? d : i & 2 ? (lb_f16)rng_u32(0x4000) : lb_f32_to_f16(-lb_f16_to_f32(d) * 0.5f);
            } else {
                lb_block_q6_K *q = (lb_block_q6_K *)blk;
                q->d = d;
                if (mode)
                    for (int s = 0; s < 16; s++)
                        q->scales[s] = s & 1 ? 127 : -128;
            }
        }
    for (int i = 0; i < nb * LB_QK_K; i++)
        xa_w4[i] = mode ? (i & 1 ? 1.0f : -1.0f) : ((float)rng_u32(20001) - 10000.0f) / 1000.0f;
    lb_kernels_scalar()->quantize[LB_TYPE_A8_K](xa_w4, act_w4, nb * LB_QK_K);
    float s4[4];
    v->vec_dot_w4[type](nb * LB_QK_K, s4, rows, stride, act_w4);
    for (int r = 0; r < 4; r++) {
        float s1, s0;
        v->vec_dot[type](nb * LB_QK_K, &s1, rows + r * stride, act_w4);
        lb_kernels_scalar()->vec_dot[type](nb * LB_QK_K, &s0, rows + r * stride, act_w4);
        *bad_self += !same_bits(s4[r], s1);
#if defined(LB_WASM_RELAXED)
        /* matches() measures against the first nb blocks of w4/w6 and act */
        if (!same_bits(s0, s4[r]) && strncmp(v->isa, "wasm", 4) == 0) {
            static float wf[W4_NB * LB_QK_K], af[W4_NB * LB_QK_K];
            lb_kernels_scalar()->dequant[type](rows + r * stride, wf, nb * LB_QK_K);
            lb_quant_ref(LB_TYPE_A8_K)->dequant(act_w4, af, nb * LB_QK_K);
            double m = 0;
            for (int e = 0; e < nb * LB_QK_K; e++)
                m += fabs((double)wf[e] * af[e]);
            *bad_ref += fabs((double)s0 - s4[r]) > 2.0 * nb * (0x1p-24 * m + 0x1p-149);
            continue;
        }
#endif
        *bad_ref += !same_bits(s0, s4[r]);
    }
}

static void test_rows4(void)
{
    static const int lens[] = {1, 2, 3, 5, 7, 11, 16, 43};
    const lb_kernel_set *sets[4];
    int ns = lb_kernels_variants(sets, 4), tested = 0;
    for (int i = 0; i < ns; i++)
        for (int t = 0; t < 2; t++) {
            uint32_t type = t ? LB_TYPE_Q6_K : LB_TYPE_Q4_K;
            if (!sets[i]->vec_dot_w4[type])
                continue;
            int bad_self = 0, bad_ref = 0;
            for (int rep = 0; rep < 6; rep++)
                for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++)
                    rows4_case(sets[i], type, lens[l], rep == 0, &bad_self, &bad_ref);
            CHECKF(bad_self == 0, "%s %s vec_dot_w4: %d rows differ from its vec_dot", sets[i]->isa,
                   t ? "q6_K" : "q4_K", bad_self);
            CHECKF(bad_ref == 0, "%s %s vec_dot_w4: %d rows differ from the reference", sets[i]->isa,
                   t ? "q6_K" : "q4_K", bad_ref);
            tested++;
        }
    printf("  %d vec_dot_w4 kernels tested\n", tested);
#if defined(__wasm_simd128__)
    CHECKF(tested == 2, "the WebAssembly set has %d of the 2 K-quant vec_dot_w4 kernels", tested);
#endif
}

int main(void)
{
    RUN(test_reference_accuracy);
    RUN(test_lane_order);
    RUN(test_simd_equals_reference);
    RUN(test_rows4);
    return check_done();
}
