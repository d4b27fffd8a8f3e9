/* lowbit-bench: prompt-processing (pp) and generation (tg) throughput, load time
 * and peak RSS of one model, measured the way llama-bench does, through the
 * public API in include/lowbit.h only (so it measures what a library user gets).
 *
 *   lowbit-bench -m MODEL [-t THREADS] [-p P] [-n T] [-r R] [-o md|csv] [-b N,N,...]
 *
 * pp: P tokens evaluated in one lb_session_eval call on an empty cache.
 * tg: T tokens evaluated one call at a time on an empty cache.
 * Each test is repeated R times after one warm-up; the median tok/s is reported
 * (with mean and standard deviation, as llama-bench prints them).
 * b (-b 1,2,4,8): batched decoding through lb_batch_eval, the server's step:
 * N sessions, each with a 16-token prompt, then T steps of one token per
 * session; tok/s counts all N sessions' tokens.  Token ids are
 * pseudo-random, as in llama-bench, because throughput must not depend on text. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "lowbit.h"

typedef struct bench_opts {
    const char *model;
    int threads, n_prompt, n_gen, reps;
    int csv;
    int n_bs, bs[16];   /* [n_bs] batch sizes of the -b test */
} bench_opts;

typedef struct bench_result {
    const char *test;   /* "pp512", "tg128": filled into name[] */
    char name[32];
    int n_tokens;
    double median_tps, mean_tps, sd_tps;
    double cpu_tps;   /* batched test: median tokens per CPU-second of the process, 0 otherwise */
} bench_result;

/* Process CPU time (all threads): on a shared machine, tokens per CPU-second
 * compare two builds more steadily than tokens per wall-clock second. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lowbit-bench -m MODEL [-t THREADS] [-p P] [-n T] [-r R] [-o md|csv]\n"
            "  -m MODEL    GGUF file to benchmark (required)\n"
            "  -t THREADS  threads (default 0 = all online CPUs)\n"
            "  -p P        prompt tokens evaluated in one call (pp test; default 512, 0 = skip)\n"
            "  -n T        tokens generated one at a time (tg test; default 128, 0 = skip)\n"
            "  -r R        repetitions of each test (default 3); the median is reported\n"
            "  -o FORMAT   md (a table, default) or csv\n"
            "  -b N,N,...  batched decoding of N sessions at once (lb_batch_eval), T steps each (default off)\n");
}

static int parse_int(const char *flag, const char *s, int lo, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > 1000000) {
        fprintf(stderr, "lowbit-bench: %s needs an integer >= %d, got '%s'\n", flag, lo, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){ .model = NULL, .threads = 0, .n_prompt = 512, .n_gen = 128, .reps = 3, .csv = 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "lowbit-bench: %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "-m"))
            o->model = v;
        else if (!strcmp(a, "-t"))
            rc = parse_int(a, v, 0, &o->threads);
        else if (!strcmp(a, "-p"))
            rc = parse_int(a, v, 0, &o->n_prompt);
        else if (!strcmp(a, "-n"))
            rc = parse_int(a, v, 0, &o->n_gen);
        else if (!strcmp(a, "-r"))
            rc = parse_int(a, v, 1, &o->reps);
        else if (!strcmp(a, "-b")) {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            o->n_bs = 0;
            for (char *tok = strtok(buf, ","); tok && !rc; tok = strtok(NULL, ",")) {
                if (o->n_bs == 16) {
                    fprintf(stderr, "lowbit-bench: -b takes at most 16 sizes\n");
                    return -1;
                }
                rc = parse_int(a, tok, 1, &o->bs[o->n_bs++]);
            }
        }
        else if (!strcmp(a, "-o")) {
            if (!strcmp(v, "csv"))
                o->csv = 1;
            else if (!strcmp(v, "md"))
                o->csv = 0;
            else {
                fprintf(stderr, "lowbit-bench: -o takes md or csv\n");
                return -1;
            }
        } else {
            fprintf(stderr, "lowbit-bench: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        if (rc)
            return -1;
    }
    if (!o->model) {
        usage(stderr);
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fills r's statistics from reps tok/s samples (sorts the samples). */
static void summarize(double *tps, int reps, bench_result *r)
{
    double sum = 0, ss = 0;
    for (int i = 0; i < reps; i++)
        sum += tps[i];
    r->mean_tps = sum / reps;
    for (int i = 0; i < reps; i++)
        ss += (tps[i] - r->mean_tps) * (tps[i] - r->mean_tps);
    r->sd_tps = reps > 1 ? sqrt(ss / (reps - 1)) : 0.0;
    qsort(tps, (size_t)reps, sizeof *tps, cmp_double);
    r->median_tps = reps % 2 ? tps[reps / 2] : 0.5 * (tps[reps / 2 - 1] + tps[reps / 2]);
}

