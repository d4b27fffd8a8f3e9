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
#include "quant/blocks.h"

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
 * lengths of 1, 2, 3, 5, 16, 17 and 63 blocks (16: the longest rows of the
 * AVX-512 Q4_K kernel on paired rows, 17: the first of the 256-bit one) and
 * across the kernels' runs of block pairs (129 and 130 blocks), outputs
 * strided with a guard column. */
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
            const int64_t nblocks[] = {1, 2, 3, 5, 16, 17, 63, 129, 130};
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

/* Eight A8_K activation rows of nb blocks in one of four patterns: 0 the
 * set's quantizer on random floats, 1 every byte 127, 2 every byte -128
 * (beyond the quantizer's -127, still a valid int8), 3 lane groups of four
 * alternating 127 and -128; bsums are the blocks' own sums. */
static void k_act_rows(const lb_kernel_set *k, int pattern, int64_t nb, char *act, size_t ab)
{
    if (pattern == 0) {
        random_act(k, LB_TYPE_A8_K, nb * 256, act, ab);
        return;
    }
    for (int j = 0; j < 8; j++) {
        lb_block_a8_K *a = (lb_block_a8_K *)(act + (size_t)j * ab);
        for (int64_t i = 0; i < nb; i++) {
            a[i].d = 0.001f * (float)(j + 1);
            for (int e = 0; e < 256; e++)
                a[i].qs[e] = (int8_t)(pattern == 1 ? 127 : pattern == 2 ? -128 : (e / 4) % 2 ? -128 : 127);
            for (int g = 0; g < 16; g++) {
                int sum = 0;
                for (int e = 0; e < 16; e++)
                    sum += a[i].qs[16 * g + e];
                a[i].bsums[g] = (int16_t)sum;
            }
        }
    }
}

/* Q4_K/Q6_K weight rows: pattern 0 random bytes, otherwise the largest
 * integer sums: Q4_K every quant 15 and every scale and min 63; Q6_K quants
 * 0 (-32) in even rows and 63 (+31) in odd ones, scales -128 and 127. */
static void k_weight_rows(uint32_t t, int pattern, int64_t nb, unsigned char *w, size_t wb, int rows)
{
    random_rows(w, (size_t)rows * wb);
    if (pattern == 0)
        return;
    for (int r = 0; r < rows; r++)
        for (int64_t i = 0; i < nb; i++) {
            if (t == LB_TYPE_Q4_K) {
                lb_block_q4_K *b = (lb_block_q4_K *)(w + (size_t)r * wb) + i;
                b->d = 0x3c00;      /* 1.0 */
                b->dmin = 0x3800;   /* 0.5 */
                memset(b->scales, 0xff, sizeof b->scales);
                memset(b->qs, 0xff, sizeof b->qs);
            } else {
                lb_block_q6_K *b = (lb_block_q6_K *)(w + (size_t)r * wb) + i;
                b->d = 0x3c00;
                memset(b->ql, r % 2 ? 0xff : 0, sizeof b->ql);
                memset(b->qh, r % 2 ? 0xff : 0, sizeof b->qh);
                for (int g = 0; g < 16; g++)
                    b->scales[g] = (int8_t)(g % 2 ? 127 : -128);
            }
        }
}

/* Every multi-row K-quant kernel (gemm8, vec_dot8, vec_dot4) and vec_dot of
 * every set against the scalar reference (quant/ref_k.c), bit for bit, at
 * 1..43 blocks, tile heights 1..9, random and extreme inputs (the AVX-512
 * tiles pack two lane sums into the words of an int32 lane; the extremes
 * are where such packing would overflow or borrow). */
