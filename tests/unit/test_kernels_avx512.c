/* Tests of the AVX-512 kernel set beyond the per-family reference tests: it
 * must give exactly the AVX2 set's bits for every dot, the four-weight-row
 * decode dots (vec_dot_w4) included (so a model's output
 * does not depend on which x86 CPU runs it, Q4_0 and Q8_0 included, whose
 * SIMD dots are only within a tolerance of the scalar), and LB_ISA must cap
 * the set lb_kernels() chooses.  Passes trivially where the CPU lacks
 * AVX-512 VNNI (it says so). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/kernels.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(int64_t)(rng % 20001) / 1000.0f - 10.0f;
}

static const lb_type types[] = {LB_TYPE_Q4_0, LB_TYPE_Q4_1, LB_TYPE_Q5_0, LB_TYPE_Q5_1, LB_TYPE_Q8_0,
                                LB_TYPE_Q2_K, LB_TYPE_Q3_K, LB_TYPE_Q4_K, LB_TYPE_Q5_K, LB_TYPE_Q6_K,
                                LB_TYPE_LBQ2, LB_TYPE_LBQ3, LB_TYPE_LBQ4};

/* One weight row (quantized by the reference from floats with outliers)
 * against 8 activation rows: vec_dot, vec_dot4 and vec_dot8 of the AVX-512
 * set each equal the AVX2 vec_dot bit for bit, at row lengths of 1, 3, 8
 * and 22 super-blocks (odd block counts exercise the kernels' tails). */
static void test_same_bits_as_avx2(void)
{
    const lb_kernel_set *v2 = lb_kernels_avx2(), *v5 = lb_kernels_avx512();
    if (!v5) {
        printf("  no AVX-512 VNNI here: nothing to compare\n");
        CHECK(lb_cpu()->avx512vnni == false || lb_cpu()->avx512bw == false || lb_cpu()->avx512vl == false ||
              v2 == NULL);
        return;
    }
    const int64_t lens[] = {256, 768, 2048, 5632};
    int compared = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        lb_type t = types[ti];
        const lb_quant_traits *q = lb_quant_ref((uint32_t)t);
        CHECK(q && q->quantize && v5->vec_dot[t]);
        if (!q || !q->quantize)
            continue;
        for (int li = 0; li < 4; li++) {
            int64_t n = lens[li];
            size_t wb = lb_type_row_bytes(t, n), ab = lb_type_row_bytes(q->act_type, n);
            float *x = malloc((size_t)n * 8 * sizeof *x);   /* [8][n] */
            char *w = malloc(wb);                             /* [wb] one weight row */
            char *act = malloc(8 * ab);                       /* [8][ab] activation rows */
            for (int64_t i = 0; i < 8 * n; i++)
                x[i] = rnd() * (i % 97 == 0 ? 40.0f : 1.0f);
            if (li == 1)   /* an all-zero activation row: its scale is 0 */
                memset(x + 3 * n, 0, (size_t)n * sizeof *x);
            q->quantize(x, w, n);
            for (int j = 0; j < 8; j++)
                v2->quantize[q->act_type](x + j * n, act + (size_t)j * ab, n);
            float want[8], got[8], many[8];
            for (int j = 0; j < 8; j++) {
                v2->vec_dot[t](n, &want[j], w, act + (size_t)j * ab);
                v5->vec_dot[t](n, &got[j], w, act + (size_t)j * ab);
                CHECKF(memcmp(&want[j], &got[j], sizeof(float)) == 0, "%s n %lld row %d: avx512 %.9g avx2 %.9g",
                       lb_type_layout_of(t)->name, (long long)n, j, got[j], want[j]);
                compared++;
            }
            for (int width = 4; width <= 8; width += 4) {
                lb_vec_dot4_fn fn = width == 4 ? v5->vec_dot4[t] : v5->vec_dot8[t];
                if (!fn)
                    continue;
                fn(n, many, 1, w, act, ab);
                for (int j = 0; j < width; j++)
                    CHECKF(memcmp(&want[j], &many[j], sizeof(float)) == 0,
                           "%s dot%d n %lld row %d: avx512 %.9g avx2 %.9g", lb_type_layout_of(t)->name, width,
                           (long long)n, j, many[j], want[j]);
                compared += width;
            }
            free(x);
            free(w);
            free(act);
        }
    }
    printf("  %d results compared\n", compared);
}