/* A small deterministic generator, so every run feeds the same ids. */
static uint32_t next_rand(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*state >> 33);
}

/* One pp run: reset, then all n tokens in one call.  Returns seconds or < 0 on error. */
static double run_pp(lb_session *s, const lb_token *tokens, int n, float *logits)
{
    lb_session_reset(s);
    double t0 = now_s();
    if (lb_session_eval(s, tokens, n, logits, true) != LB_OK)
        return -1;
    return now_s() - t0;
}

/* One tg run: reset, then n calls of one token each. */
static double run_tg(lb_session *s, const lb_token *tokens, int n, float *logits)
{
    lb_session_reset(s);
    double t0 = now_s();
    for (int i = 0; i < n; i++)
        if (lb_session_eval(s, &tokens[i], 1, logits, true) != LB_OK)
            return -1;
    return now_s() - t0;
}

static int run_test(lb_session *s, int is_pp, const lb_token *tokens, int n, int reps, float *logits,
                    bench_result *r)
{
    double *tps = calloc((size_t)reps, sizeof *tps); /* [reps] tok/s of each run */
    if (!tps)
        return -1;
    snprintf(r->name, sizeof r->name, "%s%d", is_pp ? "pp" : "tg", n);
    r->test = r->name;
    r->n_tokens = n;
    /* Warm-up: page in the weights and let the thread pool settle, as llama-bench does. */
    double w = is_pp ? run_pp(s, tokens, n, logits) : run_tg(s, tokens, n < 4 ? n : 4, logits);
    for (int i = 0; w >= 0 && i < reps; i++) {
        double dt = is_pp ? run_pp(s, tokens, n, logits) : run_tg(s, tokens, n, logits);
        if (dt < 0) {
            w = -1;
            break;
        }
        tps[i] = n / (dt > 0 ? dt : 1e-9);
    }
    if (w < 0) {
        fprintf(stderr, "lowbit-bench: %s failed: %s\n", r->name, lb_session_last_error(s));
        free(tps);
        return -1;
    }
    summarize(tps, reps, r);
    free(tps);
    return 0;
}

/* Prompt length of every session of a batched-decoding run. */
#define BATCH_PROMPT 16

/* One batched run: n sessions reset and prefilled with their own prompts in
 * one step, then t steps of one token each.  Returns the seconds of the t
 * steps or < 0 on error; *cpu gets the CPU seconds the process spent. */
static double run_batch(lb_batch *b, lb_session **s, int n, const lb_token *tokens, int t, float *logits,
                        double *cpu)
{
    int counts[64];            /* [n] prompt tokens of each session */
    lb_token step[64];         /* [n] one token per session */
    for (int i = 0; i < n; i++) {
        lb_session_reset(s[i]);
        counts[i] = BATCH_PROMPT;
    }
    /* The prompts are rotations of one sequence, so no two sessions see the same tokens. */
    lb_token prompt[64 * BATCH_PROMPT];   /* [n][BATCH_PROMPT] */
    for (int i = 0; i < n; i++)
        for (int k = 0; k < BATCH_PROMPT; k++)
            prompt[i * BATCH_PROMPT + k] = tokens[(i * 7 + k) % t];
    if (lb_batch_eval(b, s, n, prompt, counts, logits) != LB_OK)
        return -1;
    double t0 = now_s(), c0 = cpu_s();
    for (int k = 0; k < t; k++) {
        for (int i = 0; i < n; i++)
            step[i] = tokens[(k + 13 * i) % t];
        if (lb_batch_eval(b, s, n, step, NULL, logits) != LB_OK)
            return -1;
    }
    *cpu = cpu_s() - c0;
    return now_s() - t0;
}

