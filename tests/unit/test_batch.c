/* Tests of batched decoding: lb_batch_eval's rows equal each session's own
 * single-token lb_session_eval bit for bit, and generations stepped together
 * give the text lb_generate gives alone. */
#include <stdint.h>

#include "check.h"
#include "check_model.h"
#include "generate/gen_step.h"
#include "generate/session.h"
#include "base/alloc.h"
#include "base/threadpool.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "lowbit.h"

static lb_model *g_model;
static int g_vocab;

static const char *const k_prompts[] = {
    "The cache stores",
    "To build the project, run make and then",
    "A",
    "Error handling in C is done with return values; the caller checks every status and",
};
#define N_PROMPTS 4

static lb_session *new_session(int n_ctx, int n_threads, lb_kv_type kt, lb_kv_type vt)
{
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = n_ctx;
    sp.n_threads = n_threads;
    sp.kv_type_k = kt;
    sp.kv_type_v = vt;
    lb_session *s = NULL;
    CHECK(lb_session_new(g_model, &sp, &s) == LB_OK);
    return s;
}

/* Prefills prompt i into s; returns the greedy next token. */
static lb_token prefill(lb_session *s, int i, float *logits)
{
    lb_token toks[256];
    size_t n = 0;
    CHECK(lb_tokenize(g_model, k_prompts[i], strlen(k_prompts[i]), true, true, toks, 256, &n) == LB_OK);
    CHECK(lb_session_eval(s, toks, (int)n, logits, true) == LB_OK);
    lb_token best = 0;
    for (int v = 1; v < g_vocab; v++)
        if (logits[v] > logits[best])
            best = v;
    return best;
}

static lb_token argmax(const float *row)
{
    lb_token best = 0;
    for (int v = 1; v < g_vocab; v++)
        if (row[v] > row[best])
            best = v;
    return best;
}

/* Steps n batched sessions and n reference sessions side by side for `steps`
 * tokens (the batch taking `width` sessions at a time in rotation, so
 * batches of every size up to n occur) and compares every row of logits. */
static void compare_steps(lb_session **bat, lb_session **ref, int n, int batch_threads, int steps)
{
    lb_batch *b = NULL;
    lb_batch_params bp = lb_batch_default_params();
    bp.max_sessions = n;
    bp.n_threads = batch_threads;
    CHECK(lb_batch_new(g_model, &bp, &b) == LB_OK);
    if (!b)
        return;
    float *ref_row = malloc((size_t)g_vocab * sizeof *ref_row);        /* [n_vocab] */
    float *rows = malloc((size_t)n * g_vocab * sizeof *rows);          /* [n][n_vocab] */
    lb_token next[8];
    for (int i = 0; i < n; i++) {
        lb_token a = prefill(bat[i], i % N_PROMPTS, ref_row);
        lb_token r = prefill(ref[i], i % N_PROMPTS, ref_row);
        CHECK(a == r);
        next[i] = a;
    }
    int mismatches = 0;
    for (int step = 0; step < steps; step++) {
        /* width cycles 1..n; the batch is sessions first..first+width-1 */
        int width = step % n + 1, first = step % n;
        lb_session *sel[8];
        lb_token tok[8];
        for (int k = 0; k < width; k++) {
            sel[k] = bat[(first + k) % n];
            tok[k] = next[(first + k) % n];
        }
        lb_status st = lb_batch_eval(b, sel, width, tok, NULL, rows);
        CHECKF(st == LB_OK, "%s", lb_batch_last_error(b));
        for (int k = 0; k < width; k++) {
            int i = (first + k) % n;
            CHECK(lb_session_eval(ref[i], &tok[k], 1, ref_row, true) == LB_OK);
            CHECK(lb_session_n_past(ref[i]) == lb_session_n_past(bat[i]));
            if (memcmp(ref_row, rows + (size_t)k * g_vocab, (size_t)g_vocab * sizeof *ref_row) != 0)
                mismatches++;
            next[i] = argmax(ref_row);
        }
    }
    CHECKF(mismatches == 0, "%d rows of batched logits differ from single-session logits", mismatches);
    free(ref_row);
    free(rows);
    lb_batch_free(b);
}

