/* `lowbit plan`: how much context fits in a memory budget for each KV type
 * pair.  Reads only the start of the file (the header), as the browser
 * does before downloading weights. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *help =
    "usage: lowbit plan -m MODEL --memory SIZE [options]\n"
    "\n"
    "  -m, --model FILE   GGUF file (only its header is read)\n"
    "      --memory SIZE  the budget for the whole process: 512MiB, 2GiB, 1.5G, 800M, 64KiB or bytes;\n"
    "                     K/M/G and KiB/MiB/GiB are powers of 1024, KB/MB/GB powers of 1000\n"
    "      --kv-memory SIZE  instead, a budget for the KV cache alone (weights, model, overhead\n"
    "                     and scratch come on top; the batch is then 512 unless -b is given)\n"
    "      --min-ctx N    the context the recommendation must reach (default: the trained context)\n"
    "      --max-ctx N    the largest context considered (default and limit 1048576)\n"
    "  -t, --threads N    threads the session will use (default: all CPUs)\n"
    "  -b, --batch N      batch size the session will use (default: min(context, 512))\n"
    "      --all          list all 25 K/V pairs (default: those with keys at least as precise as values)\n"
    "      --json         one JSON object on stdout\n";

/* Parses a size such as "2GiB", "1.5G", "800M" or "1048576" into bytes. */
static bool parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return false;
    char unit[8] = {0};
    size_t n = strlen(end);
    if (n >= sizeof unit)
        return false;
    for (size_t i = 0; i < n; i++)
        unit[i] = (char)tolower((unsigned char)end[i]);
    static const struct { const char *name; double mult; } units[] = {
        {"", 1}, {"b", 1},
        {"k", 1024.0}, {"kib", 1024.0}, {"kb", 1e3},
        {"m", 1048576.0}, {"mib", 1048576.0}, {"mb", 1e6},
        {"g", 1073741824.0}, {"gib", 1073741824.0}, {"gb", 1e9},
        {"t", 1099511627776.0}, {"tib", 1099511627776.0}, {"tb", 1e12},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].name) == 0) {
            double b = v * units[i].mult;
            if (b >= (double)SIZE_MAX)
                return false;
            *out = (size_t)b;
            return true;
        }
    }
    return false;
}

static void fmt_bytes(char *buf, size_t cap, uint64_t b)
{
    if (b >= (1ull << 30))
        snprintf(buf, cap, "%.2f GiB", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, cap, "%.1f MiB", (double)b / (double)(1ull << 20));
    else
        snprintf(buf, cap, "%.1f KiB", (double)b / 1024.0);
}

/* Reads just enough of the file for the planner, growing the read while it asks for more. */
static int plan_file(const char *path, size_t budget, const lb_plan_params *pp, lb_plan_result *r)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "lowbit plan: cannot open '%s': %s\n", path, strerror(errno));
        return 1;
    }
    long fsz = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        fsz = ftell(f);
    if (fsz < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "lowbit plan: cannot get the size of '%s'\n", path);
        fclose(f);
        return 1;
    }
    size_t size = (size_t)fsz, want = size < (1u << 20) ? size : (1u << 20), have = 0;
    unsigned char *buf = NULL;
    int rc = 1;
    for (;;) {
        unsigned char *nb = realloc(buf, want ? want : 1);
        if (!nb) {
            fprintf(stderr, "lowbit plan: out of memory reading %zu bytes of '%s'\n", want, path);
            break;
        }
        buf = nb;
        if (want > have && fread(buf + have, 1, want - have, f) != want - have) {
            fprintf(stderr, "lowbit plan: cannot read '%s': %s\n", path, ferror(f) ? strerror(errno) : "unexpected end of file");
            break;
        }
        have = want;
        lb_status st = lb_plan_from_gguf(buf, have, budget, pp, r);
        if (st == LB_ERR_RANGE && have < size) {
            want = r->bytes_needed < size ? (size_t)r->bytes_needed : size;
            continue;
        }
        if (st == LB_ERR_RANGE)
            fprintf(stderr, "lowbit plan: '%s': the file (%zu bytes) ends inside its header: %s\n", path, size, r->error);
        else if (st)
            fprintf(stderr, "lowbit plan: '%s': %s (%s)\n", path, r->error, lb_status_str(st));
        else
            rc = 0;
        break;
    }
    free(buf);
    fclose(f);
    return rc;
}

