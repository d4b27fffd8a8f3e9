/* Sessions sharing one KV pool: the budget is never exceeded, idle
 * sessions are reclaimed least recently used first and come back empty,
 * busy ones are not touched, a budget too small for one cache is refused,
 * timer reclaim, and 1000 create/evaluate/free cycles with flat memory. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "check.h"
#include "lowbit.h"

static lb_model *model;
static lb_token toks[64];

static lb_session_params params(lb_kv_pool *pool)
{
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = 256;
    sp.n_batch = 8;
    sp.n_threads = 1;
    sp.kv_type_k = sp.kv_type_v = LB_KV_Q4;
    sp.kv_pool = pool;
    return sp;
}

/* What one session's cache takes (the pool's unit here), as a pool sees it. */
static size_t unit(void)
{
    lb_kv_pool *p = NULL;
    CHECK(lb_kv_pool_new(SIZE_MAX / 2, &p) == LB_OK);   /* unbounded on 32- and 64-bit hosts */
    lb_session_params sp = params(p);
    lb_session *s = NULL;
    CHECK(lb_session_new(model, &sp, &s) == LB_OK);
    size_t u = lb_kv_pool_used(p);
    lb_session_free(s);
    CHECK(lb_kv_pool_used(p) == 0);
    lb_kv_pool_free(p);
    return u;
}

static void test_sixteen_sessions(void)
{
    const size_t u = unit();
    CHECK(u > 100000);
    lb_kv_pool *p = NULL;
    CHECK(lb_kv_pool_new(4 * u + u / 2, &p) == LB_OK);   /* room for 4 caches */
    lb_session *s[16] = {0};
    lb_session_params sp = params(p);
    float *logits = malloc(sizeof(float) * 4096 * 2);
    for (int i = 0; i < 16; i++) {
        CHECK(lb_session_new(model, &sp, &s[i]) == LB_OK);
        if (!s[i])
            return;
        CHECK(lb_session_eval(s[i], toks, 10 + i, NULL, false) == LB_OK);
        CHECK(lb_session_n_past(s[i]) == 10 + i);
        CHECKF(lb_kv_pool_used(p) <= 4 * u + u / 2, "used %zu", lb_kv_pool_used(p));
    }
    /* the four most recent kept their context; the others were reclaimed */
    for (int i = 0; i < 16; i++)
        CHECKF(lb_session_n_past(s[i]) == (i >= 12 ? 10 + i : 0), "session %d: n_past %d", i, lb_session_n_past(s[i]));
    /* a reclaimed session comes back empty and works: the same logits as a fresh session's */
    float *a = logits, *b = logits + 4096;
    CHECK(lb_session_eval(s[0], toks, 5, a, true) == LB_OK);
    CHECK(lb_session_n_past(s[0]) == 5);
    CHECK(lb_session_n_past(s[12]) == 0);   /* the least recently used went */
    lb_session_reset(s[13]);
    CHECK(lb_session_eval(s[13], toks, 5, b, true) == LB_OK);
    CHECK(!memcmp(a, b, sizeof(float) * 4096));
    /* generation through lb_generate in a pooled session */
    lb_gen_params g = lb_gen_default_params();
    g.max_tokens = 3;
    g.sampler.temperature = 0;
    lb_gen_stats st;
    CHECK(lb_generate(s[3], "The kernel", &g, NULL, NULL, &st) == LB_OK && st.n_gen == 3);
    CHECK(lb_kv_pool_used(p) <= 4 * u + u / 2);
    /* timer reclaim: nothing is idle for an hour; everything is idle for 0 ms */
    CHECK(lb_kv_pool_reclaim(p, 3600e3) == 0);
    const size_t used = lb_kv_pool_used(p);
    CHECK(used == 4 * u);
    CHECK(lb_kv_pool_reclaim(p, 0) == used);
    CHECK(lb_kv_pool_used(p) == 0);
    for (int i = 0; i < 16; i++) {
        CHECK(lb_session_n_past(s[i]) == 0);
        lb_session_free(s[i]);
    }
    lb_kv_pool_free(p);
    free(logits);
}