/* n f16 sessions stepped in a batch against n alone (compare_steps). */
static void compare_f16(int n, int n_ctx)
{
    lb_session *bat[8], *ref[8];
    for (int i = 0; i < n; i++) {
        bat[i] = new_session(n_ctx, 2, LB_KV_F16, LB_KV_F16);
        ref[i] = new_session(n_ctx, 2, LB_KV_F16, LB_KV_F16);
    }
    compare_steps(bat, ref, n, 2, 24);
    for (int i = 0; i < n; i++) {
        lb_session_free(bat[i]);
        lb_session_free(ref[i]);
    }
}

static void test_batched_logits_bit_exact_f16(void) { compare_f16(4, 256); }

/* Up to 8 rows a step: the 8-row products (gemm8, and on AVX-512 the
 * activation rows arranged once per product for the fused Q4_K/Q6_K
 * weights) give each row's single-session logits. */
static void test_batched_logits_bit_exact_eight(void) { compare_f16(8, 128); }

/* Quantized caches defer their stores into attention, and sessions made with
 * one thread cannot lend their scratch to a two-thread pool: both paths. */
static void test_batched_logits_bit_exact_quantized_and_single_thread(void)
{
    lb_session *bat[3], *ref[3];
    bat[0] = new_session(256, 2, LB_KV_Q4, LB_KV_Q8);
    ref[0] = new_session(256, 2, LB_KV_Q4, LB_KV_Q8);
    bat[1] = new_session(256, 1, LB_KV_F16, LB_KV_F16);
    ref[1] = new_session(256, 1, LB_KV_F16, LB_KV_F16);
    bat[2] = new_session(256, 2, LB_KV_Q2, LB_KV_Q3);
    ref[2] = new_session(256, 2, LB_KV_Q2, LB_KV_Q3);
    /* 70 steps cross a 64-token group boundary of the quantized stores. */
    compare_steps(bat, ref, 3, 2, 70);
    for (int i = 0; i < 3; i++) {
        lb_session_free(bat[i]);
        lb_session_free(ref[i]);
    }
}

/* Sliding-window caches (positions past the window evicted, sinks kept)
 * batch like any other: 80 steps slide a 32-position window. */
static void test_batched_logits_bit_exact_sliding_window(void)
{
    lb_session_params sp = lb_session_default_params();
    sp.n_threads = 2;
    sp.n_window = 32;
    sp.n_sinks = 4;
    lb_session *bat[2] = {NULL, NULL}, *ref[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        sp.kv_type_k = sp.kv_type_v = i ? LB_KV_Q8 : LB_KV_F16;
        CHECK(lb_session_new(g_model, &sp, &bat[i]) == LB_OK);
        CHECK(lb_session_new(g_model, &sp, &ref[i]) == LB_OK);
    }
    if (bat[0] && bat[1] && ref[0] && ref[1])
        compare_steps(bat, ref, 2, 2, 80);
    for (int i = 0; i < 2; i++) {
        lb_session_free(bat[i]);
        lb_session_free(ref[i]);
    }
}

static lb_batch *new_batch(int max_sessions, int max_tokens, int n_threads)
{
    lb_batch_params bp = lb_batch_default_params();
    bp.max_sessions = max_sessions;
    bp.max_tokens = max_tokens;
    bp.n_threads = n_threads;
    lb_batch *b = NULL;
    CHECK(lb_batch_new(g_model, &bp, &b) == LB_OK);
    return b;
}

