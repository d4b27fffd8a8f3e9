/* Argument parsing, model loading and file reading shared by the subcommands. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/progress.h"

bool lb_cli_int(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "lowbit %s: bad value for %s: '%s' (expected an integer in %ld..%ld)\n", cmd, flag, s, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool lb_cli_float(const char *cmd, const char *flag, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "lowbit %s: bad value for %s: '%s' (expected a number in %g..%g)\n", cmd, flag, s, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

const char *lb_cli_value(const char *cmd, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "lowbit %s: %s needs a value (see lowbit %s --help)\n", cmd, argv[*i], cmd);
        return NULL;
    }
    return argv[++*i];
}

int lb_cli_kv_flag(const char *cmd, int argc, char **argv, int *i, lb_session_params *sp)
{
    const char *a = argv[*i];
    const bool kv = !strcmp(a, "--kv-k") || !strcmp(a, "--kv-v");
    if (!kv && strcmp(a, "--window") && strcmp(a, "--sinks"))
        return 0;
    const char *v = lb_cli_value(cmd, argc, argv, i);
    if (!v)
        return -1;
    if (kv) {
        if (lb_kv_type_parse(v, a[5] == 'k' ? &sp->kv_type_k : &sp->kv_type_v)) {
            fprintf(stderr, "lowbit %s: bad value for %s: '%s' (one of f16, q8, q4, q3, q2)\n", cmd, a, v);
            return -1;
        }
        return 1;
    }
    long l;
    if (!lb_cli_int(cmd, a, v, a[2] == 'w' ? 1 : 0, 1 << 23, &l))
        return -1;
    *(a[2] == 'w' ? &sp->n_window : &sp->n_sinks) = (int)l;
    return 1;
}

static void on_progress(float frac, void *user) { lb_progress_update(user, frac); }

lb_model *lb_cli_load(const char *cmd, const char *path, double *load_ms)
{
    lb_progress bar;
    lb_progress_params pp = lb_progress_default_params();
    pp.label = "loading";
    lb_progress_start(&bar, &pp);
    lb_model_params mp = lb_model_default_params();
    if (bar.tty) {
        mp.progress = on_progress;
        mp.progress_user = &bar;
    }
    double t0 = lb_time_ms();
    lb_model *m = NULL;
    lb_status st = lb_model_load(path, &mp, &m);
    lb_progress_finish(&bar, false);
    if (st) {
        fprintf(stderr, "lowbit %s: cannot load model: %s (%s)\n", cmd, lb_last_load_error(), lb_status_str(st));
        return NULL;
    }
    if (load_ms)
        *load_ms = lb_time_ms() - t0;
    return m;
}

char *lb_cli_read_file(const char *cmd, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "lowbit %s: cannot open %s: %s\n", cmd, path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "lowbit %s: cannot read %s\n", cmd, path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

void lb_cli_json_str(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
    }
    fputc('"', f);
}
