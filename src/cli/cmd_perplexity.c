/* `lowbit perplexity`: llama.cpp's default perplexity protocol, so numbers
 * compare: BOS + whole text tokenized once; consecutive chunks of n_ctx
 * tokens (remainder dropped), each starting from an empty cache with its first
 * token replaced by BOS (when the model adds BOS); only the second half of
 * each chunk is scored (positions n_ctx/2+1 .. n_ctx-1).
 *
 * With --window W [--sinks S] the same protocol streams each chunk through
 * a sliding-window cache, so -c may exceed both the cache and the model's
 * trained context (e.g. -c 16384 --window 1024 --sinks 4 --chunks 1 scores
 * positions 8193..16383 of a 16K stretch); the scored half is then
 * evaluated 512 tokens at a time so the logits stay small. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/logits.h"
#include "base/progress.h"
#include "cli.h"

static const char *help =
    "usage: lowbit perplexity -m MODEL -f TEXT [options]\n"
    "\n"
    "  -m, --model FILE     GGUF model\n"
    "  -f, --file FILE      text to score\n"
    "  -c, --ctx-size N     tokens per chunk (default 512)\n"
    "      --chunks N       score only the first N chunks (default: all)\n"
    "  -t, --threads N      threads (default: all CPUs)\n"
    LB_CLI_KV_HELP
    "      --json           print one JSON object on stdout (ppl, tokens, chunks, ...)\n";

/* -log p(target) from one row of logits, in double. */
static double nll(const float *logits, int n_vocab, int target)
{
    return lb_log_sum_exp(logits, n_vocab, NULL) - logits[target];
}

int lb_cli_perplexity(int argc, char **argv)
{
    const char *cmd = "perplexity", *model = NULL, *file = NULL;
    long n_ctx = 512, max_chunks = -1, threads = 0;
    bool json = false;
    lb_session_params sp = lb_session_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int kvf;
#define VAL() do { if (!(v = lb_cli_value(cmd, argc, argv, &i))) return 2; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { VAL(); file = v; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { VAL(); if (!lb_cli_int(cmd, a, v, 8, 1 << 20, &n_ctx)) return 2; }
        else if (!strcmp(a, "--chunks")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 1L << 30, &max_chunks)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 256, &threads)) return 2; }
        else if (!strcmp(a, "--json")) json = true;
        else if ((kvf = lb_cli_kv_flag(cmd, argc, argv, &i, &sp)) != 0) { if (kvf < 0) return 2; }
        else { fprintf(stderr, "lowbit perplexity: unknown option '%s' (see --help)\n", a); return 2; }