static void test_batch_errors_leave_positions(void)
{
    lb_session *a = new_session(16, 1, LB_KV_F16, LB_KV_F16);
    lb_session *c = new_session(16, 1, LB_KV_F16, LB_KV_F16);
    lb_batch *b = new_batch(2, 4, 1), *bad_b = NULL;
    lb_batch_params bp = lb_batch_default_params();
    bp.max_sessions = 0;
    CHECK(lb_batch_new(g_model, &bp, &bad_b) == LB_ERR_INVALID_ARG);
    bp.max_sessions = 4;
    bp.max_tokens = 3;
    CHECK(lb_batch_new(g_model, &bp, &bad_b) == LB_ERR_INVALID_ARG && !bad_b);
    lb_token t[4] = {1, 2, 3, 4};
    lb_session *dup[2] = {a, a};
    CHECK(lb_batch_eval(b, dup, 2, t, NULL, NULL) == LB_ERR_INVALID_ARG);
    CHECK(strstr(lb_batch_last_error(b), "also session 0") != NULL);
    lb_session *two[2] = {a, c};
    CHECK(lb_batch_eval(b, two, 3, t, NULL, NULL) == LB_ERR_INVALID_ARG);
    int too_many[2] = {2, 3};   /* 5 tokens in a batch of 4 */
    CHECK(lb_batch_eval(b, two, 2, t, too_many, NULL) == LB_ERR_INVALID_ARG);
    int zero[2] = {1, 0};
    CHECK(lb_batch_eval(b, two, 2, t, zero, NULL) == LB_ERR_INVALID_ARG);
    lb_token bad[2] = {1, g_vocab};
    CHECK(lb_batch_eval(b, two, 2, bad, NULL, NULL) == LB_ERR_RANGE);
    CHECK(strstr(lb_batch_last_error(b), "batch index 1") != NULL);
    CHECK(lb_session_n_past(a) == 0 && lb_session_n_past(c) == 0);
    /* Fill c's context but one; two more tokens do not fit, and nobody advances. */
    lb_token fill[15];
    for (int i = 0; i < 15; i++)
        fill[i] = 1 + i;
    CHECK(lb_session_eval(c, fill, 15, NULL, false) == LB_OK);
    int one_two[2] = {1, 2};
    CHECK(lb_batch_eval(b, two, 2, t, one_two, NULL) == LB_ERR_RANGE);
    CHECK(strstr(lb_batch_last_error(b), "session 1") != NULL);
    CHECK(lb_session_n_past(a) == 0 && lb_session_n_past(c) == 15);
    int two_one[2] = {2, 1};
    CHECK(lb_batch_eval(b, two, 2, t, two_one, NULL) == LB_OK);
    CHECK(lb_session_n_past(a) == 2 && lb_session_n_past(c) == 16);
    lb_batch_free(b);
    lb_batch_free(NULL);
    lb_session_free(a);
    lb_session_free(c);
}

/* Prompts prefilled inside a batch, next to other sessions' decode rows,
 * give the logits each prompt gives alone. */
static void test_prompts_in_the_batch_bit_exact(void)
{
    lb_session *ref = new_session(256, 2, LB_KV_F16, LB_KV_F16);
    lb_session *s[3] = {new_session(256, 2, LB_KV_F16, LB_KV_Q4), new_session(256, 2, LB_KV_F16, LB_KV_F16),
                        new_session(256, 1, LB_KV_F16, LB_KV_F16)};
    lb_batch *b = new_batch(3, 64, 2);
    float *rows = malloc((size_t)3 * g_vocab * sizeof *rows);   /* [3][n_vocab] */
    float *want = malloc((size_t)g_vocab * sizeof *want);        /* [n_vocab] */
    /* session 1 is already decoding: give it a short history */
    lb_token hist[3] = {1, 50, 60};
    CHECK(lb_session_eval(s[1], hist, 3, NULL, false) == LB_OK);
    lb_token toks[64];
    int nt[3], total = 0;
    size_t n = 0;
    CHECK(lb_tokenize(g_model, k_prompts[1], strlen(k_prompts[1]), true, true, toks, 64, &n) == LB_OK);
    nt[0] = (int)n;
    total += nt[0];
    toks[total++] = 70;   /* session 1: one decode token */
    nt[1] = 1;
    CHECK(lb_tokenize(g_model, k_prompts[3], strlen(k_prompts[3]), true, true, toks + total, 64 - (size_t)total,
                      &n) == LB_OK);
    nt[2] = (int)n;
    total += nt[2];
    CHECK(lb_batch_eval(b, s, 3, toks, nt, rows) == LB_OK);
    CHECK(lb_session_n_past(s[0]) == nt[0] && lb_session_n_past(s[1]) == 4 && lb_session_n_past(s[2]) == nt[2]);

    lb_session_free(ref);
    ref = new_session(256, 2, LB_KV_F16, LB_KV_Q4);
    CHECK(lb_session_eval(ref, toks, nt[0], want, true) == LB_OK);
    CHECK(memcmp(want, rows, (size_t)g_vocab * sizeof *want) == 0);
    lb_session_free(ref);
    ref = new_session(256, 2, LB_KV_F16, LB_KV_F16);
    lb_token hist4[4] = {1, 50, 60, 70};
    CHECK(lb_session_eval(ref, hist4, 3, NULL, false) == LB_OK);
    CHECK(lb_session_eval(ref, hist4 + 3, 1, want, true) == LB_OK);
    CHECK(memcmp(want, rows + g_vocab, (size_t)g_vocab * sizeof *want) == 0);
    lb_session_reset(ref);
    CHECK(lb_session_eval(ref, toks + nt[0] + 1, nt[2], want, true) == LB_OK);
    CHECK(memcmp(want, rows + 2 * (size_t)g_vocab, (size_t)g_vocab * sizeof *want) == 0);
    /* and the three go on decoding together, matching the reference for session 2 */
    lb_token next[3] = {argmax(rows), argmax(rows + g_vocab), argmax(rows + 2 * (size_t)g_vocab)};
    CHECK(lb_batch_eval(b, s, 3, next, NULL, rows) == LB_OK);
    CHECK(lb_session_eval(ref, &next[2], 1, want, true) == LB_OK);
    CHECK(memcmp(want, rows + 2 * (size_t)g_vocab, (size_t)g_vocab * sizeof *want) == 0);
    free(rows);
    free(want);
    lb_batch_free(b);
    lb_session_free(ref);
    for (int i = 0; i < 3; i++)
        lb_session_free(s[i]);
}

