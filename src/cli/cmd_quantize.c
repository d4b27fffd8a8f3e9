/* `lowbit quantize`: converts an F32/F16/BF16 GGUF into a quantized one
 * (a single type or one of llama.cpp's familiar mixes) and reports what
 * each tensor became, its bits per weight and its relative RMS error. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "cli.h"
#include "format/gguf.h"
#include "quant/mix.h"
#include "quantize_sens.h"
#include "quant/quantizer.h"

static const char *help =
    "usage: lowbit quantize IN.gguf OUT.gguf --type T [options]\n"
    "\n"
    "  --type T          q4_K_M (default), q4_K_S, q3_K_M, q3_K_S, q2_K, q5_K_M, q5_K_S, q6_K,\n"
    "                    q8_0, q4_0, q4_1, q5_0, q5_1 (llama.cpp's mixes of the same names),\n"
    "                    q3_K, q4_K, q5_K (one type throughout), f16, bf16, f32\n"
    "  --pure            no mix: every 2-D weight gets the base type of T\n"
    "  -t, --threads N   threads (default: all CPUs)\n"
    "  --imatrix FILE    importance matrix from `lowbit imatrix`: weighs each column's rounding\n"
    "                    error by its mean squared activation\n"
    "  --hessian FILE    full input covariances from `lowbit imatrix --hessian`: lbq2/3/4 and\n"
    "                    Q2_K..Q6_K tensors are rounded with GPTQ/LDLQ error feedback\n"
    "  --bpw B           choose a type per tensor (lbq2 lbqv lbq3 lbq4 q4_K q5_K q6_K q8_0) so that the whole\n"
    "                    file has at most B bits per weight, by measured error (use with --imatrix)\n"
    "  --max-lbqv F      with --bpw: at most the fraction F (0..1) of the multiplied weights in lbqv, the\n"
    "                    slowest type to decode; the rest of its tensors become lbq2 (same size), least\n"
    "                    damage first: a faster file for a little quality (default 1: no cap)\n"
    "  --calib FILE      with --bpw: measure each tensor's sensitivity as the KL divergence on\n"
    "                    FILE (calibration text, never the test text) when it alone is 2-bit\n"
    "  --sens FILE       with --bpw: read the sensitivities from FILE if it exists, otherwise measure\n"
    "                    them (--calib) and save them there (lines \"tensor KL\")\n"
    "  --tensor-type P=T a tensor whose name contains P gets type T (repeatable; first match wins)\n"
    "  --json            print the report as one JSON object on stdout\n"
    "  -q, --quiet       print only the totals\n";

static void on_progress(float frac, void *user) { lb_progress_update(user, frac); }

static void shape(const lb_quantize_tensor *t, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%lld", (long long)t->ne[0]);
    for (uint32_t d = 1; d < t->n_dims && n > 0 && (size_t)n < cap; d++)
        n += snprintf(buf + n, cap - (size_t)n, " x %lld", (long long)t->ne[d]);
}

static const char *tname(uint32_t t)
{
    const lb_type_layout *l = lb_type_layout_of(t);
    return l && l->name ? l->name : "?";
}

/* True when the source holds quantized tensors: requantizing compounds the error. */
/* "q4_0 (57 q4_0, 1 q6_K)" or "mix (38 lbqv, 11 lbq3, ...)": the types the
 * tensors really got, since a base name alone misreports a --bpw plan.
 * Tensors left in F32 (norms) are not counted: every file has them. */
static void type_census(const lb_quantize_report *rep, const char *base, char *buf, size_t cap)
{
    uint32_t types[64];
    int counts[64], n = 0;
    for (int64_t i = 0; i < rep->n_tensors; i++) {
        uint32_t t = rep->tensors[i].type;
        if (t == LB_TYPE_F32)
            continue;
        int k = 0;
        while (k < n && types[k] != t)
            k++;
        if (k == n) {
            if (n == 64)
                continue;
            types[n] = t;
            counts[n++] = 0;
        }
        counts[k]++;
    }
    if (n <= 1) {
        snprintf(buf, cap, "%s", base);
        return;
    }
    size_t used = (size_t)snprintf(buf, cap, "%s (", base);
    for (int k = 0; k < n && used < cap; k++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%d %s", k ? ", " : "", counts[k], tname(types[k]));
    if (used < cap)
        snprintf(buf + used, cap - used, ")");
}

static bool source_is_quantized(const char *path)
{
    lb_gguf *g = NULL;
    bool q = false;
    if (lb_gguf_open_file(path, true, &g, NULL) != LB_OK)
        return false; /* the quantizer reports the error */
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        uint32_t t = lb_gguf_tensor_at(g, i)->type;
        q |= t != LB_TYPE_F32 && t != LB_TYPE_F16 && t != LB_TYPE_BF16;
    }
    lb_gguf_free(g);
    return q;
}

