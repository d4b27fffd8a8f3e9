/* Tests of the --bpw mixer (quant/mix.c) on a small synthetic F32 GGUF: the
 * written file meets the budget and its prediction, more budget buys more
 * precise types, a measured sensitivity moves bits to the sensitive tensor,
 * and an unreachable budget is refused with a message. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "format/gguf.h"
#include "quant/mix.h"
#include "quant/quantizer.h"

static uint64_t rng_state = 0x13198A2E03707344ull;
static float rng_gauss(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    float u1 = (float)(z >> 40) / (float)(1u << 24) + 1e-7f, u2 = (float)(z & 0xFFFFFF) / (float)(1u << 24);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

static char path_in[256], path_out[256];

/* Four weights of 512 x 64 with the same statistics, and a norm. */
static const char *names[4] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.ffn_up.weight",
                               "blk.0.ffn_down.weight"};

static int make_model(void)
{
    lb_gguf_writer *w = lb_gguf_writer_new();
    static float data[4][64 * 512]; /* [4][64 rows][512] */
    static float norm[512];
    if (!w)
        return 1;
    lb_gguf_writer_set_str(w, "general.architecture", "llama");
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < 64 * 512; i++)
            data[t][i] = rng_gauss() * 0.02f * (i % 53 == 0 ? 6.0f : 1.0f);
        int64_t ne[2] = {512, 64};
        lb_gguf_writer_add_tensor(w, names[t], LB_TYPE_F32, 2, ne, data[t]);
    }
    for (int i = 0; i < 512; i++)
        norm[i] = 1.0f;
    int64_t ne1[1] = {512};
    lb_gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", LB_TYPE_F32, 1, ne1, norm);
    lb_err err = {0};
    lb_status st = lb_gguf_writer_write(w, path_in, &err);
    lb_gguf_writer_free(w);
    return st != LB_OK;
}

static uint32_t type_of(const lb_mix_plan *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->choices[i].name, name))
            return p->choices[i].type;
    return UINT32_MAX;
}

static double bits_of(uint32_t t)
{
    const lb_type_layout *l = lb_type_layout_of(t);
    return l ? 8.0 * l->bytes / l->blck : 0;
}

/* Writes path_out with the plan's types (base type `type` for anything else). */
static lb_status write_plan(const lb_mix_plan *plan, const char *type, lb_quantize_report *rep, lb_err *err)
{
    lb_quantize_params qp = lb_quantize_default_params();
    if (type)
        qp.type = type;
    qp.n_threads = 1;
    qp.overrides = plan->ovr;
    qp.n_overrides = plan->n;
    return lb_quantize_file(path_in, path_out, &qp, rep, err);
}

static void test_budget(void)
{
    double prev_bits = 0;
    const double budgets[3] = {3.0, 4.2, 6.0};
    for (int b = 0; b < 3; b++) {
        lb_mix_plan plan;
        lb_err err = {0};
        lb_status st = lb_mix_plan_bpw(path_in, budgets[b], NULL, 1, NULL, &plan, &err);
        CHECKF(st == LB_OK, "bpw %.1f: %s", budgets[b], err.msg);
        if (st)
            continue;
        CHECK(plan.n == 4);
        lb_quantize_report rep;
        st = write_plan(&plan, "q4_K", &rep, &err);
        CHECKF(st == LB_OK, "%s", err.msg);
        if (!st) {
            CHECKF(rep.bpw <= budgets[b], "budget %.2f, file %.4f", budgets[b], rep.bpw);
            CHECKF(fabs(rep.bpw - plan.predicted_bpw) < 0.05, "predicted %.4f, file %.4f", plan.predicted_bpw,
                   rep.bpw);
            /* the plan is what got written */
            int same = 1;
            for (int i = 0; i < rep.n_tensors; i++)
                if (type_of(&plan, rep.tensors[i].name) != UINT32_MAX)
                    same &= type_of(&plan, rep.tensors[i].name) == rep.tensors[i].type;
            CHECK(same);
            lb_quantize_report_free(&rep);
        }
        double bits = 0;
        for (int i = 0; i < plan.n; i++)
            bits += bits_of(plan.choices[i].type);
        CHECKF(bits >= prev_bits, "budget %.1f: %.3f bits in all, less than %.3f before", budgets[b], bits, prev_bits);
        prev_bits = bits;
        lb_mix_plan_free(&plan);
    }
}

