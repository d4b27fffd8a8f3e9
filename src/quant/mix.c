/* The --bpw mixer: measures, per tensor and candidate type, the
 * importance-weighted error of a sample of rows, then chooses the types that
 * minimise the summed relative error under the file's byte budget.
 *
 * Why relative error: every block's tensors feed the residual stream through
 * a normalisation, so what a tensor's rounding does to the model scales with
 * its output noise relative to its output signal, E[|dW x|^2] / E[|W x|^2].
 * With the importance matrix (mean x^2 per column) both are measured per
 * column; this is a measurement on the real weights and activation
 * statistics, not a rule by tensor name. */
#include "quant/mix.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "format/gguf.h"
#include "quant/ldlq.h"
#include "quant/quant.h"
#include "quant/quantize.h"

#define SAMPLE_ROWS 256
/* With a Hessian each sampled row costs cols^2 more to measure; the relative
 * error of 128 rows is steady to a few per cent. */
#define HESSIAN_SAMPLE_ROWS 128

/* The ladder.  Q2_K and Q3_K are left out on purpose: measured end to end
 * (docs/quantization.md) LBQ3 at 3.19 bpw is as good as Q3_K at 3.44, and
 * the weighted error below ranks the K-quants too well across families,
 * because it sees only the diagonal of the activation statistics. */
static const uint32_t CANDIDATES[] = {LB_TYPE_LBQ2, LB_TYPE_LBQV, LB_TYPE_LBQ3, LB_TYPE_LBQ4, LB_TYPE_Q4_K,
                                      LB_TYPE_Q5_K, LB_TYPE_Q6_K, LB_TYPE_Q8_0};
#define N_CAND ((int)(sizeof CANDIDATES / sizeof CANDIDATES[0]))

/* Per unit of squared error, rounding noise of the K-quants costs more than
 * that of the rotated lbq types, whose noise is spread evenly over the
 * columns: measured end to end, lbq3 (rel. RMS 0.17) and Q3_K (0.145) give
 * the same perplexity, a ratio of (0.17 / 0.145)^2 = 1.37 in error energy.
 * At 4 bits the rotation buys nothing per unit of error: LBQ4 and Q4_K
 * everywhere give the same KL per error energy (docs/quantization.md), so
 * LBQ4 takes the K-quants' factor. */
#define KQUANT_FACTOR 1.37

/* LB_MIX_KFACTOR overrides it for experiments. */
static double kquant_factor(void)
{
    const char *s = getenv("LB_MIX_KFACTOR");
    double v = s ? atof(s) : 0;
    return v > 0 ? v : KQUANT_FACTOR;
}

/* The quantizer's rule for which tensors it quantizes (quantizer.c). */
static bool quantizable(const char *name, uint32_t n_dims)
{
    size_t l = strlen(name);
    return l >= 6 && !strcmp(name + l - 6, "weight") && n_dims >= 2 && !strstr(name, "_norm.weight") &&
           !strstr(name, "ffn_gate_inp.weight") && strcmp(name, "position_embd.weight") &&
           strcmp(name, "token_types.weight");
}

typedef struct sjob {
    const uint8_t *src;        /* [nrows][src_row] */
    size_t src_row;
    int64_t ne0, nrows, stride, nsample;
    lb_dequant_fn src_dequant, dst_dequant;
    uint32_t type;
    const float *imp;          /* [ne0] or NULL: passed to the quantizer */
    const float *wimp;         /* [ne0] or NULL: weighs the measured error */
    float *scratch;            /* [nth][2 * ne0] */
    uint8_t *qbuf;             /* [nth][row bytes of the widest candidate] */
    size_t qrow;
    double *err, *sig;         /* [nth] */
} sjob;

static void sjob_run(void *ctx, int ith, int nth)
{
    sjob *j = ctx;
    int64_t s0, s1;
    lb_split(j->nsample, ith, nth, &s0, &s1);
    float *x = j->scratch + (size_t)ith * 2 * (size_t)j->ne0, *y = x + j->ne0;
    uint8_t *q = j->qbuf + (size_t)ith * j->qrow;
    double e = 0, s = 0;
    for (int64_t k = s0; k < s1; k++) {
        int64_t r = k * j->stride;
        j->src_dequant(j->src + (size_t)r * j->src_row, x, j->ne0);
        lb_quantize_row(j->type, x, q, j->ne0, j->imp);
        j->dst_dequant(q, y, j->ne0);
        for (int64_t i = 0; i < j->ne0; i++) {
            double w = j->wimp ? j->wimp[i] : 1.0, d = (double)x[i] - y[i];
            e += w * d * d;
            s += w * (double)x[i] * x[i];
        }
    }
    j->err[ith] = e;
    j->sig[ith] = s;
}