static int run_batch_test(lb_model *m, const bench_opts *o, int n, const lb_token *tokens, int n_vocab,
                          bench_result *r)
{
    int t = o->n_gen > 0 ? o->n_gen : 128;
    snprintf(r->name, sizeof r->name, "b%d tg%d", n, t);
    r->test = r->name;
    r->n_tokens = n * t;
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = BATCH_PROMPT + t;
    sp.n_threads = o->threads;
    sp.n_batch = BATCH_PROMPT;
    lb_batch_params bp = lb_batch_default_params();
    bp.max_sessions = n;
    bp.max_tokens = n * BATCH_PROMPT;
    bp.n_threads = o->threads;
    lb_session *s[64] = {0};   /* [n] */
    lb_batch *b = NULL;
    float *logits = malloc((size_t)n * (size_t)n_vocab * sizeof *logits);   /* [n][n_vocab] */
    double *tps = calloc(2 * (size_t)o->reps, sizeof *tps);               /* [2][reps] wall, CPU */
    int rc = -1;
    if (n > 64 || !logits || !tps || lb_batch_new(m, &bp, &b) != LB_OK) {
        fprintf(stderr, "lowbit-bench: cannot set up a batch of %d sessions: %s\n", n, lb_model_last_error(m));
        goto out;
    }
    for (int i = 0; i < n; i++)
        if (lb_session_new(m, &sp, &s[i]) != LB_OK) {
            fprintf(stderr, "lowbit-bench: cannot create session %d: %s\n", i, lb_model_last_error(m));
            goto out;
        }
    double cpu;
    if (run_batch(b, s, n, tokens, t < 8 ? t : 8, logits, &cpu) < 0)   /* warm-up */
        goto fail;
    for (int i = 0; i < o->reps; i++) {
        double dt = run_batch(b, s, n, tokens, t, logits, &cpu);
        if (dt < 0)
            goto fail;
        tps[i] = (double)n * t / (dt > 0 ? dt : 1e-9);
        tps[o->reps + i] = (double)n * t / (cpu > 0 ? cpu : 1e-9);
    }
    bench_result c;
    summarize(tps + o->reps, o->reps, &c);
    summarize(tps, o->reps, r);
    r->cpu_tps = c.median_tps;
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "lowbit-bench: %s failed: %s\n", r->name, lb_batch_last_error(b));
out:
    for (int i = 0; i < n; i++)
        lb_session_free(s[i]);
    lb_batch_free(b);
    free(logits);
    free(tps);
    return rc;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return ru.ru_maxrss; /* KiB on Linux */
}