static double sens_k_high(void *user, const char *name)
{
    (void)user;
    return strstr(name, "attn_k") ? 1.0 : 0.001;
}

static void test_sensitivity(void)
{
    lb_mix_plan plan;
    lb_err err = {0};
    lb_mix_sensitivity s = {sens_k_high, NULL};
    lb_status st = lb_mix_plan_bpw(path_in, 3.5, NULL, 1, &s, &plan, &err);
    CHECKF(st == LB_OK, "%s", err.msg);
    if (st)
        return;
    double bk = bits_of(type_of(&plan, "blk.0.attn_k.weight")), bq = bits_of(type_of(&plan, "blk.0.attn_q.weight"));
    CHECKF(bk > bq, "attn_k %.2f bits, attn_q %.2f bits", bk, bq);
    lb_mix_plan_free(&plan);
}

static void test_too_small(void)
{
    lb_mix_plan plan;
    lb_err err = {0};
    lb_status st = lb_mix_plan_bpw(path_in, 1.0, NULL, 1, NULL, &plan, &err);
    CHECK(st == LB_ERR_INVALID_ARG && plan.n == 0);
    CHECKF(strstr(err.msg, "smallest reachable") != NULL, "%s", err.msg);
    st = lb_mix_plan_bpw(path_in, -2, NULL, 1, NULL, &plan, &err);
    CHECK(st == LB_ERR_INVALID_ARG);
}

static lb_mix_choice choice(const char *name, uint32_t type, uint64_t n, double damage, double damage_lbq2)
{
    lb_mix_choice c = {.type = type, .n_params = n, .damage = damage, .damage_lbq2 = damage_lbq2,
                       .rel_err = sqrt(damage)};
    snprintf(c.name, sizeof c.name, "%s", name);
    return c;
}

/* The lbqv cap swaps the tensors whose lbq2 rounding adds the least damage
 * per weight, never the gathered-only token_embd (unless it is the tied
 * output), never one that cannot be lbq2, and keeps plan and overrides in step. */
