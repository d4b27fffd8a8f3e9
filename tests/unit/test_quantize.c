/* Tests of the quality quantizers (quant/quantize.h) and the file quantizer
 * (quant/quantizer.h): error against the simple reference quantizers and
 * fixed bounds, round trips, importance weights, and a whole model file. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "base/fp16.h"
#include "format/gguf.h"
#include "lowbit.h"
#include "quant/quant.h"
#include "quant/quantize.h"
#include "quant/quantizer.h"

#define N (4096 * 4)

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static double u01(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) { return sqrt(-2 * log(u01())) * cos(6.283185307179586 * u01()); }

/* x[N]: Gaussian, or Student-t with 3 degrees of freedom (heavy tails, as real weight rows have). */
static void fill(float *x, bool heavy)
{
    for (int i = 0; i < N; i++) {
        double g = gauss();
        if (heavy) {
            double c = 0;
            for (int k = 0; k < 3; k++) {
                double z = gauss();
                c += z * z;
            }
            g /= sqrt(c / 3);
        }
        x[i] = (float)(0.02 * g);
    }
}

static const struct {
    uint32_t type;
    double bound; /* relative RMS error bound, met on both distributions */
} TYPES[] = {
    {LB_TYPE_Q8_0, 0.012}, {LB_TYPE_Q4_0, 0.14}, {LB_TYPE_Q4_1, 0.10}, {LB_TYPE_Q5_0, 0.07},
    {LB_TYPE_Q5_1, 0.05},  {LB_TYPE_Q2_K, 0.34}, {LB_TYPE_Q3_K, 0.20}, {LB_TYPE_Q4_K, 0.10},
    {LB_TYPE_Q5_K, 0.05},  {LB_TYPE_Q6_K, 0.03},
};
#define N_TYPES ((int)(sizeof TYPES / sizeof TYPES[0]))

static double rel_rms(const float *x, const float *y, int n)
{
    double e = 0, s = 0;
    for (int i = 0; i < n; i++) {
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        s += (double)x[i] * x[i];
    }
    return sqrt(e / s);
}

static int blck(uint32_t t) { return lb_type_layout_of(t)->blck; }

/* The search must beat the simple reference on the error it minimises, and stay under a fixed bound. */
static void test_better_than_simple(void)
{
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y); /* [N] */
    void *q = malloc(N * 4);
    for (int heavy = 0; heavy < 2; heavy++) {
        fill(x, heavy);
        for (int k = 0; k < N_TYPES; k++) {
            uint32_t t = TYPES[k].type;
            const lb_quant_traits *tr = lb_quant_ref(t);
            tr->quantize(x, q, N);
            tr->dequant(q, y, N);
            double w_simple = lb_quantize_weighted_err(x, y, N, blck(t), NULL);
            lb_quantize_row(t, x, q, N, NULL);
            tr->dequant(q, y, N);
            double w_new = lb_quantize_weighted_err(x, y, N, blck(t), NULL), r = rel_rms(x, y, N);
            CHECKF(w_new <= w_simple, "%s %s: weighted error %g > simple %g", lb_type_layout_of(t)->name,
                   heavy ? "heavy" : "gauss", w_new, w_simple);
            CHECKF(r <= TYPES[k].bound, "%s %s: rel rms %g > %g", lb_type_layout_of(t)->name, heavy ? "heavy" : "gauss",
                   r, TYPES[k].bound);
        }
    }
    free(x);
    free(y);
    free(q);
}

/* Quantizing what a quantizer produced must come back (nearly) unchanged:
 * the values lie on a grid the search can find again. */
