/* Tests the register-tiled gemm8 kernels (kernels.h): every result of a
 * tile of weight rows x 8 activation rows must have exactly the bits of the
 * same set's vec_dot and of the AVX2 set's (so prefill and batched decoding
 * do not depend on the CPU or on how rows are grouped), at awkward lengths
 * and tile heights, without writing outside the tile; and lb_matmul, which
 * uses them, must give every one of 1..17 activation rows vec_dot's bits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/alloc.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"

static uint32_t seed = 2463534242u;
static uint32_t next(void)
{
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    return seed;
}

/* Random weight rows of type t straight from random bytes, with every f16
 * that can be a block scale kept finite (NaN compares unequal to itself).
 * Scales sit at even offsets in every layout with one, so clearing the
 * exponent's top bit in each odd byte whose exponent is all ones is enough. */
static void random_rows(unsigned char *w, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++)
        w[i] = (unsigned char)(next() >> 24);
    for (size_t i = 1; i < bytes; i += 2)
        if ((w[i] & 0x7c) == 0x7c)
            w[i] &= 0x3f;
}

/* Eight activation rows of n floats quantized by set k: mixed magnitudes,
 * an outlier now and then, row 5 all zeros (its scales are 0). */
static void random_act(const lb_kernel_set *k, uint32_t act_type, int64_t n, char *act, size_t ab)
{
    float *x = malloc((size_t)n * sizeof *x);   /* [n] */
    for (int j = 0; j < 8; j++) {
        for (int64_t i = 0; i < n; i++) {
            float v = (float)(next() >> 8) / 16777216.0f - 0.5f;
            x[i] = (next() % 61 == 0) ? 40.0f * v : v;
        }
        if (j == 5)
            memset(x, 0, (size_t)n * sizeof *x);
        k->quantize[act_type](x, act + (size_t)j * ab, n);
    }
    free(x);
}

/* Tile heights 1..9 and 17 (whole 4-row groups plus every remainder) at
 * lengths of 1, 2, 3, 5 and 63 blocks and across the kernels' runs of
 * block pairs (129 and 130 blocks), outputs strided with a guard column. */
static void test_gemm8_equals_vec_dot(void)
{
    const lb_kernel_set *sets[4];
    int n_sets = lb_kernels_variants(sets, 4);
    const lb_kernel_set *avx2 = lb_kernels_avx2();
    int checked = 0;
    for (int si = 0; si < n_sets; si++)
        for (uint32_t t = 0; t < LB_TYPE_COUNT; t++) {
            lb_gemm8_fn g = sets[si]->gemm8[t];
            if (!g)
                continue;
            const lb_quant_traits *q = lb_quant_ref(t);
            int64_t blk = (int64_t)lb_type_layout_of(t)->blck;
            const int64_t nblocks[] = {1, 2, 3, 5, 63, 129, 130};
            const int64_t heights[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17};
            for (size_t li = 0; li < sizeof nblocks / sizeof nblocks[0]; li++) {
                int64_t n = nblocks[li] * blk;
                size_t wb = lb_type_row_bytes(t, n), ab = lb_type_row_bytes(q->act_type, n);
                unsigned char *w = malloc(17 * wb);   /* [17][wb] weight rows */
                char *act = malloc(8 * ab);           /* [8][ab] activation rows */
                random_rows(w, 17 * wb);
                random_act(sets[si], q->act_type, n, act, ab);
                for (size_t hi = 0; hi < sizeof heights / sizeof heights[0]; hi++) {
                    int64_t nw = heights[hi], stride = nw + 1;
                    float out[8 * 18];   /* [8][stride]; column nw is a guard */
                    for (int i = 0; i < 8 * 18; i++)
                        out[i] = -12345.0f;
                    g(n, nw, out, stride, w, wb, act, ab);
                    for (int j = 0; j < 8; j++) {
                        CHECKF(out[j * stride + nw] == -12345.0f, "%s gemm8 type %u wrote outside the tile",
                               sets[si]->isa, t);
                        for (int64_t r = 0; r < nw; r++) {
                            float one, two;
                            sets[si]->vec_dot[t](n, &one, w + (size_t)r * wb, act + (size_t)j * ab);
                            CHECKF(memcmp(&one, &out[j * stride + r], sizeof one) == 0,
                                   "%s gemm8 type %u n %lld height %lld (%lld, %d): %.9g vs vec_dot %.9g",
                                   sets[si]->isa, t, (long long)n, (long long)nw, (long long)r, j,
                                   out[j * stride + r], one);
                            if (avx2) {
                                avx2->vec_dot[t](n, &two, w + (size_t)r * wb, act + (size_t)j * ab);
                                CHECKF(memcmp(&two, &out[j * stride + r], sizeof two) == 0,
                                       "%s gemm8 type %u n %lld (%lld, %d): %.9g vs avx2 vec_dot %.9g",
                                       sets[si]->isa, t, (long long)n, (long long)r, j, out[j * stride + r], two);
                            }
                        }
                    }
                    checked++;
                }
                free(w);
                free(act);
            }
        }
    printf("  %d (set, type, length, height) cases\n", checked);
    /* where AVX-512 VNNI is present its set must have the Q4_0 tile */
    if (lb_kernels_avx512())
        CHECK(lb_kernels_avx512()->gemm8[LB_TYPE_Q4_0] != NULL);
}