static void test_cap_lbqv(void)
{
    for (int tied = 0; tied < 2; tied++) {
        lb_mix_choice cs[6] = {
            choice("token_embd.weight", LB_TYPE_LBQV, 4000, 0.010, 0.011),  /* cheapest per weight */
            choice("output.weight", LB_TYPE_LBQ3, 4000, 0.020, 0.090),
            choice("blk.0.ffn_up.weight", LB_TYPE_LBQV, 3000, 0.010, 0.013), /* 1e-6 per weight */
            choice("blk.0.ffn_down.weight", LB_TYPE_LBQV, 3000, 0.010, 0.040), /* 1e-5 */
            choice("blk.0.attn_q.weight", LB_TYPE_LBQV, 1000, 0.010, 0.012),   /* 2e-6 */
            choice("blk.0.attn_k.weight", LB_TYPE_LBQV, 500, 0.010, -1),      /* lbq2 does not fit */
        };
        const int n = 6;
        if (tied) /* no output.weight: token_embd is the output matrix */
            cs[1] = choice("blk.0.attn_v.weight", LB_TYPE_LBQ3, 4000, 0.020, 0.090);
        lb_quantize_override ovr[6];
        for (int i = 0; i < n; i++)
            ovr[i] = (lb_quantize_override){cs[i].name, cs[i].type};
        lb_mix_plan p = {.choices = cs, .ovr = ovr, .n = n};
        /* multiplied: 4000 (lbq3) + 3000 + 3000 + 1000 + 500 (+ 4000 tied) */
        CHECK(lb_mix_plan_cap_lbqv(&p, 1.0) == 0);
        int changed = lb_mix_plan_cap_lbqv(&p, 0.45);
        double total = tied ? 15500 : 11500, lbqv = 0;
        for (int i = 0; i < n; i++) {
            CHECK(ovr[i].type == cs[i].type);
            if (cs[i].type == LB_TYPE_LBQV && (tied || i != 0))
                lbqv += (double)cs[i].n_params;
        }
        CHECKF(lbqv <= 0.45 * total, "tied %d: %.0f of %.0f weights still lbqv", tied, lbqv, total);
        if (!tied) {
            /* 7500 of 11500 lbqv, at most 5175: ffn_up alone (3000, the least damage per weight) is enough */
            CHECKF(changed == 1, "%d changed", changed);
            CHECK(cs[2].type == LB_TYPE_LBQ2 && cs[4].type == LB_TYPE_LBQV && cs[3].type == LB_TYPE_LBQV);
            CHECK(cs[0].type == LB_TYPE_LBQV);
            CHECK(fabs(cs[2].damage - 0.013) < 1e-12 && fabs(cs[2].rel_err - sqrt(0.013)) < 1e-12);
        } else {
            /* 11500 of 15500: token_embd (4000, 2.5e-7 per weight) goes first, then ffn_up */
            CHECK(cs[0].type == LB_TYPE_LBQ2 && cs[2].type == LB_TYPE_LBQ2 && cs[3].type == LB_TYPE_LBQV);
            CHECKF(changed == 2, "%d changed", changed);
        }
        /* no cap can move the tensor that has no lbq2 rounding */
        lb_mix_plan_cap_lbqv(&p, 0.0);
        CHECK(cs[5].type == LB_TYPE_LBQV && cs[3].type == LB_TYPE_LBQ2 && cs[4].type == LB_TYPE_LBQ2);
        CHECK(cs[1].type == LB_TYPE_LBQ3);
        CHECK(cs[0].type == (tied ? LB_TYPE_LBQ2 : LB_TYPE_LBQV));
    }
}

/* The cap on a measured plan: the file keeps its size and its lbqv share holds. */
static void test_cap_lbqv_plan(void)
{
    lb_mix_plan plan;
    lb_err err = {0};
    lb_status st = lb_mix_plan_bpw(path_in, 2.42, NULL, 1, NULL, &plan, &err);
    CHECKF(st == LB_OK, "%s", err.msg);
    if (st)
        return;
    int nv = 0;
    for (int i = 0; i < plan.n; i++)
        nv += plan.choices[i].type == LB_TYPE_LBQV;
    CHECKF(nv >= 2, "the 2.42-bpw plan has %d lbqv tensors", nv);
    lb_mix_plan_cap_lbqv(&plan, 0.5);
    int nv2 = 0, n2 = 0;
    for (int i = 0; i < plan.n; i++) {
        nv2 += plan.choices[i].type == LB_TYPE_LBQV;
        n2 += plan.choices[i].type == LB_TYPE_LBQ2;
    }
    CHECKF(nv2 <= 2 && n2 >= nv - 2, "lbqv %d -> %d, lbq2 %d", nv, nv2, n2);
    lb_quantize_report rep;
    st = write_plan(&plan, NULL, &rep, &err);
    CHECKF(st == LB_OK, "%s", err.msg);
    if (!st) {
        CHECKF(rep.bpw <= 2.42, "written %.4f bpw", rep.bpw);
        int lbq2 = 0;
        for (int i = 0; i < rep.n_tensors; i++)
            lbq2 += rep.tensors[i].type == LB_TYPE_LBQ2;
        CHECK(lbq2 == n2);
        lb_quantize_report_free(&rep);
    }
    lb_mix_plan_free(&plan);
}

/* With Hessians (correlated inputs) for the weights: the plan still fits
 * its budget and the file written with the same Hessians meets it; a
 * Hessian of the wrong size is refused naming the tensor. */
