/* `lowbit imatrix`: runs a model over calibration text in chunks (the
 * perplexity protocol) with the lb_matmul observer installed, and writes the
 * per-column mean square of every weight's inputs as an importance matrix
 * for `lowbit quantize --imatrix`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/logits.h"
#include "base/progress.h"
#include "cli.h"
#include "format/gguf.h"
#include "kernels/matmul.h"
#include "quant/hessian.h"
#include "quant/imatrix.h"

static const char *help =
    "usage: lowbit imatrix -m MODEL -f TEXT -o FILE [options]\n"
    "\n"
    "  -m, --model FILE     GGUF model (best the F16/F32 file you will quantize)\n"
    "  -f, --file FILE      calibration text\n"
    "  -o, --output FILE    importance matrix to write (GGUF)\n"
    "      --hessian FILE   also write the full input covariance E[x x^T] of every\n"
    "                       weight (GGUF, [cols][cols] F32 each) for quantize --hessian\n"
    "  -c, --ctx-size N     tokens per chunk (default 512)\n"
    "      --chunks N       use only the first N chunks (default: all)\n"
    "  -t, --threads N      threads (default: all CPUs)\n";

/* Both collectors see every product when a Hessian is asked for. */
typedef struct both {
    lb_imatrix *im;
    lb_hessian *h;
} both;

static void observe_both(void *user, const void *weight_data, int64_t rows, int64_t cols, const float *x, int64_t n)
{
    both *b = user;
    lb_imatrix_observe(b->im, weight_data, rows, cols, x, n);
    lb_hessian_observe(b->h, weight_data, rows, cols, x, n);
}

/* -log p(target) from one row of logits, in double: a sanity check that the
 * model ran as it should on the calibration text. */
static double nll(const float *logits, int n_vocab, int target)
{
    return lb_log_sum_exp(logits, n_vocab, NULL) - logits[target];
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int lb_cli_imatrix(int argc, char **argv)
{
    const char *cmd = "imatrix", *model = NULL, *file = NULL, *output = NULL, *hess_path = NULL;
    long n_ctx = 512, max_chunks = -1, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
#define VAL() do { if (!(v = lb_cli_value(cmd, argc, argv, &i))) return 2; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { VAL(); file = v; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { VAL(); output = v; }
        else if (!strcmp(a, "--hessian")) { VAL(); hess_path = v; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { VAL(); if (!lb_cli_int(cmd, a, v, 8, 1 << 20, &n_ctx)) return 2; }
        else if (!strcmp(a, "--chunks")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 1L << 30, &max_chunks)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 256, &threads)) return 2; }
        else { fprintf(stderr, "lowbit imatrix: unknown option '%s' (see --help)\n", a); return 2; }