static void test_k_rows_equal_reference(void)
{
    const lb_kernel_set *sets[4];
    int n_sets = lb_kernels_variants(sets, 4);
    const uint32_t types[] = {LB_TYPE_Q4_K, LB_TYPE_Q6_K};
    int cases = 0, gemm_cases = 0;
    for (int si = 0; si < n_sets; si++)
        for (size_t ti = 0; ti < 2; ti++) {
            const uint32_t t = types[ti];
            const lb_kernel_set *k = sets[si];
            lb_vec_dot_fn ref = lb_quant_ref(t)->vec_dot;
            for (int pattern = 0; pattern < 4; pattern++)
                for (int64_t nb = 1; nb <= 43; nb++) {
                    if (pattern != 0 && nb > 3 && nb != 43)
                        continue;   /* the extremes at a few lengths */
                    int64_t n = nb * 256;
                    size_t wb = lb_type_row_bytes(t, n), ab = lb_type_row_bytes(LB_TYPE_A8_K, n);
                    unsigned char *w = malloc(9 * wb);   /* [9][wb] weight rows */
                    char *act = malloc(8 * ab);          /* [8][ab] activation rows */
                    k_weight_rows(t, pattern, nb, w, wb, 9);
                    k_act_rows(k, pattern, nb, act, ab);
                    float want[8][9];   /* [activation row][weight row] */
                    for (int j = 0; j < 8; j++)
                        for (int r = 0; r < 9; r++)
                            ref(n, &want[j][r], w + (size_t)r * wb, act + (size_t)j * ab);
                    int bad = 0;
                    for (int j = 0; j < 8; j++)
                        for (int r = 0; r < 9; r++) {
                            float one;
                            k->vec_dot[t](n, &one, w + (size_t)r * wb, act + (size_t)j * ab);
                            bad += memcmp(&one, &want[j][r], sizeof one) != 0;
                        }
                    for (int r = 0; r < 9; r++) {
                        float out[8 * 9];   /* [8][9] */
                        if (k->vec_dot8[t]) {
                            k->vec_dot8[t](n, out, 9, w + (size_t)r * wb, act, ab);
                            for (int j = 0; j < 8; j++)
                                bad += memcmp(&out[j * 9], &want[j][r], sizeof(float)) != 0;
                        }
                        if (k->vec_dot4[t]) {
                            k->vec_dot4[t](n, out, 9, w + (size_t)r * wb, act + 4 * ab, ab);
                            for (int j = 0; j < 4; j++)
                                bad += memcmp(&out[j * 9], &want[4 + j][r], sizeof(float)) != 0;
                        }
                    }
                    if (k->gemm8[t])
                        for (int64_t h = 1; h <= 9; h++) {
                            float out[8 * 10];   /* [8][h + 1]; column h is a guard */
                            for (int i = 0; i < 8 * 10; i++)
                                out[i] = -12345.0f;
                            k->gemm8[t](n, h, out, h + 1, w, wb, act, ab);
                            for (int j = 0; j < 8; j++) {
                                bad += out[j * (h + 1) + h] != -12345.0f;
                                for (int64_t r = 0; r < h; r++)
                                    bad += memcmp(&out[j * (h + 1) + r], &want[j][r], sizeof(float)) != 0;
                            }
                            gemm_cases++;
                        }
                    CHECKF(bad == 0, "%s type %u pattern %d, %lld blocks: %d results differ from the reference",
                           k->isa, t, pattern, (long long)nb, bad);
                    for (int j = 0; j < 8; j++)
                        for (int r = 0; r < 9; r++)
                            CHECKF(want[j][r] == want[j][r], "reference NaN (pattern %d)", pattern);
                    cases++;
                    free(w);
                    free(act);
                }
        }
    printf("  %d (set, type, pattern, length) cases, %d gemm8 tiles\n", cases, gemm_cases);
    /* where AVX-512 VNNI is present its set must have the K-quant tiles */
    if (lb_kernels_avx512()) {
        CHECK(lb_kernels_avx512()->gemm8[LB_TYPE_Q4_K] != NULL);
        CHECK(lb_kernels_avx512()->gemm8[LB_TYPE_Q6_K] != NULL);
    }
}

/* lb_matmul over 1..17, 19, 21 and 23 activation rows of a Q4_0 weight
 * whose row count is not a whole number of tiles: each output is vec_dot's,
 * with and without a pool (threads claim tiles in any order).  Tails of 5-7
 * rows take one more 8-row product (padded below 8 rows, the last eight
 * again above); three rows alone the padded 8-row product, a tail of three
 * after more the 4-row kernel on the last four.  (Q4_K and Q6_K against the
 * scalar reference: test_batch.c.) */
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
    const int64_t ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19, 21, 23};
    float *x = malloc(23 * (size_t)cols * sizeof *x);   /* [23][cols] */
    float *y = malloc(23 * (size_t)rows * sizeof *y);   /* [23][rows] */
    char *act = malloc(ab);                              /* [ab] one activation row */
    void *scratch = lb_aligned_alloc(64, lb_matmul_scratch(t, cols, 23));
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
    RUN(test_k_rows_equal_reference);
    RUN(test_matmul_rows_equal_dot);
    return check_done();
}