int main(int argc, char **argv)
{
    bench_opts o;
    if (parse_args(argc, argv, &o))
        return 2;

    lb_model_params mp = lb_model_default_params();
    lb_model *m = NULL;
    double t0 = now_s();
    lb_status st = lb_model_load(o.model, &mp, &m);
    double load_ms = (now_s() - t0) * 1e3;
    if (st != LB_OK) {
        fprintf(stderr, "lowbit-bench: cannot load %s: %s: %s\n", o.model, lb_status_str(st), lb_last_load_error());
        return 1;
    }
    lb_model_info info;
    lb_model_get_info(m, &info);

    int n_max = o.n_prompt > o.n_gen ? o.n_prompt : o.n_gen;
    if (n_max < 128)
        n_max = 128;   /* the batched test's default T */
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = n_max;
    sp.n_threads = o.threads;
    sp.n_batch = n_max;
    lb_session *s = NULL;
    t0 = now_s();
    st = lb_session_new(m, &sp, &s);
    double session_ms = (now_s() - t0) * 1e3;
    if (st != LB_OK) {
        fprintf(stderr, "lowbit-bench: cannot create a session (n_ctx %d, %d threads): %s\n", n_max, o.threads,
                lb_status_str(st));
        lb_model_free(m);
        return 1;
    }

    lb_token *tokens = malloc((size_t)n_max * sizeof *tokens);            /* [n_max] input ids */
    float *logits = malloc((size_t)(info.n_vocab > 0 ? info.n_vocab : 1) * sizeof *logits); /* [n_vocab] */
    if (!tokens || !logits) {
        fprintf(stderr, "lowbit-bench: out of memory\n");
        return 1;
    }
    uint64_t rng = 1234;
    for (int i = 0; i < n_max; i++)
        tokens[i] = info.n_vocab > 0 ? (lb_token)(next_rand(&rng) % (uint32_t)info.n_vocab) : 0;
    if (info.bos >= 0)
        tokens[0] = info.bos;

    bench_result res[2 + 16];
    memset(res, 0, sizeof res);
    int n_res = 0, failed = 0;
    if (o.n_prompt > 0)
        failed |= run_test(s, 1, tokens, o.n_prompt, o.reps, logits, &res[n_res++]) != 0;
    if (!failed && o.n_gen > 0)
        failed |= run_test(s, 0, tokens, o.n_gen, o.reps, logits, &res[n_res++]) != 0;
    for (int i = 0; !failed && i < o.n_bs; i++)
        failed |= run_batch_test(m, &o, o.bs[i], tokens, info.n_vocab, &res[n_res++]) != 0;
    long rss = peak_rss_kib();

    const char *name = strrchr(o.model, '/') ? strrchr(o.model, '/') + 1 : o.model;
    if (o.csv) {
        printf("model,size_bytes,params,threads,test,median_tps,mean_tps,sd_tps,load_ms,peak_rss_kib,cpu_tps\n");
        for (int i = 0; !failed && i < n_res; i++)
            printf("%s,%llu,%lld,%d,%s,%.2f,%.2f,%.2f,%.1f,%ld,%.2f\n", name, (unsigned long long)info.weight_bytes,
                   (long long)info.n_params, o.threads, res[i].test, res[i].median_tps, res[i].mean_tps,
                   res[i].sd_tps, load_ms, rss, res[i].cpu_tps);
    } else {
        printf("model: %s (%s, %.2f MiB of weights, %.2f M params, %.2f bits/weight)\n", name, info.arch,
               info.weight_bytes / (1024.0 * 1024.0), info.n_params / 1e6, info.bits_per_weight);
        printf("load: %.1f ms   session: %.1f ms   peak RSS: %.1f MiB   threads: %d   reps: %d\n", load_ms,
               session_ms, rss / 1024.0, o.threads, o.reps);
        printf("| %-8s | %12s | %20s |\n", "test", "median t/s", "mean t/s ± sd");
        printf("| %-8s | %12s | %20s |\n", "--------", "-----------:", "-------------------:");
        for (int i = 0; !failed && i < n_res; i++) {
            char ms[48];
            snprintf(ms, sizeof ms, "%.2f ± %.2f", res[i].mean_tps, res[i].sd_tps);
            if (res[i].cpu_tps > 0)
                printf("| %-8s | %12.2f | %21s | %.2f per CPU-second\n", res[i].test, res[i].median_tps, ms,
                       res[i].cpu_tps);
            else
                printf("| %-8s | %12.2f | %21s |\n", res[i].test, res[i].median_tps, ms);
        }
    }
    free(tokens);
    free(logits);
    lb_session_free(s);
    lb_model_free(m);
    return failed ? 1 : 0;
}