/* vec_dot_w4 (four weight rows against one activation row, decode) of every
 * set that has one gives each row exactly that set's vec_dot bits and the
 * AVX2 set's, at odd and even block counts (1, 2, 3, 7, 8, 64, 65, 176 blocks:
 * the two-block loop's tail) and a row stride wider than a row. */
static void test_w4_same_bits(void)
{
    const lb_kernel_set *sets[8];
    int ns = lb_kernels_variants(sets, 8);
    const lb_kernel_set *v2 = lb_kernels_avx2();
    const int blocks[] = {1, 2, 3, 7, 8, 64, 65, 176};
    int compared = 0, present = 0;
    for (int si = 0; si < ns; si++)
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            lb_type t = types[ti];
            lb_vec_dot_w4_fn w4 = sets[si]->vec_dot_w4[t];
            const lb_quant_traits *q = lb_quant_ref((uint32_t)t);
            if (!w4 || !q)
                continue;
            present++;
            int blck = lb_type_layout_of(t)->blck;
            for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++) {
                int64_t n = (int64_t)blocks[bi] * blck;
                if (n % 256 && lb_type_row_bytes(q->act_type, n) == 0)
                    continue;   /* K-type activations need whole super-blocks */
                size_t wb = lb_type_row_bytes(t, n), ab = lb_type_row_bytes(q->act_type, n);
                size_t stride = wb + 8;   /* rows not packed, but 2-byte aligned as every GGUF row is (f16 scales) */
                float *x = malloc((size_t)n * sizeof *x);           /* [n] */
                char *w = malloc(4 * stride);                       /* [4 rows][stride] */
                char *act = malloc(ab);                             /* [ab] one activation row */
                for (int r = 0; r < 4; r++) {
                    for (int64_t i = 0; i < n; i++)
                        x[i] = rnd() * (i % 61 == r ? 30.0f : 1.0f);
                    q->quantize(x, w + (size_t)r * stride, n);
                }
                for (int64_t i = 0; i < n; i++)
                    x[i] = rnd() * (i % 97 == 0 ? 40.0f : 1.0f);
                sets[si]->quantize[q->act_type](x, act, n);
                float got[4 + 1], want, want2;
                got[4] = -3.0f;
                w4(n, got, w, stride, act);
                CHECKF(got[4] == -3.0f, "%s %s w4 wrote past s[3]", sets[si]->isa, lb_type_layout_of(t)->name);
                for (int r = 0; r < 4; r++) {
                    sets[si]->vec_dot[t](n, &want, w + (size_t)r * stride, act);
                    CHECKF(memcmp(&want, &got[r], sizeof want) == 0, "%s %s w4 n %lld row %d: %.9g vs vec_dot %.9g",
                           sets[si]->isa, lb_type_layout_of(t)->name, (long long)n, r, got[r], want);
                    if (v2) {
                        v2->vec_dot[t](n, &want2, w + (size_t)r * stride, act);
                        CHECKF(memcmp(&want2, &got[r], sizeof want2) == 0, "%s %s w4 n %lld row %d: %.9g vs avx2 %.9g",
                               sets[si]->isa, lb_type_layout_of(t)->name, (long long)n, r, got[r], want2);
                    }
                    compared++;
                }
                free(x);
                free(w);
                free(act);
            }
        }
    printf("  %d kernels, %d rows compared\n", present, compared);
    if (lb_kernels_avx512())
        CHECKF(lb_kernels_avx512()->vec_dot_w4[LB_TYPE_Q4_0] != NULL, "the AVX-512 set has no Q4_0 vec_dot_w4");
}

/* The set is chosen once; main set LB_ISA=avx2 before anything asked. */
static void test_isa_cap(void)
{
    const lb_kernel_set *k = lb_kernels();
    if (lb_kernels_avx2())
        CHECKF(strcmp(k->isa, "avx2") == 0, "LB_ISA=avx2 chose %s", k->isa);
    else
        CHECK(k != NULL);
    int n = 0;
    const lb_kernel_set *sets[8];
    n = lb_kernels_variants(sets, 8);
    int has512 = 0;
    for (int i = 0; i < n; i++)
        has512 += strcmp(sets[i]->isa, "avx512") == 0;
    /* the cap changes the choice, not what the tests can reach */
    CHECK(has512 == (lb_kernels_avx512() != NULL));
}

int main(void)
{
    setenv("LB_ISA", "avx2", 1);
    RUN(test_isa_cap);
    RUN(test_same_bits_as_avx2);
    RUN(test_w4_same_bits);
    return check_done();
}