static void test_refusal(void)
{
    const size_t u = unit();
    lb_kv_pool *p = NULL;
    CHECK(lb_kv_pool_new(0, &p) == LB_ERR_INVALID_ARG && !p);
    CHECK(lb_kv_pool_new(u - 1, &p) == LB_OK);
    lb_session_params sp = params(p);
    lb_session *s = NULL;
    CHECK(lb_session_new(model, &sp, &s) == LB_ERR_NOMEM && !s);
    CHECK(strstr(lb_model_last_error(model), "pool") != NULL);
    CHECK(lb_kv_pool_used(p) == 0);
    lb_kv_pool_free(p);
    /* room for one: a second session cannot take the cache of a busy one,
     * but takes an idle one's */
    CHECK(lb_kv_pool_new(u + u / 2, &p) == LB_OK);
    sp = params(p);
    lb_session *a = NULL, *b = NULL;
    CHECK(lb_session_new(model, &sp, &a) == LB_OK);
    CHECK(lb_session_eval(a, toks, 4, NULL, false) == LB_OK);
    CHECK(lb_session_new(model, &sp, &b) == LB_OK);   /* a was idle: reclaimed */
    CHECK(lb_session_n_past(a) == 0);
    lb_session_free(a);
    lb_session_free(b);
    CHECK(lb_kv_pool_used(p) == 0);
    lb_kv_pool_free(p);
    lb_kv_pool_reclaim(NULL, 0);
    CHECK(lb_kv_pool_used(NULL) == 0);
    lb_kv_pool_free(NULL);
}

/* 1000 cycles over 16 pooled sessions: create, evaluate, free; memory flat. */
static void test_cycles(void)
{
    const size_t u = unit();
    lb_kv_pool *p = NULL;
    CHECK(lb_kv_pool_new(8 * u, &p) == LB_OK);
    lb_session *s[16] = {0};
    lb_session_params sp = params(p);
    size_t heap_early = 0;
    (void)heap_early;   /* read only where glibc's mallinfo2 exists */
    int bad = 0;
    for (int c = 0; c < 1000; c++) {
        const int i = c % 16;
        if (s[i])
            lb_session_free(s[i]);
        s[i] = NULL;
        if (lb_session_new(model, &sp, &s[i]) || lb_session_eval(s[i], toks + c % 7, 2, NULL, false))
            bad++;
        if (lb_kv_pool_used(p) > 8 * u)
            bad++;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
        if (c == 99)
            heap_early = mallinfo2().uordblks + mallinfo2().hblkhd;
#endif
    }
    CHECKF(bad == 0, "%d failed cycles", bad);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    const size_t heap_late = mallinfo2().uordblks + mallinfo2().hblkhd;
    if (heap_early)   /* 0 under sanitizers, which replace malloc (ASan checks leaks there) */
        CHECKF(heap_late <= heap_early + 65536 && heap_late + 65536 >= heap_early,
               "heap after 100 cycles %zu, after 1000 %zu", heap_early, heap_late);
    printf("  1000 cycles: heap %zu -> %zu bytes, pool %zu of %zu\n", heap_early, heap_late, lb_kv_pool_used(p), 8 * u);
#endif
    for (int i = 0; i < 16; i++)
        lb_session_free(s[i]);
    CHECK(lb_kv_pool_used(p) == 0);
    lb_kv_pool_free(p);
}

int main(void)
{
    if (lb_model_load(check_shared("models/techdocs-28M-Q4_K_M.gguf"), NULL, &model) != LB_OK) {
        CHECKF(0, "cannot load the model: %s", lb_last_load_error());
        return check_done();
    }
    size_t n = 0;
    CHECK(lb_tokenize(model, "The kernel scheduler decides which task runs next on each CPU, and for how long.",
                      81, true, false, toks, 64, &n) == LB_OK);
    for (size_t i = n; i < 64; i++)
        toks[i] = toks[i % n];
    RUN(test_sixteen_sessions);
    RUN(test_refusal);
    RUN(test_cycles);
    lb_model_free(model);
    return check_done();
}
