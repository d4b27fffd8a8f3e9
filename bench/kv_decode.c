/* Decode speed at a long context for several KV cache types, measured so a
 * shared machine disturbs it little: one thread, CPU time of the decoding
 * thread (plus wall time), configurations interleaved round by round, the
 * median reported.  "q4-perhead" is q4/q4 with the grouped-query kernels
 * replaced by one single-head kernel call per query head (the code before
 * k_scores_n / v_accum_n), to show what sharing the unpacking is worth.
 *
 *   make BUILD=build/kv build/kv/liblowbit.a
 *   cc -O2 -Iinclude -Isrc -D_GNU_SOURCE -o build/kv/kv-decode bench/kv_decode.c build/kv/liblowbit.a -lpcre2-8 -lm -lpthread
 *   build/kv/kv-decode -m ../shared/models/techdocs-28M-f16.gguf -f ../shared/text/techdocs-valid.txt -c 4096
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "generate/session.h"
#include "kernels/kvq.h"
#include "kv/kv_cache.h"
#include "lowbit.h"

static const lb_kvq_kernels *single;   /* the kernels the per-head set loops over */

static void k_scores_loop(int bits, int dim, const uint8_t *codes, size_t stride, const lb_f16 *scale,
                          const lb_f16 *min, const float *q, size_t q_stride, int nq, float *s, size_t s_stride)
{
    for (int g = 0; g < nq; g++)
        single->k_scores(bits, dim, codes, stride, scale, min, q + (size_t)g * q_stride, s + (size_t)g * s_stride);
}

static void v_accum_loop(int bits, int n, const uint8_t *rows, size_t stride, const float *p, size_t p_stride, int nq,
                         float *out, size_t out_stride)
{
    for (int g = 0; g < nq; g++)
        single->v_accum(bits, n, rows, stride, p + (size_t)g * p_stride, out + (size_t)g * out_stride);
}

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double wall_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *file = NULL;
    int ctx = 4096, rounds = 5, per = 16;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-m")) model = argv[i + 1];
        else if (!strcmp(argv[i], "-f")) file = argv[i + 1];
        else if (!strcmp(argv[i], "-c")) ctx = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-n")) per = atoi(argv[i + 1]);
    }
    if (!model || !file || rounds < 1 || rounds > 64 || per < 1) {
        fprintf(stderr, "usage: kv-decode -m MODEL -f TEXT [-c CTX] [-r ROUNDS] [-n TOKENS_PER_ROUND]\n");
        return 2;
    }
    lb_model *m = NULL;
    if (lb_model_load(model, NULL, &m)) {
        fprintf(stderr, "cannot load %s: %s\n", model, lb_last_load_error());
        return 1;
    }
    FILE *f = fopen(file, "rb");
    static char text[1 << 20];
    size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f)
        fclose(f);
    static lb_token toks[1 << 20];
    size_t n_tok = 0;
    const int prompt = ctx - rounds * per - 8;
    if (lb_tokenize(m, text, len, true, false, toks, 1 << 20, &n_tok) || (int)n_tok < ctx || prompt < 1) {
        fprintf(stderr, "need at least %d tokens of text\n", ctx);
        return 1;
    }
    enum { N_CFG = 4 };
    const char *names[N_CFG] = {"f16/f16", "q4/q4", "q4-perhead", "q2/q2"};
    const lb_kv_type types[N_CFG] = {LB_KV_F16, LB_KV_Q4, LB_KV_Q4, LB_KV_Q2};
    lb_session *s[N_CFG];
    lb_kvq_kernels perhead = *lb_kvq_get();
    single = lb_kvq_get();
    perhead.k_scores_n = k_scores_loop;
    perhead.v_accum_n = v_accum_loop;
    lb_model_info info;
    lb_model_get_info(m, &info);
    float *logits = malloc(sizeof(float) * info.n_vocab);
    for (int c = 0; c < N_CFG; c++) {
        lb_session_params sp = lb_session_default_params();
        sp.n_ctx = ctx;
        sp.n_threads = 1;
        sp.kv_type_k = sp.kv_type_v = types[c];
        if (lb_session_new(m, &sp, &s[c])) {
            fprintf(stderr, "%s: %s\n", names[c], lb_model_last_error(m));
            return 1;
        }
        if (c == 2)
            lb__kvq_use_kernels(lb__kv_cache_quant(s[c]->kv), &perhead);
        double t0 = wall_s();
        if (lb_session_eval(s[c], toks, prompt, NULL, false)) {
            fprintf(stderr, "%s: %s\n", names[c], lb_session_last_error(s[c]));
            return 1;
        }
        fprintf(stderr, "%s: prefill %d tokens in %.1f s\n", names[c], prompt, wall_s() - t0);
    }
    double cpu[N_CFG][64], wall[N_CFG][64];
    for (int r = 0; r < rounds; r++)
        for (int c = 0; c < N_CFG; c++) {
            double c0 = cpu_s(), w0 = wall_s();
            for (int t = 0; t < per; t++) {
                const int p = prompt + r * per + t;
                if (lb_session_eval(s[c], toks + p, 1, logits, true)) {
                    fprintf(stderr, "%s: %s\n", names[c], lb_session_last_error(s[c]));
                    return 1;
                }
            }
            cpu[c][r] = (cpu_s() - c0) / per;
            wall[c][r] = (wall_s() - w0) / per;
        }
    printf("decode at context %d..%d, 1 thread, %d rounds x %d tokens, interleaved; median ms/token\n", prompt,
           prompt + rounds * per, rounds, per);
    printf("| K/V | CPU ms/token | CPU tok/s | wall ms/token | wall tok/s |\n|-----|------:|------:|------:|------:|\n");
    for (int c = 0; c < N_CFG; c++) {
        qsort(cpu[c], (size_t)rounds, sizeof(double), cmp);
        qsort(wall[c], (size_t)rounds, sizeof(double), cmp);
        double mc = cpu[c][rounds / 2], mw = wall[c][rounds / 2];
        printf("| %s | %.2f | %.1f | %.2f | %.1f |\n", names[c], 1e3 * mc, 1 / mc, 1e3 * mw, 1 / mw);
        lb_session_free(s[c]);
    }
    free(logits);
    lb_model_free(m);
    return 0;
}
