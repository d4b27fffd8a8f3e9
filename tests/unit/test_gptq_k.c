/* GPTQ for the K-quants (quant/gptq_k.c): lower output error than plain
 * rounding on correlated inputs, standard blocks, sane on degenerate input
 * covariances. */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "format/tensor_type.h"
#include "quant/gptq_k.h"
#include "quant/quant.h"
#include "quant/quantize.h"

#define COLS 512
#define ROWS 48
#define TOKENS 1024

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static float gauss(void) { return (float)(sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand())); }

static float W[ROWS * COLS];   /* [ROWS][COLS] weights */
static float H[COLS * COLS];   /* [COLS][COLS] E[x x^T] */
static float Y[ROWS * COLS];   /* [ROWS][COLS] a dequantized result */
static uint8_t Q[ROWS * COLS]; /* rows of quantized bytes (at most 1 byte per weight here) */

static const uint32_t TYPES[] = {LB_TYPE_Q2_K, LB_TYPE_Q3_K, LB_TYPE_Q4_K, LB_TYPE_Q5_K, LB_TYPE_Q6_K};
#define NTYPES 5

/* Inputs with correlated neighbouring columns (AR(1), rho 0.8) and uneven
 * column scales, as activations have; tokens x[TOKENS][COLS]; h = x^T x / T. */
static void make_inputs(int tokens, int dead_every)
{
    float *x = malloc((size_t)tokens * COLS * sizeof *x); /* [tokens][COLS] */
    float scale[COLS];                                    /* [COLS] */
    for (int c = 0; c < COLS; c++)
        scale[c] = (float)exp(0.8 * gauss());
    for (int t = 0; t < tokens; t++) {
        float prev = gauss();
        for (int c = 0; c < COLS; c++) {
            prev = 0.8f * prev + 0.6f * gauss();
            x[t * COLS + c] = dead_every && c % dead_every == 0 ? 0.0f : prev * scale[c];
        }
    }
    for (int i = 0; i < COLS; i++)
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int t = 0; t < tokens; t++)
                s += (double)x[t * COLS + i] * x[t * COLS + j];
            H[i * COLS + j] = H[j * COLS + i] = (float)(s / tokens);
        }
    free(x);
}

static void make_weights(void)
{
    for (int i = 0; i < ROWS * COLS; i++)
        W[i] = 0.02f * gauss();
}

/* sum over rows of (w - y)^T H (w - y): the output error energy per token. */
static double output_err(const float *y)
{
    double tot = 0;
    float d[COLS]; /* [COLS] */
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < COLS; c++)
            d[c] = W[r * COLS + c] - y[r * COLS + c];
        for (int i = 0; i < COLS; i++) {
            double s = 0;
            for (int j = 0; j < COLS; j++)
                s += (double)H[i * COLS + j] * d[j];
            tot += d[i] * s;
        }
    }
    return tot;
}

static bool dequant_all(uint32_t type, const uint8_t *q)
{
    size_t rb = lb_type_row_bytes(type, COLS);
    const lb_quant_traits *tr = lb_quant_ref(type);
    for (int r = 0; r < ROWS; r++)
        tr->dequant(q + r * rb, Y + r * COLS, COLS);
    for (int i = 0; i < ROWS * COLS; i++)
        if (!isfinite(Y[i]))
            return false;
    return true;
}

static double plain_err(uint32_t type)
{
    float diag[COLS]; /* [COLS] */
    for (int c = 0; c < COLS; c++)
        diag[c] = H[c * COLS + c];
    size_t rb = lb_type_row_bytes(type, COLS);
    for (int r = 0; r < ROWS; r++)
        lb_quantize_row(type, W + r * COLS, Q + r * rb, COLS, diag);
    dequant_all(type, Q);
    return output_err(Y);
}

static void test_beats_plain_rounding(void)
{
    make_inputs(TOKENS, 0);
    make_weights();
    for (int t = 0; t < NTYPES; t++) {
        double ep = plain_err(TYPES[t]);
        lb_status st = lb_gptq_k_quantize(TYPES[t], W, ROWS, COLS, H, NULL, Q, 2);
        CHECK(st == LB_OK);
        CHECK(dequant_all(TYPES[t], Q));
        double eg = output_err(Y);
        printf("  %-5s output error: plain %.4g, gptq %.4g (ratio %.3f)\n", lb_type_layout_of(TYPES[t])->name, ep, eg,
               eg / ep);
        CHECKF(eg < 0.75 * ep, "%s: gptq %g vs plain %g", lb_type_layout_of(TYPES[t])->name, eg, ep);
    }
}

static void test_threads_same_bytes(void)
{
    size_t rb = lb_type_row_bytes(LB_TYPE_Q4_K, COLS);
    uint8_t *q1 = malloc(ROWS * rb);
    CHECK(lb_gptq_k_quantize(LB_TYPE_Q4_K, W, ROWS, COLS, H, NULL, q1, 1) == LB_OK);
    CHECK(lb_gptq_k_quantize(LB_TYPE_Q4_K, W, ROWS, COLS, H, NULL, Q, 2) == LB_OK);
    CHECK(memcmp(q1, Q, ROWS * rb) == 0);
    free(q1);
}