int lb_cli_quantize(int argc, char **argv)
{
    const char *cmd = "quantize", *in = NULL, *out = NULL, *imatrix = NULL, *hessian = NULL;
    lb_quantize_params qp = lb_quantize_default_params();
    bool json = false, quiet = false;
    long threads = 0;
    enum { MAX_OVR = 1024 };             /* per-layer rules for a large model stay within this */
    static char ovr_pat[MAX_OVR][96];    /* [MAX_OVR] --tensor-type patterns */
    static lb_quantize_override ovr[MAX_OVR];
    int n_ovr = 0;
    double bpw = 0, max_lbqv = 1;
    const char *calib = NULL, *sens_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
#define VAL() do { if (!(v = lb_cli_value(cmd, argc, argv, &i))) return 2; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 0; }
        else if (!strcmp(a, "--type")) { VAL(); qp.type = v; }
        else if (!strcmp(a, "--pure")) qp.pure = true;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 256, &threads)) return 2; }
        else if (!strcmp(a, "--imatrix")) { VAL(); imatrix = v; }
        else if (!strcmp(a, "--hessian")) { VAL(); hessian = v; }
        else if (!strcmp(a, "--calib")) { VAL(); calib = v; }
        else if (!strcmp(a, "--sens")) { VAL(); sens_path = v; }
        else if (!strcmp(a, "--bpw")) { VAL(); char *end; bpw = strtod(v, &end); if (*end || !(bpw > 0)) { fprintf(stderr, "lowbit quantize: --bpw wants a positive number, got '%s'\n", v); return 2; } }
        else if (!strcmp(a, "--max-lbqv")) { VAL(); char *end; max_lbqv = strtod(v, &end); if (*end || !(max_lbqv >= 0 && max_lbqv <= 1)) { fprintf(stderr, "lowbit quantize: --max-lbqv wants a fraction from 0 to 1, got '%s'\n", v); return 2; } }
        else if (!strcmp(a, "--tensor-type")) {
            VAL();
            const char *eq = strrchr(v, '=');
            int t = eq ? lb_type_from_name(eq + 1) : -1;
            if (!eq || eq == v || t < 0) {
                fprintf(stderr, "lowbit quantize: --tensor-type wants PATTERN=TYPE with a known type, got '%s'\n", v);
                return 2;
            }
            if (n_ovr >= MAX_OVR || eq - v >= (ptrdiff_t)sizeof ovr_pat[0]) {
                fprintf(stderr, "lowbit quantize: --tensor-type '%s': at most %d rules of at most %zu characters\n", v,
                        MAX_OVR, sizeof ovr_pat[0] - 1);
                return 2;
            }
            snprintf(ovr_pat[n_ovr], sizeof ovr_pat[n_ovr], "%.*s", (int)(eq - v), v);
            ovr[n_ovr] = (lb_quantize_override){ovr_pat[n_ovr], (uint32_t)t};
            n_ovr++;
        }
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "lowbit quantize: unknown option '%s' (see --help)\n", a); return 2; }
        else if (!in) in = a;
        else if (!out) out = a;
        else { fprintf(stderr, "lowbit quantize: unexpected argument '%s' (see --help)\n", a); return 2; }