static void test_hessian_plan(void)
{
    char hpath[256];
    snprintf(hpath, sizeof hpath, "/tmp/lb_test_mix_%d_h.gguf", (int)getpid());
    static float h[512 * 512], hs[256 * 256]; /* [512][512] and a wrong [256][256] */
    static float x[64][512];                  /* [64 tokens][512] inputs with shared factors */
    for (int t = 0; t < 64; t++) {
        float f = rng_gauss();
        for (int c = 0; c < 512; c++)
            x[t][c] = f * (c % 3 == 0 ? 1.0f : 0.5f) + 0.3f * rng_gauss();
    }
    for (int i = 0; i < 512; i++)
        for (int k = 0; k < 512; k++) {
            double a = 0;
            for (int t = 0; t < 64; t++)
                a += (double)x[t][i] * x[t][k];
            h[i * 512 + k] = (float)(a / 64);
        }
    for (int i = 0; i < 256; i++)
        hs[i * 256 + i] = 1;
    for (int bad = 0; bad < 2; bad++) {
        lb_gguf_writer *w = lb_gguf_writer_new();
        lb_gguf_writer_set_str(w, "general.type", "hessian");
        int64_t ne[2] = {512, 512}, ne_bad[2] = {256, 256};
        for (int t = 0; t < 4; t++)
            lb_gguf_writer_add_tensor(w, names[t], LB_TYPE_F32, 2, bad && t == 2 ? ne_bad : ne,
                                      bad && t == 2 ? hs : h);
        CHECK(lb_gguf_writer_write(w, hpath, NULL) == LB_OK);
        lb_gguf_writer_free(w);
        lb_hessian *hes = NULL;
        CHECK(lb_hessian_load(hpath, &hes) == LB_OK);
        lb_mix_plan plan;
        lb_err err = {0};
        lb_status st = lb_mix_plan_bpw_h(path_in, 3.0, NULL, hes, 1, NULL, &plan, &err);
        if (bad) {
            CHECK(st == LB_ERR_INVALID_ARG);
            CHECKF(strstr(err.msg, names[2]) != NULL, "%s", err.msg);
            lb_hessian_free(hes);
            continue;
        }
        CHECKF(st == LB_OK, "%s", err.msg);
        if (st) {
            lb_hessian_free(hes);
            continue;
        }
        CHECKF(plan.predicted_bpw <= 3.0, "predicted %.3f", plan.predicted_bpw);
        lb_quantize_params qp = lb_quantize_default_params();
        qp.overrides = plan.ovr;
        qp.n_overrides = plan.n;
        qp.n_threads = 1;
        qp.hessian = hes;
        lb_quantize_report rep;
        CHECKF(lb_quantize_file(path_in, path_out, &qp, &rep, &err) == LB_OK, "%s", err.msg);
        CHECKF(rep.bpw <= 3.0, "written %.3f bpw", rep.bpw);
        int used = 0;
        for (int64_t i = 0; i < rep.n_tensors; i++)
            used += rep.tensors[i].hessian_used;
        CHECKF(used == 4 || plan.n < 4, "%d tensors rounded with the Hessian", used);
        lb_quantize_report_free(&rep);
        lb_mix_plan_free(&plan);
        lb_hessian_free(hes);
    }
    remove(hpath);
}

int main(void)
{
    snprintf(path_in, sizeof path_in, "/tmp/lb_test_mix_%d.gguf", (int)getpid());
    snprintf(path_out, sizeof path_out, "/tmp/lb_test_mix_%d_out.gguf", (int)getpid());
    CHECK(make_model() == 0);
    RUN(test_budget);
    RUN(test_sensitivity);
    RUN(test_too_small);
    RUN(test_hessian_plan);
    RUN(test_cap_lbqv);
    RUN(test_cap_lbqv_plan);
    remove(path_in);
    remove(path_out);
    return check_done();
}