typedef struct text {
    char buf[4096];
    size_t n;
} text;

static bool collect(const lb_token_event *ev, void *user)
{
    text *t = user;
    if (t->n + ev->piece_len < sizeof t->buf) {
        memcpy(t->buf + t->n, ev->piece, ev->piece_len);
        t->n += ev->piece_len;
    }
    return true;
}

/* Generations stepped together (started at different steps, ending at
 * different lengths) produce exactly lb_generate's text and statistics. */
static void test_stepped_generations_match_lb_generate(void)
{
    enum { N = N_PROMPTS };
    lb_gen_params gp = lb_gen_default_params();
    lb_session *s[N];
    lb__gen g[N];
    text got[N], want[N];
    lb_gen_stats want_st[N], got_st[N];
    memset(got, 0, sizeof got);
    memset(want, 0, sizeof want);
    for (int i = 0; i < N; i++) {
        s[i] = new_session(256, 2, LB_KV_F16, LB_KV_F16);
        gp.max_tokens = 20 + 7 * i;
        CHECK(lb_generate(s[i], k_prompts[i], &gp, collect, &want[i], &want_st[i]) == LB_OK);
    }
    lb_batch *b = new_batch(N, 0, 2);
    float *rows = malloc((size_t)N * g_vocab * sizeof *rows);   /* [N][n_vocab] */
    bool started[N] = {false}, ended[N] = {false};
    for (int step = 0, live = 1; live; step++) {
        live = 0;
        lb_session *sel[N];
        lb_token tok[N];
        int who[N], n = 0;
        for (int i = 0; i < N; i++) {
            if (!started[i] && step >= 3 * i) {   /* generation i joins at step 3i */
                gp.max_tokens = 20 + 7 * i;
                lb__gen_start(&g[i], s[i], k_prompts[i], &gp, collect, &got[i]);
                started[i] = true;
            }
            if (!started[i] || ended[i]) {
                live |= !started[i];
                continue;
            }
            if (g[i].done) {
                CHECK(lb__gen_end(&g[i], &got_st[i]) == LB_OK);
                ended[i] = true;
                continue;
            }
            live = 1;
            sel[n] = s[i];
            tok[n] = g[i].next;
            who[n++] = i;
        }
        if (!n)
            continue;
        lb_status st = lb_batch_eval(b, sel, n, tok, NULL, rows);
        CHECKF(st == LB_OK, "%s", lb_batch_last_error(b));
        for (int k = 0; k < n; k++)
            lb__gen_step(&g[who[k]], st, rows + (size_t)k * g_vocab);
    }
    for (int i = 0; i < N; i++) {
        CHECKF(got[i].n == want[i].n && memcmp(got[i].buf, want[i].buf, want[i].n) == 0,
               "generation %d: batched \"%.*s\" vs alone \"%.*s\"", i, (int)got[i].n, got[i].buf, (int)want[i].n,
               want[i].buf);
        CHECK(got_st[i].n_gen == want_st[i].n_gen && got_st[i].n_prompt == want_st[i].n_prompt);
        CHECK(strcmp(got_st[i].finish_reason, want_st[i].finish_reason) == 0);
        CHECK(want_st[i].n_gen > 0);
        lb_session_free(s[i]);
    }
    free(rows);
    lb_batch_free(b);
}