#undef VAL
    }
    if (!model || !file || !output) {
        fprintf(stderr, "lowbit imatrix: -m MODEL, -f TEXT and -o FILE are required\n\n%s", help);
        return 2;
    }
    size_t len;
    char *text = lb_cli_read_file(cmd, file, &len);
    if (!text)
        return 1;

    /* The model is loaded over the bytes of our own view of the file, so the
     * weight pointers lb_matmul reports are the tensor table's pointers. */
    int rc = 1;
    lb_gguf *g = NULL;
    lb_model *m = NULL;
    lb_imatrix *im = NULL;
    lb_hessian *hs = NULL;
    lb_session *s = NULL;
    lb_token *toks = NULL;
    float *logits = NULL;
    lb_err err = {0};
    lb_status st = lb_gguf_open_file(model, true, &g, &err);
    if (st) {
        fprintf(stderr, "lowbit imatrix: %s (%s)\n", err.msg, lb_status_str(st));
        goto out;
    }
    lb_model_params mp = lb_model_default_params();
    if ((st = lb_model_load_memory(lb_gguf_bytes(g), lb_gguf_file_size(g), &mp, &m))) {
        fprintf(stderr, "lowbit imatrix: cannot load %s: %s (%s)\n", model, lb_last_load_error(), lb_status_str(st));
        goto out;
    }
    if (!(im = lb_imatrix_new()) || (st = lb_imatrix_track_gguf(im, g, &err))) {
        fprintf(stderr, "lowbit imatrix: %s\n", im ? err.msg : "out of memory");
        goto out;
    }
    if (hess_path && (!(hs = lb_hessian_new()) || (st = lb_hessian_track_gguf(hs, g, 0, &err)))) {
        fprintf(stderr, "lowbit imatrix: %s\n", hs ? err.msg : "out of memory");
        goto out;
    }
    both obs = {im, hs};
    lb_model_info info;
    lb_model_get_info(m, &info);
    size_t cap = len + 16, n_tok = 0;
    toks = malloc(cap * sizeof *toks);
    if (!toks || lb_tokenize(m, text, len, true, false, toks, cap, &n_tok)) {
        fprintf(stderr, "lowbit imatrix: cannot tokenize %s\n", file);
        goto out;
    }
    long n_chunks = (long)(n_tok / (size_t)n_ctx);
    if (n_chunks == 0) {
        fprintf(stderr, "lowbit imatrix: %s has %zu tokens; at least %ld (one chunk of -c %ld) are needed\n", file,
                n_tok, n_ctx, n_ctx);
        goto out;
    }
    if (max_chunks > 0 && max_chunks < n_chunks)
        n_chunks = max_chunks;
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = (int)n_ctx;
    sp.n_batch = (int)n_ctx;
    sp.n_threads = (int)threads;
    if ((st = lb_session_new(m, &sp, &s))) {
        fprintf(stderr, "lowbit imatrix: cannot create a session: %s: %s\n", lb_status_str(st), lb_model_last_error(m));
        goto out;
    }
    logits = malloc((size_t)n_ctx * (size_t)info.n_vocab * sizeof *logits); /* [n_ctx][n_vocab] */
    if (!logits) {
        fprintf(stderr, "lowbit imatrix: out of memory for logits\n");
        goto out;
    }
    fprintf(stderr, "imatrix: %zu tokens, %ld chunks of %ld, %lld weight tensors tracked\n", n_tok, n_chunks, n_ctx,
            (long long)lb_imatrix_n_entries(im));

    lb_progress bar;
    lb_progress_params pp = lb_progress_default_params();
    pp.label = "imatrix";
    pp.total = (double)n_chunks;
    pp.unit = "chunks";
    lb_progress_start(&bar, &pp);
    double t0 = lb_time_ms(), sum_nll = 0;
    long count = 0;
    const int first = (int)n_ctx / 2;
    if (hs)
        lb_matmul_set_observer(observe_both, &obs);
    else
        lb_matmul_set_observer(lb_imatrix_observe, im);
    for (long c = 0; c < n_chunks; c++) {
        lb_token *chunk = toks + c * n_ctx;
        lb_token saved = chunk[0];
        if (info.add_bos && info.bos >= 0)
            chunk[0] = info.bos;
        lb_session_reset(s);
        st = lb_session_eval(s, chunk, (int)n_ctx, logits, false);
        chunk[0] = saved;
        if (st) {
            lb_matmul_set_observer(NULL, NULL);
            lb_progress_finish(&bar, false);
            fprintf(stderr, "lowbit imatrix: chunk %ld: %s: %s\n", c, lb_status_str(st), lb_session_last_error(s));
            goto out;
        }
        for (int j = first; j < (int)n_ctx - 1; j++, count++)
            sum_nll += nll(logits + (size_t)j * info.n_vocab, info.n_vocab, chunk[j + 1]);
        lb_progress_note(&bar, "ppl %.4f", exp(sum_nll / count));
        lb_progress_update(&bar, (double)(c + 1));
        if (!bar.tty && ((c + 1) % 10 == 0 || c + 1 == n_chunks))
            fprintf(stderr, "[%ld]%.4f%s", c + 1, exp(sum_nll / count), c + 1 == n_chunks ? "\n" : ",");
    }
    lb_matmul_set_observer(NULL, NULL);
    lb_progress_finish(&bar, true);
    if ((st = lb_imatrix_check(im, &err))) {
        fprintf(stderr, "lowbit imatrix: %s\n", err.msg);
        goto out;
    }
    lb_imatrix_meta meta = {n_chunks, (int64_t)n_chunks * n_ctx, base_name(file)};
    if ((st = lb_imatrix_write(im, output, &meta, &err))) {
        fprintf(stderr, "lowbit imatrix: %s (%s)\n", err.msg, lb_status_str(st));
        goto out;
    }
    if (hs) {
        lb_hessian_meta hm = {n_chunks, (int64_t)n_chunks * n_ctx, base_name(file)};
        if ((st = lb_hessian_write(hs, hess_path, &hm, &err))) {
            fprintf(stderr, "lowbit imatrix: %s (%s)\n", err.msg, lb_status_str(st));
            goto out;
        }
        printf("%s: Hessians of %lld tensors\n", hess_path, (long long)lb_hessian_n_entries(hs));
    }
    int64_t n_seen = 0;
    for (int64_t i = 0; i < lb_imatrix_n_entries(im); i++) {
        int64_t rows = 0;
        const char *name = lb_imatrix_name_at(im, i, &rows);
        n_seen += rows > 0;
        if (!rows)
            fprintf(stderr, "lowbit imatrix: %s was never multiplied (a lookup table?); it has no entry\n", name);
    }
    printf("%s: %lld tensors from %ld chunks of %ld (%lld tokens of %s), PPL of the second halves %.4f, %.1f s\n",
           output, (long long)n_seen, n_chunks, n_ctx, (long long)meta.tokens, meta.dataset, exp(sum_nll / count),
           (lb_time_ms() - t0) / 1000.0);
    rc = 0;
out:
    free(logits);
    lb_session_free(s);
    lb_imatrix_free(im);
    lb_hessian_free(hs);
    lb_model_free(m);
    lb_gguf_free(g);
    free(toks);
    free(text);
    return rc;
}