/* lb_matmul over 1..9, 16 and 17 activation rows of a Q4_0 weight whose
 * row count is not a whole number of tiles: each output is vec_dot's, with
 * and without a pool (threads claim tiles in any order). */
static void test_matmul_rows_equal_dot(void)
{
    const lb_kernel_set *k = lb_kernels();
    const uint32_t t = LB_TYPE_Q4_0;
    const int64_t rows = 37, cols = 2080;   /* 65 blocks: an odd last one */
    const lb_quant_traits *q = lb_quant_ref(t);
    size_t wb = lb_type_row_bytes(t, cols), ab = lb_type_row_bytes(q->act_type, cols);
    unsigned char *w = malloc((size_t)rows * wb);   /* [rows][wb] */
    random_rows(w, (size_t)rows * wb);
    lb_matw mw = {w, t, rows, cols, wb};
    const int64_t ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17};
    float *x = malloc(17 * (size_t)cols * sizeof *x);   /* [17][cols] */
    float *y = malloc(17 * (size_t)rows * sizeof *y);   /* [17][rows] */
    char *act = malloc(ab);                              /* [ab] one activation row */
    void *scratch = lb_aligned_alloc(64, lb_matmul_scratch(t, cols, 17));
    lb_pool *pool = lb_pool_new(2);
    CHECK(pool != NULL && scratch != NULL);
    for (int with_pool = 0; with_pool < 2; with_pool++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            int64_t n = ns[ni];
            for (int64_t i = 0; i < n * cols; i++)
                x[i] = (float)(next() >> 8) / 16777216.0f - 0.5f;
            lb_matmul(with_pool ? pool : NULL, &mw, x, n, y, scratch);
            int bad = 0;
            for (int64_t a = 0; a < n; a++) {
                k->quantize[q->act_type](x + a * cols, act, cols);
                for (int64_t r = 0; r < rows; r++) {
                    float want;
                    k->vec_dot[t](cols, &want, w + (size_t)r * wb, act);
                    bad += memcmp(&want, &y[a * rows + r], sizeof want) != 0;
                }
            }
            CHECKF(bad == 0, "%s n %lld pool %d: %d of %lld outputs differ from vec_dot", k->isa, (long long)n,
                   with_pool, bad, (long long)(n * rows));
        }
    lb_pool_free(pool);
    lb_aligned_free(scratch);
    free(act);
    free(y);
    free(x);
    free(w);
}

int main(void)
{
    RUN(test_gemm8_equals_vec_dot);
    RUN(test_matmul_rows_equal_dot);
    return check_done();
}
