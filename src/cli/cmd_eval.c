/* `lowbit eval`: the quality table of a quantized model against its
 * reference — perplexity of both, mean KL divergence from the reference's
 * next-token distribution, top-1 agreement, and whole-file bits per weight —
 * with both models run on the same chunks under the perplexity protocol
 * (cmd_perplexity.c: BOS-led chunks of n_ctx, second halves scored). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/progress.h"
#include "cli.h"
#include "quant/quality.h"

static const char *help =
    "usage: lowbit eval --ref REF.gguf MODEL.gguf TEXT [options]\n"
    "\n"
    "  --ref FILE           the reference model (usually the F16 file MODEL was quantized from)\n"
    "  -c, --ctx-size N     tokens per chunk (default 512)\n"
    "      --chunks N       use only the first N chunks (default: all)\n"
    "  -t, --threads N      threads (default: all CPUs)\n"
    "      --json           print one JSON object on stdout\n"
    "\n"
    "Reports MODEL's perplexity, the mean KL(P_ref || P_model) in nats over the scored\n"
    "positions, the % of positions where both models' most likely tokens agree, REF's\n"
    "perplexity, and bits per weight = MODEL's file size * 8 / REF's parameter count.\n";

/* One session's logits for the scored half of a chunk. */
static lb_status eval_chunk(lb_session *s, const lb_token *chunk, int first, int n_score, float *logits)
{
    lb_session_reset(s);
    lb_status st = lb_session_eval(s, chunk, first, NULL, false);
    return st ? st : lb_session_eval(s, chunk + first, n_score, logits, false);
}

static lb_session *new_session(lb_model *m, long n_ctx, long threads, const char *path)
{
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = (int)n_ctx;
    sp.n_batch = (int)n_ctx;
    sp.n_threads = (int)threads;
    lb_session *s = NULL;
    lb_status st = lb_session_new(m, &sp, &s);
    if (st)
        fprintf(stderr, "lowbit eval: cannot create a session for %s: %s: %s\n", path, lb_status_str(st),
                lb_model_last_error(m));
    return s;
}

int lb_cli_eval(int argc, char **argv)
{
    const char *cmd = "eval", *ref_path = NULL, *model_path = NULL, *file = NULL;
    long n_ctx = 512, max_chunks = -1, threads = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
#define VAL() do { if (!(v = lb_cli_value(cmd, argc, argv, &i))) return 2; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(help, stdout); return 0; }
        else if (!strcmp(a, "--ref")) { VAL(); ref_path = v; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { VAL(); if (!lb_cli_int(cmd, a, v, 8, 1 << 20, &n_ctx)) return 2; }
        else if (!strcmp(a, "--chunks")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 1L << 30, &max_chunks)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!lb_cli_int(cmd, a, v, 1, 256, &threads)) return 2; }
        else if (!strcmp(a, "--json")) json = true;
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "lowbit eval: unknown option '%s' (see --help)\n", a); return 2; }
        else if (!model_path) model_path = a;
        else if (!file) file = a;
        else { fprintf(stderr, "lowbit eval: unexpected argument '%s' (see --help)\n", a); return 2; }