static bool shown(const lb_plan_result *r, int i, bool all)
{
    const lb_plan_entry *e = &r->pairs[i];
    /* The enum runs from most to fewest bits. */
    return all || i == r->recommended || e->kv_k <= e->kv_v;
}

static void print_json(const char *model, size_t budget, const lb_plan_result *r)
{
    printf("{\"file\": ");
    lb_cli_json_str(stdout, model, strlen(model));
    printf(", \"memory_budget\": %zu, \"file_bytes\": %llu, \"weight_bytes\": %llu, \"model_bytes\": %llu, "
           "\"overhead_bytes\": %llu, \"fixed_bytes\": %llu, \"n_ctx_train\": %d, \"n_threads\": %d, "
           "\"min_ctx\": %d, \"max_ctx\": %d, \"pairs\": [",
           budget, (unsigned long long)r->file_bytes, (unsigned long long)r->weight_bytes,
           (unsigned long long)r->model_bytes, (unsigned long long)r->overhead_bytes,
           (unsigned long long)r->fixed_bytes, r->n_ctx_train, r->n_threads, r->min_ctx, r->max_ctx);
    for (int i = 0; i < LB_PLAN_N_PAIRS; i++) {
        const lb_plan_entry *e = &r->pairs[i];
        printf("%s{\"k\": \"%s\", \"v\": \"%s\", \"supported\": %s, \"bytes_per_token\": %llu, \"n_ctx\": %d, "
               "\"kv_bytes\": %llu, \"scratch_bytes\": %llu, \"total_bytes\": %llu}",
               i ? ", " : "", lb_kv_type_name(e->kv_k), lb_kv_type_name(e->kv_v), e->supported ? "true" : "false",
               (unsigned long long)e->bytes_per_token, e->n_ctx, (unsigned long long)e->kv_bytes,
               (unsigned long long)e->scratch_bytes, (unsigned long long)e->total_bytes);
    }
    printf("], \"recommended\": ");
    if (r->recommended < 0)
        printf("null");
    else
        printf("{\"k\": \"%s\", \"v\": \"%s\", \"n_ctx\": %d}", lb_kv_type_name(r->pairs[r->recommended].kv_k),
               lb_kv_type_name(r->pairs[r->recommended].kv_v), r->pairs[r->recommended].n_ctx);
    printf("}\n");
}