#undef VAL
    }
    if (!in || !out) {
        fprintf(stderr, "lowbit quantize: IN.gguf and OUT.gguf are required\n\n%s", help);
        return 2;
    }
    if (max_lbqv < 1 && !(bpw > 0)) {
        fprintf(stderr, "lowbit quantize: --max-lbqv caps the --bpw plan; give --bpw too\n");
        return 2;
    }
    if (!strcmp(in, out)) {
        fprintf(stderr, "lowbit quantize: IN and OUT are the same file\n");
        return 2;
    }
    if (source_is_quantized(in))
        fprintf(stderr, "lowbit quantize: warning: %s is already quantized; requantizing adds the errors of both "
                        "roundings; start from the F16/F32 file if you have it\n", in);
    qp.n_threads = (int)threads;
    qp.overrides = ovr;
    qp.n_overrides = n_ovr;
    lb_imatrix *im = NULL;
    if (imatrix) {
        lb_err ierr = {0};
        lb_status ist = lb_imatrix_load(imatrix, &im, &ierr);
        if (ist) {
            fprintf(stderr, "lowbit quantize: %s (%s)\n", ierr.msg, lb_status_str(ist));
            return 1;
        }
        lb_imatrix_meta meta = lb_imatrix_get_meta(im);
        if (!quiet && !json)
            fprintf(stderr, "lowbit quantize: importance matrix %s: %lld tensors, %lld chunks, %lld tokens of %s\n",
                    imatrix, (long long)lb_imatrix_n_entries(im), (long long)meta.chunks, (long long)meta.tokens,
                    meta.dataset[0] ? meta.dataset : "?");
        qp.imatrix = im;
    }
    lb_hessian *hs = NULL;
    if (hessian) {
        lb_err herr = {0};
        lb_status hst = lb_hessian_load_err(hessian, &hs, &herr);
        if (hst) {
            fprintf(stderr, "lowbit quantize: %s (%s)\n", herr.msg, lb_status_str(hst));
            lb_imatrix_free(im);
            lb_hessian_free(hs);
            return 1;
        }
        lb_hessian_meta meta = lb_hessian_get_meta(hs);
        if (!quiet && !json)
            fprintf(stderr, "lowbit quantize: Hessians %s: %lld tensors, %lld tokens of %s\n", hessian,
                    (long long)lb_hessian_n_entries(hs), (long long)meta.tokens, meta.dataset[0] ? meta.dataset : "?");
        qp.hessian = hs;
    }

    lb_mix_plan plan = {0};
    if (bpw > 0) {
        lb_err merr = {0};
        lb_mix_sensitivity sens = {NULL, NULL};
        lb__cli_sens *sc = NULL;
        lb__cli_sens_table *table = NULL;
        lb__cli_sens_rec rec = {NULL, NULL};
        if (sens_path && lb__cli_sens_table_load(sens_path, &table) == 0) {
            sens = (lb_mix_sensitivity){lb__cli_sens_table_get, table};
        } else if (calib) {
            if (lb__cli_sens_new(in, calib, im, (int)threads, !quiet && !json, &sc) != 0) {
                lb_imatrix_free(im);
                lb_hessian_free(hs);
                return 1;
            }
            lb__cli_sens_set_hessian(sc, hs);
            rec = (lb__cli_sens_rec){sc, sens_path ? fopen(sens_path, "w") : NULL};
            sens = (lb_mix_sensitivity){lb__cli_sens_measure_rec, &rec};
        } else if (sens_path) {
            fprintf(stderr, "lowbit quantize: cannot read %s (give --calib TEXT to measure it)\n", sens_path);
            lb_imatrix_free(im);
            lb_hessian_free(hs);
            return 1;
        }
        lb_status mst = lb_mix_plan_bpw_h(in, bpw, im, hs, (int)threads, &sens, &plan, &merr);
        if (rec.f)
            fclose(rec.f);
        lb__cli_sens_free(sc);
        lb__cli_sens_table_free(table);
        if (mst) {
            fprintf(stderr, "lowbit quantize: %s (%s)\n", merr.msg, lb_status_str(mst));
            lb_imatrix_free(im);
            lb_hessian_free(hs);
            return 1;
        }
        if (max_lbqv < 1) {
            int nc = lb_mix_plan_cap_lbqv(&plan, max_lbqv);
            if (!quiet && !json)
                fprintf(stderr, "lowbit quantize: --max-lbqv %.3f: %d tensors lbqv -> lbq2\n", max_lbqv, nc);
        }
        /* --tensor-type entries first: they win over the plan */
        static lb_quantize_override all[MAX_OVR + 4096];
        int n_all = 0;
        for (int k = 0; k < n_ovr; k++)
            all[n_all++] = ovr[k];
        bool own = false;
        for (int k = 0; k < plan.n && n_all < (int)(sizeof all / sizeof all[0]); k++) {
            all[n_all++] = plan.ovr[k];
            own |= plan.choices[k].type == LB_TYPE_LBQ2 || plan.choices[k].type == LB_TYPE_LBQ3 ||
                   plan.choices[k].type == LB_TYPE_LBQ4 || plan.choices[k].type == LB_TYPE_LBQV;
        }
        qp.overrides = all;
        qp.n_overrides = n_all;
        qp.type = own ? "lbq2" : "q4_K_M";
        if (!quiet && !json)
            fprintf(stderr, "lowbit quantize: --bpw %.3f: planned %.3f bits per weight\n", bpw, plan.predicted_bpw);
    }
    lb_progress bar;
    lb_progress_params pp = lb_progress_default_params();
    pp.label = "quantizing";
    lb_progress_start(&bar, &pp);
    qp.progress = on_progress;
    qp.progress_user = &bar;
    lb_quantize_report rep;
    lb_err err = {0};
    lb_status st = lb_quantize_file(in, out, &qp, &rep, &err);
    lb_progress_finish(&bar, false);
    lb_imatrix_free(im);
    lb_hessian_free(hs);
    lb_mix_plan_free(&plan);
    if (st) {
        fprintf(stderr, "lowbit quantize: %s (%s)\n", err.msg, lb_status_str(st));
        return 1;
    }
    for (int64_t i = 0; i < rep.n_tensors; i++)
        if (rep.tensors[i].imatrix_missing)
            fprintf(stderr, "lowbit quantize: warning: the importance matrix has no entry for %s; it was "
                            "quantized with x^2 weighting alone\n", rep.tensors[i].name);
    if (json) {
        printf("{\"input\": ");
        lb_cli_json_str(stdout, in, strlen(in));
        printf(", \"output\": ");
        lb_cli_json_str(stdout, out, strlen(out));
        printf(", \"type\": \"%s\", \"file_type\": %u, \"parameters\": %llu, \"bytes\": %llu, \"bpw\": %.4f, "
               "\"seconds\": %.3f, \"fallbacks\": %d, \"tensors\": [",
               qp.type, rep.file_type, (unsigned long long)rep.n_params, (unsigned long long)rep.file_bytes, rep.bpw,
               rep.seconds, rep.n_fallback);
        for (int64_t i = 0; i < rep.n_tensors; i++) {
            const lb_quantize_tensor *t = &rep.tensors[i];
            printf("%s{\"name\": ", i ? ", " : "");
            lb_cli_json_str(stdout, t->name, strlen(t->name));
            printf(", \"ne\": [%lld, %lld, %lld, %lld], \"type\": \"%s\", \"bytes\": %llu, \"bpw\": %.4f, "
                   "\"rel_rms\": %.6f, \"fallback\": %s, \"imatrix\": %s}",
                   (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], tname(t->type),
                   (unsigned long long)t->bytes, t->bpw, t->rel_rms, t->fallback ? "true" : "false",
                   t->imatrix_used ? "true" : "false");
        }
        printf("]}\n");
    } else {
        if (!quiet) {
            printf("%-32s %-18s %-6s %-6s %12s %8s %10s\n", "tensor", "shape", "from", "type", "bytes", "bpw",
                   "rel.rms");
            for (int64_t i = 0; i < rep.n_tensors; i++) {
                const lb_quantize_tensor *t = &rep.tensors[i];
                char sh[64];
                shape(t, sh, sizeof sh);
                printf("%-32s %-18s %-6s %-6s %12llu %8.3f %10.6f%s%s%s\n", t->name, sh, tname(t->src_type),
                       tname(t->type), (unsigned long long)t->bytes, t->bpw, t->rel_rms,
                       t->fallback ? "  (fallback: rows of " : "", t->fallback ? tname(t->wanted) : "",
                       t->fallback ? " do not fit)" : "");
            }
        }
        char census[512];
        type_census(&rep, bpw > 0 ? "mix" : qp.type, census, sizeof census);
        printf("%s: %s, %llu parameters, %.2f MiB (from %.2f MiB), %.3f bits per weight, %.1f s%s\n", out, census,
               (unsigned long long)rep.n_params, rep.file_bytes / 1048576.0, rep.src_bytes / 1048576.0, rep.bpw,
               rep.seconds, rep.n_fallback ? ", some tensors fell back to another type (see above)" : "");
    }
    lb_quantize_report_free(&rep);
    return 0;
}
