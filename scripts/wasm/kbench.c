/* Micro-benchmark of the K-quant decode dots (ns per 256-weight block) in a matrix of techdocs-28M's
 * shapes, for comparing the WebAssembly kernels with native ones: scripts/wasm/kbench.sh builds and
 * runs it.  Random blocks (finite scales); best of ROUNDS passes over the whole matrix. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/fp16.h"
#include "kernels/kernels.h"
#include "quant/blocks.h"

#define ROUNDS 30
static int ROWS = 1536, COLS = 512;   /* the matrix: kbench [ROWS COLS [sub]] */
static int g_subnormal;               /* "sub": subnormal f16 super-block scales */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint8_t rnd8(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint8_t)rng;
}

/* One matrix of type t: ns per block through vec_dot per row and (when the set has it) vec_dot_w4. */
static void bench(const lb_kernel_set *k, lb_type t, const char *name, size_t block_bytes, size_t d_off)
{
    size_t row_bytes = block_bytes * (COLS / LB_QK_K);
    uint8_t *w = malloc(row_bytes * ROWS);   /* [ROWS][row_bytes] */
    float *x = malloc(COLS * sizeof *x);     /* [COLS] */
    float *y = malloc(ROWS * sizeof *y);     /* [ROWS] */
    lb_block_a8_K *a = malloc(sizeof(lb_block_a8_K) * (COLS / LB_QK_K));   /* [COLS / 256] */
    for (size_t i = 0; i < row_bytes * ROWS; i++)
        w[i] = rnd8();
    for (size_t b = 0; b < ROWS * (COLS / LB_QK_K); b++) {
        /* kbench ROWS COLS sub: super-block scales of about 2^-16, subnormal in
         * f16 like most of a real Q6_K tensor's */
        float dv = g_subnormal ? (0.5f + (float)rnd8() / 512.0f) * 0x1p-16f
                                              : 0.01f + (float)rnd8() / 4096.0f;
        lb_f16 d = lb_f32_to_f16(dv);
        memcpy(w + b * block_bytes + d_off, &d, 2);
        if (t == LB_TYPE_Q4_K)
            memcpy(w + b * block_bytes + d_off + 2, &d, 2);
    }
    for (int i = 0; i < COLS; i++)
        x[i] = (float)rnd8() / 32.0f - 4.0f;
    k->quantize[LB_TYPE_A8_K](x, a, COLS);
    double best1 = 1e9, best4 = 1e9;
    lb_vec_dot_w4_fn w4 = k->vec_dot_w4[t];
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_s();
        for (int i = 0; i < ROWS; i++)
            k->vec_dot[t](COLS, &y[i], w + (size_t)i * row_bytes, a);
        double t1 = now_s();
        if (t1 - t0 < best1)
            best1 = t1 - t0;
        if (w4) {
            t0 = now_s();
            for (int i = 0; i < ROWS; i += 4)
                w4(COLS, &y[i], w + (size_t)i * row_bytes, row_bytes, a);
            t1 = now_s();
            if (t1 - t0 < best4)
                best4 = t1 - t0;
        }
    }
    double blocks = (double)ROWS * (COLS / LB_QK_K);
    printf("%-6s %-5s %dx%d vec_dot %6.2f ns/block", k->isa, name, ROWS, COLS, best1 * 1e9 / blocks);
    if (w4)
        printf("  vec_dot_w4 %6.2f ns/block", best4 * 1e9 / blocks);
    printf("  (y[7] %g)\n", (double)y[7]);
    free(w);
    free(x);
    free(y);
    free(a);
}

int main(int argc, char **argv)
{
    if (argc >= 3) {
        g_subnormal = argc > 3 && !strcmp(argv[3], "sub");
        ROWS = atoi(argv[1]) / 4 * 4;
        COLS = atoi(argv[2]) / LB_QK_K * LB_QK_K;
    }
    if (ROWS < 4 || COLS < LB_QK_K) {
        fprintf(stderr, "usage: kbench [ROWS COLS]  (ROWS >= 4, COLS >= 256)\n");
        return 2;
    }
    const lb_kernel_set *k = lb_kernels();
    bench(k, LB_TYPE_Q4_K, "q4_K", sizeof(lb_block_q4_K), offsetof(lb_block_q4_K, d));
    bench(k, LB_TYPE_Q6_K, "q6_K", sizeof(lb_block_q6_K), offsetof(lb_block_q6_K, d));
    return 0;
}