/* A diagonal H gives no feedback: the result is plain rounding with the
 * same column weights, byte for byte (apart from the sub-block refit, which
 * sees the same values and so keeps the block's choice or improves on it). */
static void test_diagonal_h_is_plain_rounding(void)
{
    memset(H, 0, sizeof H);
    for (int c = 0; c < COLS; c++)
        H[c * COLS + c] = 1.0f + (float)(c % 7);
    make_weights();
    for (int t = 0; t < NTYPES; t++) {
        double ep = plain_err(TYPES[t]);
        CHECK(lb_gptq_k_quantize(TYPES[t], W, ROWS, COLS, H, NULL, Q, 2) == LB_OK);
        CHECK(dequant_all(TYPES[t], Q));
        double eg = output_err(Y);
        CHECKF(eg <= ep * 1.02, "%s: diagonal h: gptq %g vs plain %g", lb_type_layout_of(TYPES[t])->name, eg, ep);
    }
}

static void test_degenerate_h(void)
{
    make_weights();
    /* every 5th column never active, and fewer tokens than columns (rank <= 200) */
    make_inputs(200, 5);
    for (int t = 0; t < NTYPES; t++) {
        CHECK(lb_gptq_k_quantize(TYPES[t], W, ROWS, COLS, H, NULL, Q, 2) == LB_OK);
        CHECKF(dequant_all(TYPES[t], Q), "%s: rank-deficient h gives non-finite weights",
               lb_type_layout_of(TYPES[t])->name);
        double eg = output_err(Y), ep = plain_err(TYPES[t]);
        CHECKF(isfinite(eg) && eg < ep, "%s: rank-deficient: gptq %g vs plain %g", lb_type_layout_of(TYPES[t])->name,
               eg, ep);
    }
    /* all zero: no information, still finite blocks */
    memset(H, 0, sizeof H);
    for (int t = 0; t < NTYPES; t++) {
        CHECK(lb_gptq_k_quantize(TYPES[t], W, ROWS, COLS, H, NULL, Q, 1) == LB_OK);
        CHECK(dequant_all(TYPES[t], Q));
        double e = 0, s = 0;
        for (int i = 0; i < ROWS * COLS; i++) {
            e += (double)(W[i] - Y[i]) * (W[i] - Y[i]);
            s += (double)W[i] * W[i];
        }
        CHECKF(e < 0.2 * s, "%s: zero h: relative error %g", lb_type_layout_of(TYPES[t])->name, e / s);
    }
    /* all-zero weights */
    float *z = calloc(ROWS * COLS, sizeof *z);
    make_inputs(TOKENS, 0);
    CHECK(lb_gptq_k_quantize(LB_TYPE_Q3_K, z, ROWS, COLS, H, NULL, Q, 2) == LB_OK);
    CHECK(dequant_all(LB_TYPE_Q3_K, Q));
    for (int i = 0; i < ROWS * COLS; i++)
        CHECK(Y[i] == 0);
    free(z);
}

static void test_bad_arguments(void)
{
    CHECK(lb_gptq_k_quantize(LB_TYPE_Q4_0, W, ROWS, COLS, H, NULL, Q, 1) == LB_ERR_INVALID_ARG);
    CHECK(lb_gptq_k_quantize(LB_TYPE_Q4_K, W, ROWS, 300, H, NULL, Q, 1) == LB_ERR_INVALID_ARG);
    CHECK(lb_gptq_k_quantize(LB_TYPE_Q4_K, W, -1, COLS, H, NULL, Q, 1) == LB_ERR_INVALID_ARG);
    CHECK(lb_gptq_k_quantize(LB_TYPE_Q4_K, W, ROWS, COLS, NULL, NULL, Q, 1) == LB_ERR_INVALID_ARG);
    CHECK(lb_gptq_k_quantize(LB_TYPE_Q4_K, W, 0, COLS, H, NULL, Q, 1) == LB_OK);
    float keep = H[3 * COLS + 7];
    H[3 * COLS + 7] = NAN;
    CHECK(lb_gptq_k_quantize(LB_TYPE_Q4_K, W, ROWS, COLS, H, NULL, Q, 1) == LB_ERR_RANGE);
    H[3 * COLS + 7] = INFINITY;
    CHECK(lb_gptq_k_quantize(LB_TYPE_Q4_K, W, ROWS, COLS, H, NULL, Q, 1) == LB_ERR_RANGE);
    H[3 * COLS + 7] = keep;
}

int main(void)
{
    RUN(test_beats_plain_rounding);
    RUN(test_threads_same_bytes);
    RUN(test_diagonal_h_is_plain_rounding);
    RUN(test_degenerate_h);
    RUN(test_bad_arguments);
    return check_done();
}