#undef VAL
    }
    if (!model || !file) {
        fprintf(stderr, "lowbit perplexity: -m MODEL and -f TEXT are required\n\n%s", help);
        return 2;
    }
    size_t len;
    char *text = lb_cli_read_file(cmd, file, &len);
    if (!text)
        return 1;
    lb_model *m = lb_cli_load(cmd, model, NULL);
    if (!m) {
        free(text);
        return 1;
    }
    lb_model_info info;
    lb_model_get_info(m, &info);
    int rc = 1;
    lb_session *s = NULL;
    float *logits = NULL;
    size_t cap = len + 16, n_tok = 0;
    lb_token *toks = malloc(cap * sizeof *toks);
    if (!toks || lb_tokenize(m, text, len, true, false, toks, cap, &n_tok)) {
        fprintf(stderr, "lowbit perplexity: cannot tokenize %s\n", file);
        goto out;
    }
    long n_chunks = (long)(n_tok / (size_t)n_ctx);
    if (n_chunks == 0) {
        fprintf(stderr, "lowbit perplexity: %s has %zu tokens; at least %ld (one chunk of -c %ld) are needed\n",
                file, n_tok, n_ctx, n_ctx);
        goto out;
    }
    if (max_chunks > 0 && max_chunks < n_chunks)
        n_chunks = max_chunks;
    const bool windowed = sp.n_window > 0;
    sp.n_ctx = (int)n_ctx;
    sp.n_batch = windowed && n_ctx > 512 ? 512 : (int)n_ctx;
    sp.n_threads = (int)threads;
    lb_status st = lb_session_new(m, &sp, &s);
    if (st) {
        fprintf(stderr, "lowbit perplexity: cannot create a session: %s: %s\n", lb_status_str(st), lb_model_last_error(m));
        goto out;
    }
    const int first = (int)n_ctx / 2, n_score = (int)n_ctx - first;
    /* rows of logits evaluated at once: the whole scored half, or a batch when windowed */
    const int piece = windowed ? sp.n_batch : n_score;
    logits = malloc((size_t)piece * info.n_vocab * sizeof *logits);
    if (!logits) {
        fprintf(stderr, "lowbit perplexity: out of memory for logits\n");
        goto out;
    }
    if (!json) {
        fprintf(stderr, "perplexity: %zu tokens, %ld chunks of %ld, scoring %d per chunk", n_tok, n_chunks, n_ctx,
                n_score - 1);
        if (windowed)
            fprintf(stderr, "; window %d, sinks %d", sp.n_window, sp.n_sinks);
        fputc('\n', stderr);
    }
    lb_progress bar;
    lb_progress_params pp = lb_progress_default_params();
    pp.label = "perplexity";
    pp.total = (double)n_chunks;
    pp.unit = "chunks";
    lb_progress_start(&bar, &pp);
    double t0 = lb_time_ms(), sum_nll = 0, sum_nll2 = 0;
    long count = 0;
    for (long c = 0; c < n_chunks; c++) {
        lb_token *chunk = toks + c * n_ctx;
        lb_token saved = chunk[0];
        if (info.add_bos && info.bos >= 0)
            chunk[0] = info.bos;
        lb_session_reset(s);
        st = lb_session_eval(s, chunk, first, NULL, false);
        for (int j0 = 0; !st && j0 < n_score; j0 += piece) {
            const int np = n_score - j0 < piece ? n_score - j0 : piece;
            st = lb_session_eval(s, chunk + first + j0, np, logits, false);
            for (int j = j0; !st && j < j0 + np && j < n_score - 1; j++) {
                double v = nll(logits + (size_t)(j - j0) * info.n_vocab, info.n_vocab, chunk[first + j + 1]);
                sum_nll += v;
                sum_nll2 += v * v;
                count++;
            }
        }
        chunk[0] = saved;
        if (st) {
            fprintf(stderr, "lowbit perplexity: chunk %ld: %s: %s\n", c, lb_status_str(st), lb_session_last_error(s));
            lb_progress_finish(&bar, false);
            goto out;
        }
        lb_progress_note(&bar, "ppl %.4f", exp(sum_nll / count));
        lb_progress_update(&bar, (double)(c + 1));
        if (!json && !bar.tty)
            fprintf(stderr, "[%ld]%.4f%s", c + 1, exp(sum_nll / count), c + 1 == n_chunks ? "\n" : ",");
    }
    lb_progress_finish(&bar, true);
    double secs = (lb_time_ms() - t0) / 1000.0;
    double mean = sum_nll / count;
    double ppl = exp(mean);
    /* Standard error of the mean NLL carried to PPL, as llama.cpp reports it. */
    double var = sum_nll2 / count - mean * mean;
    double err = ppl * sqrt(var > 0 ? var / (count - 1 > 0 ? count - 1 : 1) : 0);
    if (json) {
        printf("{\"model\": ");
        lb_cli_json_str(stdout, model, strlen(model));
        printf(", \"ppl\": %.6f, \"ppl_stderr\": %.6f, \"mean_nll\": %.8f, \"tokens\": %zu, "
               "\"chunks\": %ld, \"n_ctx\": %ld, \"scored\": %ld, \"seconds\": %.3f, \"tokens_per_second\": %.1f, "
               "\"kv_k\": \"%s\", \"kv_v\": \"%s\", \"window\": %d, \"sinks\": %d}\n",
               ppl, err, mean, n_tok, n_chunks, n_ctx, count, secs, n_chunks * n_ctx / (secs > 0 ? secs : 1),
               lb_kv_type_name(sp.kv_type_k), lb_kv_type_name(sp.kv_type_v), sp.n_window, sp.n_sinks);
    } else
        printf("PPL = %.4f +/- %.4f  (%ld chunks of %ld, %ld tokens scored, %.1f s)\n", ppl, err, n_chunks, n_ctx,
               count, secs);
    rc = 0;
out:
    free(logits);
    lb_session_free(s);
    lb_model_free(m);
    free(toks);
    free(text);
    return rc;
}