static void print_table(const char *model, size_t budget, const lb_plan_result *r, bool all)
{
    char a[32], b[32], c[32], d[32], e_[32];
    fmt_bytes(a, sizeof a, budget);
    fmt_bytes(b, sizeof b, r->file_bytes);
    fmt_bytes(c, sizeof c, r->model_bytes);
    fmt_bytes(d, sizeof d, r->overhead_bytes);
    printf("%s: trained context %d, %d threads, batch %s\n", model, r->n_ctx_train, r->n_threads,
           r->n_batch ? "as given" : "min(context, 512)");
    printf("budget %s = file %s + model %s + overhead %s + KV cache + scratch\n\n", a, b, c, d);
    printf("   K    V    bytes/token  max context      KV cache       scratch         total\n");
    for (int i = 0; i < LB_PLAN_N_PAIRS; i++) {
        const lb_plan_entry *e = &r->pairs[i];
        if (!shown(r, i, all))
            continue;
        printf("%s %-4s %-4s ", i == r->recommended ? "*" : " ", lb_kv_type_name(e->kv_k), lb_kv_type_name(e->kv_v));
        if (!e->supported) {
            printf("  (this model's head size cannot use quantized KV)\n");
            continue;
        }
        fmt_bytes(b, sizeof b, e->kv_bytes);
        fmt_bytes(c, sizeof c, e->scratch_bytes);
        fmt_bytes(d, sizeof d, e->total_bytes);
        if (!e->n_ctx)
            printf("%11llu  %11s\n", (unsigned long long)e->bytes_per_token, "does not fit");
        else
            printf("%11llu  %11d  %12s  %12s  %12s\n", (unsigned long long)e->bytes_per_token, e->n_ctx, b, c, d);
    }
    if (r->recommended < 0) {
        fmt_bytes(e_, sizeof e_, r->fixed_bytes);
        printf("\nnothing fits: the model alone needs about %s\n", e_);
        return;
    }
    const lb_plan_entry *rec = &r->pairs[r->recommended];
    printf("\n* recommended: --kv-k %s --kv-v %s -c %d (%s)\n", lb_kv_type_name(rec->kv_k),
           lb_kv_type_name(rec->kv_v), rec->n_ctx,
           rec->n_ctx >= r->min_ctx ? "the most precise pair reaching the minimum context"
                                    : "no pair reaches the minimum context; this one goes furthest");
    printf("  minimum context %d; bytes/token excludes the F16 window of the newest 128 tokens\n", r->min_ctx);
}

int lb_cli_plan(int argc, char **argv)
{
    const char *cmd = "plan", *model = NULL;
    size_t budget = 0;
    bool have_budget = false, json = false, all = false, kv_only = false;
    lb_plan_params pp = lb_plan_default_params();
    long l;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
#define VAL() do { if (!(v = lb_cli_value(cmd, argc, argv, &i))) return 2; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model = v; }
        else if (!strcmp(a, "--memory") || !strcmp(a, "--kv-memory")) {
            VAL();
            if (!parse_size(v, &budget) || budget == 0) {
                fprintf(stderr, "lowbit plan: bad value for %s: '%s' (expected a size such as 512MiB, 2GiB, 1.5G)\n", a, v);
                return 2;
            }
            have_budget = true;
            kv_only = a[2] == 'k';
        }
        else if (!strcmp(a, "--min-ctx")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, LB_PLAN_MAX_CTX, &l)) return 2; pp.min_ctx = (int)l; }
        else if (!strcmp(a, "--max-ctx")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, LB_PLAN_MAX_CTX, &l)) return 2; pp.max_ctx = (int)l; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 256, &l)) return 2; pp.n_threads = (int)l; }
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 1 << 16, &l)) return 2; pp.n_batch = (int)l; }
        else if (!strcmp(a, "--all")) all = true;
        else if (!strcmp(a, "--json")) json = true;
        else { fprintf(stderr, "lowbit plan: unknown option '%s' (see --help)\n", a); return 2; }
#undef VAL
    }
    if (!model || !have_budget) {
        fprintf(stderr, "lowbit plan: %s is required\n\n%s", !model ? "-m MODEL" : "--memory SIZE", help);
        return 2;
    }
    lb_plan_result r;
    int rc;
    if (kv_only) {
        /* With a fixed batch the scratch is the same for every context, so
         * the KV cache gets exactly what is left of fixed + scratch + SIZE:
         * plan once without a limit to learn those, then with it. */
        if (!pp.n_batch)
            pp.n_batch = 512;
        if ((rc = plan_file(model, (size_t)1 << 50, &pp, &r)))
            return rc;
        const uint64_t on_top = r.fixed_bytes + r.pairs[0].scratch_bytes;
        if (!json)
            printf("KV cache budget %.1f MiB (the whole process: %.1f MiB)\n", (double)budget / 1048576.0,
                   (double)(budget + on_top) / 1048576.0);
        budget += (size_t)on_top;
    }
    rc = plan_file(model, budget, &pp, &r);
    if (rc)
        return rc;
    if (json)
        print_json(model, budget, &r);
    else
        print_table(model, budget, &r, all);
    return 0;
}