/* Cancelling between steps ends a generation as lb_generate's callback would. */
static void test_cancel_between_steps(void)
{
    lb_session *s = new_session(64, 1, LB_KV_F16, LB_KV_F16);
    lb__gen g;
    text t = {0};
    lb_gen_params gp = lb_gen_default_params();
    CHECK(lb__gen_start(&g, s, "Hello", &gp, collect, &t) == LB_OK);
    CHECK(!g.done);
    lb__gen_step(&g, LB_ERR_CANCELLED, NULL);
    CHECK(g.done);
    lb_gen_stats st;
    CHECK(lb__gen_end(&g, &st) == LB_ERR_CANCELLED);
    CHECK(strcmp(st.finish_reason, "cancelled") == 0 && st.n_gen == 1);
    lb_session_free(s);
}

/* The 4- and 8-row dot products the batched matrix products use give
 * exactly the single-row dot's bits and the scalar reference's, for every
 * type that has one, at several lengths, with the outputs strided. */
static void test_multirow_dots_equal_dot(void)
{
    const lb_kernel_set *sets[4];
    int n_sets = lb_kernels_variants(sets, 3);
    sets[n_sets++] = lb_kernels_scalar();
    const lb_kernel_set *ref = lb_kernels_scalar();
    int checked = 0;
    uint32_t seed = 12345;
    for (int si = 0; si < n_sets; si++)
        for (uint32_t t = 0; t < LB_TYPE_COUNT; t++) {
            for (int width = 4; width <= 8; width += 4) {
                lb_vec_dot4_fn fn = width == 4 ? sets[si]->vec_dot4[t] : sets[si]->vec_dot8[t];
                if (!fn)
                    continue;
                const lb_quant_traits *q = lb_quant_ref(t);
                const int64_t lens[] = {256, 512, 768, 1536, 2816};
                for (int li = 0; li < 5; li++) {
                    int64_t n = lens[li];
                    size_t wb = lb_type_row_bytes(t, n), ab = lb_type_row_bytes(q->act_type, n);
                    unsigned char *w = malloc(wb);       /* [wb] one weight row of random bytes */
                    char *act = malloc(8 * ab);          /* [8][ab] activation rows */
                    float *x = malloc((size_t)n * sizeof *x);   /* [n] */
                    for (size_t i = 0; i < wb; i++)
                        w[i] = (unsigned char)((seed = seed * 1664525u + 1013904223u) >> 24);
                    /* keep the f16 scales finite: random bytes can make NaN/inf, which compare unequal to themselves */
                    for (size_t i = 1; i < wb; i += 2)
                        if ((w[i] & 0x7c) == 0x7c)
                            w[i] &= 0x3f;
                    for (int j = 0; j < width; j++) {
                        for (int64_t i = 0; i < n; i++)
                            x[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
                        if (j == 5)   /* an all-zero row: its scale is 0 */
                            memset(x, 0, (size_t)n * sizeof *x);
                        sets[si]->quantize[q->act_type](x, act + (size_t)j * ab, n);
                    }
                    float one[8], sref[8], many[24];
                    for (int j = 0; j < width; j++) {
                        sets[si]->vec_dot[t](n, &one[j], w, act + (size_t)j * ab);
                        ref->vec_dot[t](n, &sref[j], w, act + (size_t)j * ab);
                    }
                    fn(n, many, 3, w, act, ab);
                    for (int j = 0; j < width; j++) {
                        CHECKF(memcmp(&one[j], &many[3 * j], sizeof(float)) == 0,
                               "%s dot%d type %u n %lld row %d: %g vs dot %g", sets[si]->isa, width, t, (long long)n,
                               j, many[3 * j], one[j]);
                        /* the 32-element families' SIMD dots sum in 8 lanes, within a
                         * tolerance of the scalar (test_kernels_q32.c); only the
                         * bit-exact types must match it here */
                        bool exact_type = q->act_type != LB_TYPE_A8_32;
                        CHECKF(!exact_type || memcmp(&sref[j], &many[3 * j], sizeof(float)) == 0,
                               "%s dot%d type %u n %lld row %d: %g vs scalar %g", sets[si]->isa, width, t,
                               (long long)n, j, many[3 * j], sref[j]);
                    }
                    checked++;
                    free(w);
                    free(act);
                    free(x);
                }
            }
        }
    printf("# dot4/dot8 kernels checked: %d (kernel, type, length) triples\n", checked);
}

/* lb_matmul of 1..17, 19, 21 and 23 rows (every mix of the 8-, 4- and
 * 1-row kernels, tails of 1..7 rows, and 8-row groups arranged once per
 * product) gives each row exactly the scalar reference's dot, on a weight
 * whose row count is not a whole number of tiles, with each SIMD kernel set
 * this machine has (each chooses its own groups and tails). */
static void test_matmul_rows_equal_scalar_dot(void)
{
    const uint32_t types[2] = {LB_TYPE_Q4_K, LB_TYPE_Q6_K};
    const int64_t rows = 37, cols = 768;
    const lb_kernel_set *ref = lb_kernels_scalar();
    uint32_t seed = 4242;
    lb_pool *pool = lb_pool_new(2);
    enum { NMAX = 23 };
    float *x = malloc(NMAX * cols * sizeof *x);   /* [NMAX][cols] */
    for (int64_t i = 0; i < NMAX * cols; i++)
        x[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (int ti = 0; ti < 2; ti++) {
        uint32_t t = types[ti];
        const lb_quant_traits *q = lb_quant_ref(t);
        size_t rb = lb_type_row_bytes(t, cols), ab = lb_type_row_bytes(q->act_type, cols);
        unsigned char *wd = malloc(rb * (size_t)rows);   /* [rows][rb] random weights with finite f16 scales */
        for (size_t b = 0; b < rb * (size_t)rows; b++)
            wd[b] = (unsigned char)((seed = seed * 1664525u + 1013904223u) >> 24);
        for (size_t b = 1; b < rb * (size_t)rows; b += 2)
            if ((wd[b] & 0x7c) == 0x7c)
                wd[b] &= 0x3f;
        lb_matw w = {wd, t, rows, cols, rb};
        void *scratch = lb_aligned_alloc(64, lb_matmul_scratch(t, cols, NMAX) + 64);
        char *act = malloc(ab);                                  /* [ab] one activation row */
        float *y = malloc(NMAX * rows * sizeof *y);              /* [NMAX][rows] */
        const int ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19, 21, 23};
        const lb_kernel_set *sets[4];
        const int n_sets = lb_kernels_variants(sets, 4);
        int bad = 0;
        for (int k = 0; k < (int)(sizeof ns / sizeof ns[0]) * n_sets; k++) {
            int n = ns[k % (int)(sizeof ns / sizeof ns[0])];
            lb__matmul_force_kernels(sets[k / (int)(sizeof ns / sizeof ns[0])]);
            lb_matmul(pool, &w, x, n, y, scratch);
            lb__matmul_force_kernels(NULL);
            for (int tr = 0; tr < n; tr++) {
                ref->quantize[q->act_type](x + tr * cols, act, cols);
                for (int64_t r = 0; r < rows; r++) {
                    float e;
                    ref->vec_dot[t](cols, &e, wd + (size_t)r * rb, act);
                    bad += memcmp(&e, &y[tr * rows + r], sizeof e) != 0;
                }
            }
            CHECKF(bad == 0, "type %u, %d rows, kernels %s: %d products differ from the scalar dot", t, n,
                   sets[k / (int)(sizeof ns / sizeof ns[0])]->isa, bad);
        }
        lb_aligned_free(scratch);
        free(act);
        free(y);
        free(wd);
    }
    lb_pool_free(pool);
    free(x);
}

/* lb_matmul_fused gives every weight's product exactly as lb_matmul does
 * alone: weights of two types sharing the activation format (one pool run),
 * a third of another format (the fallback), row counts that are not whole
 * tiles, and batches from one row to more than a decode step's. */
static void test_fused_matmul_equals_separate(void)
{
    const uint32_t types[3] = {LB_TYPE_Q4_K, LB_TYPE_Q6_K, LB_TYPE_Q8_0};
    const int64_t rows[3] = {40, 24, 8}, cols = 512;
    uint32_t seed = 777;
    void *wd[3];   /* [3][rows[i]][row_bytes] random weights with finite f16 scales */
    lb_matw w[3];
    for (int i = 0; i < 3; i++) {
        size_t rb = lb_type_row_bytes(types[i], cols);
        unsigned char *d = malloc(rb * (size_t)rows[i]);
        for (size_t b = 0; b < rb * (size_t)rows[i]; b++)
            d[b] = (unsigned char)((seed = seed * 1664525u + 1013904223u) >> 24);
        for (size_t b = 1; b < rb * (size_t)rows[i]; b += 2)
            if ((d[b] & 0x7c) == 0x7c)
                d[b] &= 0x3f;
        wd[i] = d;
        w[i] = (lb_matw){d, types[i], rows[i], cols, rb};
    }
    enum { NMAX = 23 };
    float *x = malloc(NMAX * cols * sizeof *x);   /* [NMAX][cols] */
    for (int64_t i = 0; i < NMAX * cols; i++)
        x[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    size_t sb = 0;
    for (int i = 0; i < 3; i++)
        if (lb_matmul_scratch(types[i], cols, NMAX) > sb)
            sb = lb_matmul_scratch(types[i], cols, NMAX);
    void *scratch = lb_aligned_alloc(64, sb + 64);
    float *sep[3], *fus[3];   /* [3][NMAX][rows[i]] */
    for (int i = 0; i < 3; i++) {
        sep[i] = malloc(NMAX * rows[i] * sizeof(float));
        fus[i] = malloc(NMAX * rows[i] * sizeof(float));
    }
    lb_pool *pool = lb_pool_new(2);
    const int ns[] = {1, 3, 8, NMAX};
    for (int k = 0; k < 4; k++)
        for (int nw = 1; nw <= 3; nw++) {
            int n = ns[k];
            for (int i = 0; i < nw; i++) {
                lb_matmul(pool, &w[i], x, n, sep[i], scratch);
                memset(fus[i], 0xff, (size_t)n * rows[i] * sizeof(float));
            }
            lb_matmul_fused(pool, w, nw, x, n, fus, scratch);
            for (int i = 0; i < nw; i++)
                CHECKF(memcmp(sep[i], fus[i], (size_t)n * rows[i] * sizeof(float)) == 0,
                       "n %d, %d weights: weight %d differs", n, nw, i);
        }
    lb_pool_free(pool);
    for (int i = 0; i < 3; i++) {
        free(wd[i]);
        free(sep[i]);
        free(fus[i]);
    }
    lb_aligned_free(scratch);
    free(x);
}

/* The prompt cache's prefix sharing (lb__session_share_prefix): a session
 * started from another's first k positions (copied), or from its own (the
 * rest dropped), then fed the remaining tokens gives the logits of a fresh
 * session fed the first k tokens and then the rest, bit for bit, whatever
 * its cache held before; caches that cannot share say so with 0. */
static void test_shared_prefix_bit_exact(void)
{
    const char *prompt = k_prompts[3];
    lb_token toks[256];
    size_t n = 0;
    CHECK(lb_tokenize(g_model, prompt, strlen(prompt), true, true, toks, 256, &n) == LB_OK);
    const int k = (int)n - 3;   /* shared; the last 3 are fed after */
    float *want = malloc((size_t)g_vocab * sizeof *want), *got = malloc((size_t)g_vocab * sizeof *got);
    lb_session *fresh = new_session(128, 2, LB_KV_F16, LB_KV_F16);
    lb_session *src = new_session(128, 2, LB_KV_F16, LB_KV_F16);
    lb_session *dst = new_session(128, 2, LB_KV_F16, LB_KV_F16);
    CHECK(lb_session_eval(fresh, toks, k, NULL, true) == LB_OK);
    CHECK(lb_session_eval(fresh, toks + k, (int)n - k, want, true) == LB_OK);

    /* src: the whole prompt and some generated tokens; dst: another prompt first (its cache not empty) */
    CHECK(lb_session_eval(src, toks, (int)n, got, true) == LB_OK);
    for (int t = 0; t < 5; t++) {
        lb_token next = argmax(got);
        CHECK(lb_session_eval(src, &next, 1, got, true) == LB_OK);
    }
    prefill(dst, 1, got);
    CHECK(lb__session_share_prefix(dst, src, k) == k);
    CHECK(lb_session_n_past(dst) == k);
    CHECK(lb_session_eval(dst, toks + k, (int)n - k, got, true) == LB_OK);
    CHECK(memcmp(got, want, (size_t)g_vocab * sizeof *got) == 0);

    /* its own prefix: src keeps k of its n + 5 positions */
    CHECK(lb__session_share_prefix(src, src, k) == k);
    CHECK(lb_session_eval(src, toks + k, (int)n - k, got, true) == LB_OK);
    CHECK(memcmp(got, want, (size_t)g_vocab * sizeof *got) == 0);

    /* through a buffer (the server's prompt store): the first k of n saved positions, loaded into dst */
    prefill(dst, 2, got);
    const size_t bytes = lb__session_prefix_bytes(src, (int)n);
    CHECK(bytes > 0 && lb__session_prefix_bytes(src, (int)n + 1) == 0);
    void *buf = malloc(bytes);
    CHECK(lb__session_save_prefix(src, (int)n, buf));
    CHECK(lb__session_load_prefix(dst, buf, (int)n, k) == k);
    CHECK(lb_session_n_past(dst) == k);
    CHECK(lb_session_eval(dst, toks + k, (int)n - k, got, true) == LB_OK);
    CHECK(memcmp(got, want, (size_t)g_vocab * sizeof *got) == 0);
    CHECK(lb__session_load_prefix(dst, buf, k, (int)n) == 0);   /* more than were saved */
    CHECK(lb_session_n_past(dst) == 0);
    free(buf);

    /* more than src holds, and caches that cannot share: nothing, and an empty context */
    CHECK(lb__session_share_prefix(dst, src, (int)n + 1) == 0);
    CHECK(lb_session_n_past(dst) == 0);
    lb_session *q = new_session(128, 2, LB_KV_Q8, LB_KV_Q8);
    prefill(q, 3, got);
    CHECK(lb__session_share_prefix(q, src, k) == 0);
    CHECK(lb_session_n_past(q) == 0);
    CHECK(lb__session_share_prefix(dst, q, 1) == 0);
    CHECK(lb__session_prefix_bytes(q, 1) == 0 && !lb__session_save_prefix(q, 1, got));
    lb_session_free(q);
    lb_session_free(fresh);
    lb_session_free(src);
    lb_session_free(dst);
    free(want);
    free(got);
}

int main(void)
{
    if (!(g_model = check_load_model("models/techdocs-28M-Q4_K_M.gguf", &g_vocab)))
        return 1;
    RUN(test_multirow_dots_equal_dot);
    RUN(test_matmul_rows_equal_scalar_dot);
    RUN(test_fused_matmul_equals_separate);
    RUN(test_batched_logits_bit_exact_f16);
    RUN(test_batched_logits_bit_exact_eight);
    RUN(test_batched_logits_bit_exact_quantized_and_single_thread);
    RUN(test_batched_logits_bit_exact_sliding_window);
    RUN(test_batch_errors_leave_positions);
    RUN(test_prompts_in_the_batch_bit_exact);
    RUN(test_stepped_generations_match_lb_generate);
    RUN(test_cancel_between_steps);
    RUN(test_shared_prefix_bit_exact);
    lb_model_free(g_model);
    return check_done();
}