static void test_round_trip(void)
{
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *z = malloc(N * sizeof *z); /* [N] */
    void *q = malloc(N * 4);
    fill(x, false);
    for (int k = 0; k < N_TYPES; k++) {
        uint32_t t = TYPES[k].type;
        const lb_quant_traits *tr = lb_quant_ref(t);
        lb_quantize_row(t, x, q, N, NULL);
        tr->dequant(q, y, N);
        bool finite = true;
        for (int i = 0; i < N; i++)
            finite &= isfinite(y[i]);
        CHECKF(finite, "%s: non-finite output", lb_type_layout_of(t)->name);
        lb_quantize_row(t, y, q, N, NULL);
        tr->dequant(q, z, N);
        double first = rel_rms(x, y, N), second = rel_rms(y, z, N);
        CHECKF(second <= 0.25 * first, "%s: requantizing moved values by %g (first error %g)",
               lb_type_layout_of(t)->name, second, first);
        /* an all-zero row stays zero */
        for (int i = 0; i < 256; i++)
            z[i] = 0;
        lb_quantize_row(t, z, q, 256, NULL);
        tr->dequant(q, y, 256);
        double s = 0;
        for (int i = 0; i < 256; i++)
            s += fabs(y[i]);
        CHECKF(s == 0, "%s: zero row dequantizes to sum |y| = %g", lb_type_layout_of(t)->name, s);
    }
    /* the float types convert exactly as base/fp16.h does */
    lb_f16 h[4];
    float v[4] = {1.0f, -2.5f, 65504.0f, 1e-3f};
    lb_quantize_row(LB_TYPE_F16, v, h, 4, NULL);
    for (int i = 0; i < 4; i++)
        CHECK(h[i] == lb_f32_to_f16(v[i]));
    free(x);
    free(y);
    free(z);
    free(q);
}

/* Heavy importance on a quarter of the columns must lower the error there. */
static void test_importance(void)
{
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *imp = malloc(N * sizeof *imp); /* [N] */
    void *q = malloc(N * 4);
    fill(x, true);
    for (int i = 0; i < N; i++)
        imp[i] = (i % 16) < 4 ? 50.0f : 1.0f; /* a quarter of the columns of every block */
    for (int k = 0; k < N_TYPES; k++) {
        uint32_t t = TYPES[k].type;
        const lb_quant_traits *tr = lb_quant_ref(t);
        double e[2];
        for (int pass = 0; pass < 2; pass++) {
            lb_quantize_row(t, x, q, N, pass ? imp : NULL);
            tr->dequant(q, y, N);
            e[pass] = 0;
            for (int i = 0; i < N; i++)
                if ((i % 16) < 4)
                    e[pass] += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        }
        CHECKF(e[1] < e[0], "%s: error on important columns %g, without importance %g", lb_type_layout_of(t)->name,
               e[1], e[0]);
    }
    free(x);
    free(y);
    free(imp);
    free(q);
}

static uint32_t type_of(const lb_gguf *g, const char *name)
{
    const lb_gguf_tensor *t = lb_gguf_find_tensor(g, name);
    return t ? t->type : 9999;
}

/* The real model to q4_K_M: llama.cpp's type layout, a loadable file, the expected size. */
static void test_file_q4_K_M(void)
{
    char out[] = "/tmp/lb_test_quantize_XXXXXX";
    int fd = mkstemp(out);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    lb_quantize_params p = lb_quantize_default_params();
    p.type = "q4_K_M";
    p.n_threads = 2;
    lb_quantize_report rep;
    lb_err err = {0};
    lb_status st = lb_quantize_file(check_shared("models/techdocs-28M-f16.gguf"), out, &p, &rep, &err);
    CHECKF(st == LB_OK, "quantize: %s", err.msg);
    if (st) {
        remove(out);
        return;
    }
    CHECK(rep.n_params == 28320256);
    CHECKF(rep.bpw > 4.90 && rep.bpw < 4.97, "bpw %g (llama.cpp's q4_K_M: 4.935)", rep.bpw);
    CHECK(rep.file_type == 15);
    CHECK(!rep.requantized && rep.n_fallback == 0);
    double worst = 0;
    for (int64_t i = 0; i < rep.n_tensors; i++)
        if (rep.tensors[i].rel_rms > worst)
            worst = rep.tensors[i].rel_rms;
    CHECKF(worst > 0.01 && worst < 0.09, "worst tensor rel rms %g", worst);
    lb_quantize_report_free(&rep);

    lb_gguf *g = NULL;
    st = lb_gguf_open_file(out, true, &g, &err);
    CHECKF(st == LB_OK, "read back: %s", err.msg);
    if (!st) {
        CHECK(type_of(g, "output.weight") == LB_TYPE_Q6_K);
        CHECK(type_of(g, "token_embd.weight") == LB_TYPE_Q4_K);
        CHECK(type_of(g, "output_norm.weight") == LB_TYPE_F32);
        CHECK(type_of(g, "blk.0.attn_norm.weight") == LB_TYPE_F32);
        CHECK(type_of(g, "blk.0.attn_q.weight") == LB_TYPE_Q4_K);
        CHECK(type_of(g, "blk.0.attn_v.weight") == LB_TYPE_Q6_K);   /* layers 0, 3, 6, 7 of 8 get more bits */
        CHECK(type_of(g, "blk.1.attn_v.weight") == LB_TYPE_Q4_K);
        CHECK(type_of(g, "blk.3.ffn_down.weight") == LB_TYPE_Q6_K);
        CHECK(type_of(g, "blk.4.ffn_down.weight") == LB_TYPE_Q4_K);
        CHECK(type_of(g, "blk.7.ffn_down.weight") == LB_TYPE_Q6_K);
        CHECK(type_of(g, "blk.5.ffn_up.weight") == LB_TYPE_Q4_K);
        int64_t v = 0;
        CHECK(lb_gguf_get_int(g, "general.file_type", &v, NULL) == LB_OK && v == 15);
        CHECK(lb_gguf_get_int(g, "general.quantization_version", &v, NULL) == LB_OK && v == 2);
        CHECK(lb_gguf_get_int(g, "llama.block_count", &v, NULL) == LB_OK && v == 8);
        lb_gguf_free(g);
    }
    lb_model_params mp = lb_model_default_params();
    lb_model *m = NULL;
    st = lb_model_load(out, &mp, &m);
    CHECKF(st == LB_OK, "lb_model_load: %s", lb_last_load_error());
    lb_model_free(m);
    remove(out);
}

