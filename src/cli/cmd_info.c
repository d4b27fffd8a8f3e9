/* `lowbit info`: what is in a GGUF file — metadata, tensors, types, sizes and
 * bits per weight.  Reads the file through the GGUF reader only, so it also
 * describes files lowbit cannot run. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "format/gguf.h"

static const char *help =
    "usage: lowbit info -m MODEL [--json] [--no-tensors]\n"
    "\n"
    "  -m, --model FILE   GGUF file\n"
    "      --json         one JSON object on stdout\n"
    "      --no-tensors   leave out the per-tensor table\n";

static int64_t n_elems(const lb_gguf_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }

int lb_cli_info(int argc, char **argv)
{
    const char *cmd = "info", *model = NULL;
    bool json = false, tensors = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(model = lb_cli_value(cmd, argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--no-tensors")) tensors = false;
        else { fprintf(stderr, "lowbit info: unknown option '%s' (see --help)\n", a); return 2; }
    }
    if (!model) {
        fprintf(stderr, "lowbit info: -m MODEL is required\n\n%s", help);
        return 2;
    }
    lb_err err = {0};
    lb_gguf *g = NULL;
    lb_status st = lb_gguf_open_file(model, true, &g, &err);
    if (st) {
        fprintf(stderr, "lowbit info: %s (%s)\n", err.msg, lb_status_str(st));
        return 1;
    }
    int64_t nt = lb_gguf_n_tensors(g), nkv = lb_gguf_n_kv(g), params = 0;
    uint64_t bytes = 0, per_type_n[LB_TYPE_COUNT] = {0}, per_type_bytes[LB_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < nt; i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        params += n_elems(t);
        bytes += t->nbytes;
        per_type_n[t->type] += (uint64_t)n_elems(t);
        per_type_bytes[t->type] += t->nbytes;
    }
    size_t fsize = lb_gguf_file_size(g);
    double bpw = params ? bytes * 8.0 / (double)params : 0, fbpw = params ? fsize * 8.0 / (double)params : 0;
    char val[512];
    if (json) {
        printf("{\"file\": ");
        lb_cli_json_str(stdout, model, strlen(model));
        printf(", \"version\": %u, \"file_bytes\": %zu, \"tensor_bytes\": %llu, \"parameters\": %lld, "
               "\"bits_per_weight\": %.4f, \"file_bits_per_weight\": %.4f, \"metadata\": {",
               lb_gguf_version(g), fsize, (unsigned long long)bytes, (long long)params, bpw, fbpw);
        for (int64_t i = 0; i < nkv; i++) {
            lb_gguf_str k = lb_gguf_kv_key(g, i);
            lb_gguf_kv_format(g, i, val, sizeof val);
            printf("%s", i ? ", " : "");
            lb_cli_json_str(stdout, k.ptr, k.len);
            printf(": ");
            lb_cli_json_str(stdout, val, strlen(val));
        }
        printf("}, \"types\": {");
        int first = 1;
        for (int t = 0; t < LB_TYPE_COUNT; t++)
            if (per_type_n[t]) {
                printf("%s\"%s\": {\"parameters\": %llu, \"bytes\": %llu}", first ? "" : ", ", lb_type_layout_of(t)->name,
                       (unsigned long long)per_type_n[t], (unsigned long long)per_type_bytes[t]);
                first = 0;
            }
        printf("}");
        if (tensors) {
            printf(", \"tensors\": [");
            for (int64_t i = 0; i < nt; i++) {
                const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
                printf("%s{\"name\": ", i ? ", " : "");
                lb_cli_json_str(stdout, t->name.ptr, t->name.len);
                printf(", \"type\": \"%s\", \"shape\": [", lb_type_layout_of(t->type)->name);
                for (uint32_t d = 0; d < t->n_dims; d++)
                    printf("%s%lld", d ? ", " : "", (long long)t->ne[d]);
                printf("], \"offset\": %llu, \"bytes\": %llu}", (unsigned long long)t->offset,
                       (unsigned long long)t->nbytes);
            }
            printf("]");
        }
        printf("}\n");
    } else {
        printf("file:        %s\n", model);
        printf("gguf:        version %u, %lld metadata keys, %lld tensors, alignment %llu\n", lb_gguf_version(g),
               (long long)nkv, (long long)nt, (unsigned long long)lb_gguf_alignment(g));
        printf("size:        %zu bytes (%.2f MiB); tensor data %llu bytes\n", fsize, fsize / 1048576.0,
               (unsigned long long)bytes);
        printf("parameters:  %lld\n", (long long)params);
        printf("bits/weight: %.3f (tensor data), %.3f (whole file)\n", bpw, fbpw);
        printf("\nmetadata:\n");
        for (int64_t i = 0; i < nkv; i++) {
            lb_gguf_str k = lb_gguf_kv_key(g, i);
            lb_gguf_kv_format(g, i, val, sizeof val);
            printf("  %-44.*s %s\n", (int)k.len, k.ptr, val);
        }
        printf("\ntypes:\n");
        for (int t = 0; t < LB_TYPE_COUNT; t++)
            if (per_type_n[t])
                printf("  %-8s %12llu parameters %12llu bytes  %6.3f bits/weight\n", lb_type_layout_of(t)->name,
                       (unsigned long long)per_type_n[t], (unsigned long long)per_type_bytes[t],
                       per_type_bytes[t] * 8.0 / (double)per_type_n[t]);
        if (tensors) {
            printf("\ntensors:\n");
            for (int64_t i = 0; i < nt; i++) {
                const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
                char shape[96] = "";
                size_t o = 0;
                for (uint32_t d = 0; d < t->n_dims && o < sizeof shape; d++)
                    o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld", d ? " x " : "", (long long)t->ne[d]);
                printf("  %-36.*s %-7s %-20s %10llu bytes\n", (int)t->name.len, t->name.ptr,
                       lb_type_layout_of(t->type)->name, shape, (unsigned long long)t->nbytes);
            }
        }
    }
    lb_gguf_free(g);
    return 0;
}