/* token_embd is only gathered, unless there is no output.weight and it is the tied output */
static bool multiplied(const lb_mix_choice *c, bool tied)
{
    return tied || strcmp(c->name, "token_embd.weight");
}

int lb_mix_plan_cap_lbqv(lb_mix_plan *p, double max_share)
{
    bool tied = true;
    for (int i = 0; i < p->n; i++)
        tied &= strcmp(p->choices[i].name, "output.weight") != 0;
    double total = 0, lbqv = 0;
    for (int i = 0; i < p->n; i++)
        if (multiplied(&p->choices[i], tied)) {
            total += (double)p->choices[i].n_params;
            lbqv += p->choices[i].type == LB_TYPE_LBQV ? (double)p->choices[i].n_params : 0;
        }
    int changed = 0;
    while (lbqv > max_share * total) {
        int best = -1;
        double best_cost = 0;
        for (int i = 0; i < p->n; i++) {
            const lb_mix_choice *c = &p->choices[i];
            if (c->type != LB_TYPE_LBQV || c->damage_lbq2 < 0 || !multiplied(c, tied))
                continue;
            /* decode time saved is proportional to the weights moved */
            double cost = (c->damage_lbq2 - c->damage) / (double)c->n_params;
            if (best < 0 || cost < best_cost) {
                best = i;
                best_cost = cost;
            }
        }
        if (best < 0)
            break;
        lb_mix_choice *c = &p->choices[best];
        c->type = LB_TYPE_LBQ2;
        c->damage = c->damage_lbq2;
        c->rel_err = sqrt(c->damage_lbq2);   /* as the plan's rel_err is made from its damage */
        p->ovr[best].type = LB_TYPE_LBQ2;
        lbqv -= (double)c->n_params;
        changed++;
    }
    return changed;
}

void lb_mix_plan_free(lb_mix_plan *p)
{
    if (!p)
        return;
    free(p->choices);
    free(p->ovr);
    free(p->patterns);
    memset(p, 0, sizeof *p);
}

typedef struct tinfo {
    int64_t idx;                  /* tensor index in the source */
    uint64_t n;                   /* parameters */
    double bytes[N_CAND];         /* whole tensor in each candidate; < 0 when the row length does not fit */
    double damage[N_CAND];        /* relative weighted error energy of the sample */
} tinfo;

/* Each tensor's best candidate for multiplier lambda; returns the total bytes. */
static double pick(const tinfo *ti, int nt, double lambda, int *choice)
{
    double total = 0;
    for (int t = 0; t < nt; t++) {
        int best = -1;
        double bv = INFINITY;
        for (int c = 0; c < N_CAND; c++) {
            if (ti[t].bytes[c] < 0)
                continue;
            double v = ti[t].damage[c] + lambda * ti[t].bytes[c];
            if (v < bv) {
                bv = v;
                best = c;
            }
        }
        choice[t] = best;
        total += best >= 0 ? ti[t].bytes[best] : 0;
    }
    return total;
}

/* Relative output error of every candidate on nsample rows of a tensor that
 * has a Hessian: the rows are quantized together by the file's quantizer
 * (one LDLQ factor shared by the lbq types).  damage[c] < 0 when a
 * candidate cannot take the row length. */