/* Rows that are not a multiple of 256 fall back to a 32-block type; bad names are rejected. */
static void test_file_fallback(void)
{
    char in[] = "/tmp/lb_test_quantize_in_XXXXXX", out[] = "/tmp/lb_test_quantize_out_XXXXXX";
    int f1 = mkstemp(in), f2 = mkstemp(out);
    CHECK(f1 >= 0 && f2 >= 0);
    if (f1 < 0 || f2 < 0)
        return;
    close(f1);
    close(f2);
    float *w = malloc(96 * 64 * sizeof *w), norm[96]; /* [64 rows][96], [96] */
    for (int i = 0; i < 96 * 64; i++)
        w[i] = (float)(0.02 * gauss());
    for (int i = 0; i < 96; i++)
        norm[i] = 1.0f;
    lb_gguf_writer *gw = lb_gguf_writer_new();
    int64_t ne2[2] = {96, 64}, ne1[1] = {96};
    lb_gguf_writer_set_str(gw, "general.architecture", "llama");
    lb_gguf_writer_add_tensor(gw, "blk.0.ffn_up.weight", LB_TYPE_F32, 2, ne2, w);
    lb_gguf_writer_add_tensor(gw, "blk.0.ffn_norm.weight", LB_TYPE_F32, 1, ne1, norm);
    lb_err err = {0};
    CHECK(lb_gguf_writer_write(gw, in, &err) == LB_OK);
    lb_gguf_writer_free(gw);

    lb_quantize_params p = lb_quantize_default_params();
    p.type = "q4_K_M";
    p.n_threads = 1;
    lb_quantize_report rep;
    lb_status st = lb_quantize_file(in, out, &p, &rep, &err);
    CHECKF(st == LB_OK, "%s", err.msg);
    if (!st) {
        CHECK(rep.n_tensors == 2 && rep.n_fallback == 1);
        CHECK(rep.tensors[0].fallback && rep.tensors[0].wanted == LB_TYPE_Q4_K && rep.tensors[0].type == LB_TYPE_Q5_0);
        CHECK(rep.tensors[0].rel_rms > 0 && rep.tensors[0].rel_rms < 0.06);
        CHECK(rep.tensors[1].type == LB_TYPE_F32 && rep.tensors[1].rel_rms == 0);
        lb_quantize_report_free(&rep);
    }
    p.type = "q9_K";
    st = lb_quantize_file(in, out, &p, &rep, &err);
    CHECK(st == LB_ERR_INVALID_ARG && strstr(err.msg, "q9_K"));
    p.type = "q8_0";
    st = lb_quantize_file("/nonexistent/x.gguf", out, &p, &rep, &err);
    CHECK(st != LB_OK && strstr(err.msg, "/nonexistent/x.gguf"));
    free(w);
    remove(in);
    remove(out);
}

int main(void)
{
    RUN(test_better_than_simple);
    RUN(test_round_trip);
    RUN(test_importance);
    RUN(test_file_fallback);
    RUN(test_file_q4_K_M);
    return check_done();
}