#undef VAL
    }
    if (!ref_path || !model_path || !file) {
        fprintf(stderr, "lowbit eval: --ref REF.gguf, MODEL.gguf and TEXT are required\n\n%s", help);
        return 2;
    }
    struct stat stt;
    if (stat(model_path, &stt) != 0) {
        fprintf(stderr, "lowbit eval: cannot stat %s\n", model_path);
        return 1;
    }
    uint64_t file_bytes = (uint64_t)stt.st_size;
    size_t len;
    char *text = lb_cli_read_file(cmd, file, &len);
    if (!text)
        return 1;
    int rc = 1;
    lb_model *ref = NULL, *m = NULL;
    lb_session *sref = NULL, *s = NULL;
    lb_token *toks = NULL;
    float *lref = NULL, *lm = NULL;
    if (!(ref = lb_cli_load(cmd, ref_path, NULL)) || !(m = lb_cli_load(cmd, model_path, NULL)))
        goto out;
    lb_model_info iref, im;
    lb_model_get_info(ref, &iref);
    lb_model_get_info(m, &im);
    if (iref.n_vocab != im.n_vocab) {
        fprintf(stderr, "lowbit eval: %s has %d tokens in its vocabulary, %s %d: not the same model\n", ref_path,
                iref.n_vocab, model_path, im.n_vocab);
        goto out;
    }
    if (iref.n_params != im.n_params)
        fprintf(stderr, "lowbit eval: warning: %s has %lld parameters, %s %lld; bits per weight use the reference's\n",
                ref_path, (long long)iref.n_params, model_path, (long long)im.n_params);
    /* Both models read the reference's tokens, so they score the same targets. */
    size_t cap = len + 16, n_tok = 0;
    toks = malloc(cap * sizeof *toks);
    if (!toks || lb_tokenize(ref, text, len, true, false, toks, cap, &n_tok)) {
        fprintf(stderr, "lowbit eval: cannot tokenize %s\n", file);
        goto out;
    }
    long n_chunks = (long)(n_tok / (size_t)n_ctx);
    if (n_chunks == 0) {
        fprintf(stderr, "lowbit eval: %s has %zu tokens; at least %ld (one chunk of -c %ld) are needed\n", file, n_tok,
                n_ctx, n_ctx);
        goto out;
    }
    if (max_chunks > 0 && max_chunks < n_chunks)
        n_chunks = max_chunks;
    if (!(sref = new_session(ref, n_ctx, threads, ref_path)) || !(s = new_session(m, n_ctx, threads, model_path)))
        goto out;
    const int first = (int)n_ctx / 2, n_score = (int)n_ctx - first, V = iref.n_vocab;
    lref = malloc((size_t)n_score * (size_t)V * sizeof *lref); /* [n_score][V] reference logits */
    lm = malloc((size_t)n_score * (size_t)V * sizeof *lm);     /* [n_score][V] model logits */
    if (!lref || !lm) {
        fprintf(stderr, "lowbit eval: out of memory for logits\n");
        goto out;
    }
    if (!json)
        fprintf(stderr, "eval: %zu tokens, %ld chunks of %ld, scoring %d per chunk\n", n_tok, n_chunks, n_ctx,
                n_score - 1);
    lb_progress bar;
    lb_progress_params pp = lb_progress_default_params();
    pp.label = "eval";
    pp.total = (double)n_chunks;
    pp.unit = "chunks";
    lb_progress_start(&bar, &pp);
    lb_quality q = {0};
    double t0 = lb_time_ms();
    for (long c = 0; c < n_chunks; c++) {
        lb_token *chunk = toks + c * n_ctx;
        lb_token saved = chunk[0];
        if (iref.add_bos && iref.bos >= 0)
            chunk[0] = iref.bos;
        lb_status st = eval_chunk(sref, chunk, first, n_score, lref);
        lb_session *bad = sref;
        if (!st) {
            st = eval_chunk(s, chunk, first, n_score, lm);
            bad = s;
        }
        chunk[0] = saved;
        if (st) {
            lb_progress_finish(&bar, false);
            fprintf(stderr, "lowbit eval: chunk %ld: %s: %s\n", c, lb_status_str(st), lb_session_last_error(bad));
            goto out;
        }
        for (int j = 0; j < n_score - 1; j++)
            lb_quality_add(&q, lref + (size_t)j * V, lm + (size_t)j * V, V, chunk[first + j + 1]);
        lb_quality_result r = lb_quality_summary(&q);
        lb_progress_note(&bar, "ppl %.4f kl %.4f", r.ppl, r.kl_mean);
        lb_progress_update(&bar, (double)(c + 1));
    }
    lb_progress_finish(&bar, true);
    double secs = (lb_time_ms() - t0) / 1000.0;
    lb_quality_result r = lb_quality_summary(&q);
    double bpw = iref.n_params > 0 ? (double)file_bytes * 8.0 / (double)iref.n_params : 0;
    if (json) {
        printf("{\"model\": ");
        lb_cli_json_str(stdout, model_path, strlen(model_path));
        printf(", \"ref\": ");
        lb_cli_json_str(stdout, ref_path, strlen(ref_path));
        printf(", \"ppl\": %.6f, \"ppl_stderr\": %.6f, \"ppl_ref\": %.6f, \"ppl_ref_stderr\": %.6f, "
               "\"kl\": %.8f, \"kl_stderr\": %.8f, \"kl_max\": %.6f, \"top1\": %.4f, \"bytes\": %llu, "
               "\"parameters\": %lld, \"bpw\": %.4f, \"chunks\": %ld, \"n_ctx\": %ld, \"scored\": %lld, "
               "\"seconds\": %.3f}\n",
               r.ppl, r.ppl_err, r.ppl_ref, r.ppl_ref_err, r.kl_mean, r.kl_err, r.kl_max, r.top1,
               (unsigned long long)file_bytes, (long long)iref.n_params, bpw, n_chunks, n_ctx, (long long)r.n, secs);
    } else {
        printf("%s against %s, %ld chunks of %ld, %lld positions scored, %.1f s\n", model_path, ref_path, n_chunks,
               n_ctx, (long long)r.n, secs);
        printf("  PPL          %.4f +/- %.4f   (reference %.4f +/- %.4f, %+.2f%%)\n", r.ppl, r.ppl_err, r.ppl_ref,
               r.ppl_ref_err, 100.0 * (r.ppl / r.ppl_ref - 1.0));
        printf("  mean KL      %.6f +/- %.6f nats   (max %.4f)\n", r.kl_mean, r.kl_err, r.kl_max);
        printf("  top-1 agree  %.2f %%\n", r.top1);
        printf("  bpw          %.3f   (%llu bytes * 8 / %lld parameters)\n", bpw, (unsigned long long)file_bytes,
               (long long)iref.n_params);
    }
    rc = 0;
out:
    free(lref);
    free(lm);
    lb_session_free(s);
    lb_session_free(sref);
    lb_model_free(m);
    lb_model_free(ref);
    free(toks);
    free(text);
    return rc;
}