static lb_status measure_hessian(const lb_gguf_tensor *t, const char *name, lb_dequant_fn src_dequant,
                                 const float *h, const float *imp, int64_t nsample, int n_threads,
                                 const double *bytes, double *damage, lb_err *err)
{
    int64_t ne0 = t->ne[0], nrows = t->ne[1] * t->ne[2] * t->ne[3], stride = nrows / nsample;
    size_t src_row = lb_type_row_bytes(t->type, ne0);
    float *w = malloc((size_t)nsample * (size_t)ne0 * sizeof *w);  /* [nsample][ne0] sampled rows */
    float *y = malloc((size_t)ne0 * sizeof *y);                     /* [ne0] one dequantized row */
    uint8_t *q = malloc((size_t)nsample * lb_type_row_bytes(LB_TYPE_F32, ne0)); /* [nsample][row bytes] */
    lb_ldlq *f = NULL;
    lb_status st = LB_OK;
    if (!w || !y || !q) {
        st = lb__errf(err, LB_ERR_NOMEM, "tensor %s: out of memory for the sampled rows", name);
        goto out;
    }
    for (int64_t k = 0; k < nsample; k++)
        src_dequant((const uint8_t *)t->data + (size_t)(k * stride) * src_row, w + k * ne0, ne0);
    double sig = 0;
    for (int64_t k = 0; k < nsample; k++)
        sig += lb_ldlq_quad(h, w + k * ne0, ne0);
    for (int c = 0; c < N_CAND; c++) {
        uint32_t ty = CANDIDATES[c];
        if (bytes[c] < 0) {
            damage[c] = -1;
            continue;
        }
        bool lbq = ty == LB_TYPE_LBQ2 || ty == LB_TYPE_LBQ3 || ty == LB_TYPE_LBQ4;
        if (lbq && !f && (st = lb__ldlq_new_lbq(h, ne0, &f, err)))
            goto out;
        st = lbq ? lb__quantize_ldlq_lbq(ty, f, w, nsample, q, n_threads, err)
                 : lb_quantize_hessian(ty, w, nsample, ne0, h, imp, q, n_threads, err);
        if (st) {
            lb__err_prefix(err, "tensor %s: ", name);
            goto out;
        }
        size_t rb = lb_type_row_bytes(ty, ne0);
        double e = 0;
        for (int64_t k = 0; k < nsample; k++) {
            lb_quant_ref(ty)->dequant(q + (size_t)k * rb, y, ne0);
            for (int64_t i = 0; i < ne0; i++)
                y[i] = w[k * ne0 + i] - y[i];
            e += lb_ldlq_quad(h, y, ne0);
        }
        damage[c] = sig > 0 ? e / sig : 0;
    }
out:
    lb_ldlq_free(f);
    free(w);
    free(y);
    free(q);
    return st;
}

lb_status lb_mix_plan_bpw(const char *in_path, double bpw, const lb_imatrix *imatrix, int n_threads,
                          const lb_mix_sensitivity *sens, lb_mix_plan *out, lb_err *err)
{
    return lb_mix_plan_bpw_h(in_path, bpw, imatrix, NULL, n_threads, sens, out, err);
}

lb_status lb_mix_plan_bpw_h(const char *in_path, double bpw, const lb_imatrix *imatrix, const lb_hessian *hessian,
                            int n_threads, const lb_mix_sensitivity *sens, lb_mix_plan *out, lb_err *err)
{
    memset(out, 0, sizeof *out);
    if (!(bpw > 0 && bpw <= 32))
        return lb__errf(err, LB_ERR_INVALID_ARG, "--bpw %g: want a value in (0, 32]", bpw);
    lb_gguf *g = NULL;
    lb_status st = lb_gguf_open_file(in_path, true, &g, err);
    if (st) {
        lb__err_prefix(err, "%s: ", in_path);
        return st;
    }
    int64_t ntens = lb_gguf_n_tensors(g);
    tinfo *ti = calloc((size_t)(ntens > 0 ? ntens : 1), sizeof *ti);
    int *choice = calloc((size_t)(ntens > 0 ? ntens : 1), sizeof *choice);
    lb_pool *pool = lb_pool_new(n_threads > 0 ? n_threads : 0);
    float *scratch = NULL;
    uint8_t *qbuf = NULL;
    double *acc = NULL;
    int nq = 0;
    if (!ti || !choice || !pool) {
        st = lb__errf(err, LB_ERR_NOMEM, "out of memory");
        goto done;
    }
    int nth = lb_pool_size(pool);
    uint64_t n_params = 0, fixed_bytes = 0, data_bytes = 0;
    int64_t max_ne0 = 1;
    for (int64_t i = 0; i < ntens; i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        int64_t ne = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        n_params += (uint64_t)ne;
        data_bytes += lb_type_row_bytes(t->type, t->ne[0]) * (uint64_t)(ne / (t->ne[0] ? t->ne[0] : 1));
        max_ne0 = t->ne[0] > max_ne0 ? t->ne[0] : max_ne0;
    }
    /* metadata, tensor table and padding: about as in the source (a few keys more) */
    double overhead = (double)lb_gguf_file_size(g) - (double)data_bytes + 64.0 * (double)ntens + 256;
    scratch = malloc((size_t)nth * 2 * (size_t)max_ne0 * sizeof *scratch);
    size_t qrow = lb_type_row_bytes(LB_TYPE_F32, max_ne0);
    qbuf = malloc((size_t)nth * qrow);
    acc = calloc((size_t)nth * 2, sizeof *acc);
    if (!scratch || !qbuf || !acc) {
        st = lb__errf(err, LB_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < ntens; i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255), t->name.ptr);
        int64_t ne0 = t->ne[0], nrows = t->ne[1] * t->ne[2] * t->ne[3];
        if (!quantizable(name, t->n_dims)) {
            fixed_bytes += t->n_dims == 1 || strstr(name, "_norm") ? (uint64_t)(ne0 * nrows) * 4
                                                                   : lb_type_row_bytes(t->type, ne0) * (uint64_t)nrows;
            continue;
        }
        const lb_quant_traits *src = lb_quant_ref(t->type);
        if (!src || !src->dequant || (t->type != LB_TYPE_F32 && t->type != LB_TYPE_F16 && t->type != LB_TYPE_BF16)) {
            st = lb__errf(err, LB_ERR_UNSUPPORTED, "tensor %s: --bpw wants an F32/F16/BF16 source", name);
            goto done;
        }
        const float *imp = NULL;
        if (imatrix) {
            int64_t ic = 0;
            imp = lb_imatrix_find(imatrix, name, &ic);
            if (imp && ic != ne0) {
                st = lb__errf(err, LB_ERR_INVALID_ARG, "tensor %s: importance matrix has %lld columns, tensor %lld",
                              name, (long long)ic, (long long)ne0);
                goto done;
            }
        }
        tinfo *r = &ti[nq];
        r->idx = i;
        r->n = (uint64_t)(ne0 * nrows);
        int64_t nsample = nrows < SAMPLE_ROWS ? nrows : SAMPLE_ROWS;
        int64_t hcols = 0;
        const float *hm = hessian ? lb_hessian_find(hessian, name, &hcols) : NULL;
        if (hm && hcols != ne0) {
            st = lb__errf(err, LB_ERR_INVALID_ARG, "tensor %s: the Hessian is %lld x %lld, the rows have %lld columns",
                          name, (long long)hcols, (long long)hcols, (long long)ne0);
            goto done;
        }
        if (hm) {
            for (int c = 0; c < N_CAND; c++) {
                size_t rb = lb_type_row_bytes(CANDIDATES[c], ne0);
                r->bytes[c] = rb ? (double)rb * (double)nrows : -1;
            }
            int64_t hs = nrows < HESSIAN_SAMPLE_ROWS ? nrows : HESSIAN_SAMPLE_ROWS;
            if ((st = measure_hessian(t, name, src->dequant, hm, imp, hs, nth, r->bytes, r->damage, err)))
                goto done;
            for (int c = 0; c < N_CAND; c++)
                if (CANDIDATES[c] != LB_TYPE_LBQ2 && CANDIDATES[c] != LB_TYPE_LBQV &&
                    CANDIDATES[c] != LB_TYPE_LBQ3)
                    r->damage[c] *= kquant_factor();
        }
        for (int c = 0; c < N_CAND && !hm; c++) {
            size_t rb = lb_type_row_bytes(CANDIDATES[c], ne0);
            if (!rb) {
                r->bytes[c] = -1;
                continue;
            }
            r->bytes[c] = (double)rb * (double)nrows;
            sjob j = {t->data, lb_type_row_bytes(t->type, ne0), ne0, nrows, nrows / nsample, nsample,
                      src->dequant, lb_quant_ref(CANDIDATES[c])->dequant, CANDIDATES[c], imp,
                      sens && sens->fn ? NULL : imp, scratch, qbuf, qrow, acc, acc + nth};
            lb_pool_run(pool, sjob_run, &j);
            double e = 0, s = 0;
            for (int k = 0; k < nth; k++) {
                e += acc[k];
                s += acc[nth + k];
            }
            r->damage[c] = s > 0 ? e / s : 0;
            if (CANDIDATES[c] != LB_TYPE_LBQ2 && CANDIDATES[c] != LB_TYPE_LBQV &&
                CANDIDATES[c] != LB_TYPE_LBQ3)
                r->damage[c] *= kquant_factor();
        }
        if (sens && sens->fn) {
            double k = sens->fn(sens->user, name), base = r->damage[0]; /* CANDIDATES[0] is LBQ2 */
            if (k >= 0 && base > 0)
                for (int c = 0; c < N_CAND; c++)
                    r->damage[c] *= k / base;
        }
        nq++;
    }
    double budget = bpw * (double)n_params / 8.0 - overhead - (double)fixed_bytes;
    /* the smallest lambda whose choice fits: damage falls and bytes grow as lambda falls */
    double lo = 1e-15, hi = 1e3;
    if (pick(ti, nq, hi, choice) > budget) {
        double min_bpw = (pick(ti, nq, hi, choice) + overhead + (double)fixed_bytes) * 8.0 / (double)n_params;
        st = lb__errf(err, LB_ERR_INVALID_ARG, "--bpw %.3f is below the smallest reachable %.3f bits per weight",
                      bpw, min_bpw);
        goto done;
    }
    for (int it = 0; it < 200; it++) {
        double mid = sqrt(lo * hi);
        if (pick(ti, nq, mid, choice) > budget)
            lo = mid;
        else
            hi = mid;
    }
    double used = pick(ti, nq, hi, choice);
    /* spend what is left: cheapest further upgrades by damage saved per byte */
    for (;;) {
        int bt = -1, bc = -1;
        double bgain = 0;
        for (int t = 0; t < nq; t++)
            for (int c = 0; c < N_CAND; c++) {
                double db = ti[t].bytes[c] - ti[t].bytes[choice[t]];
                double dd = ti[t].damage[choice[t]] - ti[t].damage[c];
                if (ti[t].bytes[c] < 0 || db <= 0 || dd <= 0 || used + db > budget)
                    continue;
                if (dd / db > bgain) {
                    bgain = dd / db;
                    bt = t;
                    bc = c;
                }
            }
        if (bt < 0)
            break;
        used += ti[bt].bytes[bc] - ti[bt].bytes[choice[bt]];
        choice[bt] = bc;
    }
    out->choices = calloc((size_t)(nq > 0 ? nq : 1), sizeof *out->choices);
    out->ovr = calloc((size_t)(nq > 0 ? nq : 1), sizeof *out->ovr);
    out->patterns = calloc((size_t)(nq > 0 ? nq : 1), sizeof *out->patterns);
    if (!out->choices || !out->ovr || !out->patterns) {
        st = lb__errf(err, LB_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int t = 0; t < nq; t++) {
        const lb_gguf_tensor *gt = lb_gguf_tensor_at(g, ti[t].idx);
        lb_mix_choice *c = &out->choices[t];
        snprintf(c->name, sizeof c->name, "%.*s", (int)(gt->name.len < 95 ? gt->name.len : 95), gt->name.ptr);
        c->type = CANDIDATES[choice[t]];
        c->n_params = ti[t].n;
        c->rel_err = sqrt(ti[t].damage[choice[t]]);
        c->damage = ti[t].damage[choice[t]];
        c->damage_lbq2 = ti[t].bytes[0] >= 0 ? ti[t].damage[0] : -1; /* CANDIDATES[0] is LBQ2 */
        snprintf(out->patterns[t], sizeof out->patterns[t], "=%s", c->name);
        out->ovr[t] = (lb_quantize_override){out->patterns[t], c->type};
    }
    out->n = nq;
    out->predicted_bpw = (used + overhead + (double)fixed_bytes) * 8.0 / (double)n_params;
    st = LB_OK;
done:
    if (st)
        lb_mix_plan_free(out);
    free(ti);
    free(choice);
    free(scratch);
    free(qbuf);
    free(acc);
    lb_pool_free(pool);
    lb_gguf_free(g);
    return st;
}
