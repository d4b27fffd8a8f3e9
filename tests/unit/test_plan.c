/* Tests of the memory planner: its figures against what a session really
 * allocates, header-prefix handling, monotonicity and the recommendation. */
#include <stdint.h>
#include <string.h>

#if defined(__GLIBC__) && !defined(__EMSCRIPTEN__)
#include <malloc.h>
#define HAVE_MALLINFO2 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#undef HAVE_MALLINFO2   /* ASan's allocator does not report through mallinfo2 */
#endif

#include "check.h"
#include "generate/session.h"
#include "kv/kv_types.h"
#include "lowbit.h"
#include "model/forward.h"
#include "model/model.h"

#define MODEL "models/techdocs-28M-Q4_K_M.gguf"
#define MIB (1024u * 1024u)

static unsigned char *read_path(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    rewind(f);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b)
        *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static lb_model *load(void)
{
    lb_model_params mp = lb_model_default_params();
    lb_model *m = NULL;
    lb_status st = lb_model_load(check_shared(MODEL), &mp, &m);
    CHECKF(st == LB_OK, "%s", lb_last_load_error());
    return m;
}

#ifdef HAVE_MALLINFO2
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
#endif

/* A session created with the planned context and types allocates what the
 * plan says (cache + scratch) within 5%, and one more token would not fit. */
static void test_plan_matches_session(void)
{
    lb_model *m = load();
    if (!m)
        return;
    const size_t budget = 48 * MIB;
    lb_plan_params pp = lb_plan_default_params();
    pp.n_threads = 2;
    lb_plan_result r;
    CHECK(lb_plan_model(m, budget, &pp, &r) == LB_OK);
    CHECK(r.n_threads == 2 && r.n_ctx_train == m->hp.n_ctx_train);
    CHECK(r.fixed_bytes == r.file_bytes + r.model_bytes + r.overhead_bytes);
    static const lb_kv_type pairs[][2] = {
        {LB_KV_F16, LB_KV_F16}, {LB_KV_Q8, LB_KV_Q8}, {LB_KV_Q4, LB_KV_Q4},
        {LB_KV_Q3, LB_KV_Q3},   {LB_KV_Q2, LB_KV_Q2}, {LB_KV_F16, LB_KV_Q4},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        lb_kv_type k = pairs[i][0], v = pairs[i][1];
        const lb_plan_entry *e = &r.pairs[k * LB_KV_TYPE_COUNT + v];
        CHECK(e->kv_k == k && e->kv_v == v && e->supported);
        CHECKF(e->n_ctx > 1000, "%s/%s: n_ctx %d", lb_kv_type_name(k), lb_kv_type_name(v), e->n_ctx);
        CHECK(e->total_bytes <= budget);
        CHECK(e->kv_bytes == lb_kv_estimate_bytes(&m->hp, e->n_ctx, k, v, 2));
        CHECK(e->scratch_bytes == lb_forward_bytes(&m->hp, e->n_ctx < 512 ? e->n_ctx : 512));
        CHECK(e->bytes_per_token == lb_kv_bytes_per_token(&m->hp, k, v));
        /* The next token (and the next whole group) would not fit. */
        for (int more = 1; more <= LB_KV_GROUP; more += LB_KV_GROUP - 1) {
            int n1 = e->n_ctx + more;
            uint64_t t1 = r.fixed_bytes + lb_kv_estimate_bytes(&m->hp, n1, k, v, 2) +
                          lb_forward_bytes(&m->hp, n1 < 512 ? n1 : 512);
            CHECKF(t1 > budget, "%s/%s: n_ctx %d + %d still fits", lb_kv_type_name(k), lb_kv_type_name(v),
                   e->n_ctx, more);
        }

        lb_session_params sp = lb_session_default_params();
        sp.n_ctx = e->n_ctx;
        sp.n_threads = 2;
        sp.kv_type_k = k;
        sp.kv_type_v = v;
        lb_session *s = NULL;
#ifdef HAVE_MALLINFO2
        size_t before = heap_in_use();
#endif
        lb_status st = lb_session_new(m, &sp, &s);
        CHECKF(st == LB_OK, "%s", lb_model_last_error(m));
#ifdef HAVE_MALLINFO2
        if (s) {
            double got = (double)(heap_in_use() - before);
            double want = (double)(e->kv_bytes + e->scratch_bytes);
            CHECKF(got > 0.95 * want && got < 1.05 * want, "%s/%s n_ctx %d: allocated %.0f, planned %.0f",
                   lb_kv_type_name(k), lb_kv_type_name(v), e->n_ctx, got, want);
        }
#endif
        if (s) {
            /* It runs at a position near the end of the planned context. */
            lb_token t[2] = {1, 2};
            CHECK(lb_session_eval(s, t, 2, NULL, false) == LB_OK);
        }
        lb_session_free(s);
    }
    lb_model_free(m);
}

/* Planning from a prefix: too short asks for more; enough gives the same plan as the loaded model. */
static void test_header_prefix(void)
{
    size_t n = 0;
    unsigned char *img = read_path(check_shared(MODEL), &n);
    CHECK(img != NULL);
    lb_model *m = load();
    if (!img || !m) {
        free(img);
        lb_model_free(m);
        return;
    }
    lb_plan_params pp = lb_plan_default_params();
    pp.n_threads = 2;
    lb_plan_result whole, loaded, r;
    CHECKF(lb_plan_from_gguf(img, n, 64 * MIB, &pp, &whole) == LB_OK, "%s", whole.error);
    CHECK(lb_plan_model(m, 64 * MIB, &pp, &loaded) == LB_OK);
    CHECK(whole.weight_bytes == loaded.weight_bytes && whole.weight_bytes == m->weight_bytes);
    CHECK(whole.file_bytes <= n && n - whole.file_bytes < 64);
    for (int i = 0; i < LB_PLAN_N_PAIRS; i++) {
        int a = whole.pairs[i].n_ctx, b = loaded.pairs[i].n_ctx;
        CHECKF(a >= b && a - b <= 1, "pair %d: %d vs %d", i, a, b);
    }

    uint64_t doff = lb_gguf_data_offset(m->gguf);
    /* Too short: LB_ERR_RANGE with a size beyond the prefix, which then suffices. */
    size_t shorts[] = {0, 3, 100, (size_t)doff / 2, (size_t)(doff - lb_gguf_alignment(m->gguf))};
    for (size_t i = 0; i < sizeof shorts / sizeof shorts[0]; i++) {
        lb_status st = lb_plan_from_gguf(img, shorts[i], 64 * MIB, &pp, &r);
        CHECKF(st == LB_ERR_RANGE && r.bytes_needed > shorts[i], "%zu bytes: status %d, need %llu", shorts[i], (int)st,
               (unsigned long long)r.bytes_needed);
        CHECK(r.error[0] != '\0');
        size_t len = r.bytes_needed < n ? (size_t)r.bytes_needed : n;
        st = lb_plan_from_gguf(img, len, 64 * MIB, &pp, &r);
        CHECKF(st == LB_OK, "%zu bytes: %s", len, r.error);
        CHECK(r.pairs[LB_KV_TYPE_COUNT * LB_KV_Q4 + LB_KV_Q4].n_ctx == whole.pairs[LB_KV_TYPE_COUNT * LB_KV_Q4 + LB_KV_Q4].n_ctx);
    }
    /* Exactly the header (no tensor data at all) is enough. */
    CHECKF(lb_plan_from_gguf(img, (size_t)doff, 64 * MIB, &pp, &r) == LB_OK, "%s", r.error);
    CHECK(memcmp(r.pairs, whole.pairs, sizeof r.pairs) == 0 && r.recommended == whole.recommended);

    /* Not a GGUF file: a format error with a message, never a request for more. */
    unsigned char junk[4096];
    memset(junk, 'x', sizeof junk);
    CHECK(lb_plan_from_gguf(junk, sizeof junk, 64 * MIB, &pp, &r) == LB_ERR_FORMAT && r.error[0]);
    CHECK(lb_plan_from_gguf(NULL, 10, 64 * MIB, &pp, &r) == LB_ERR_INVALID_ARG);
    lb_plan_params neg = pp;
    neg.min_ctx = -1;
    CHECK(lb_plan_from_gguf(img, n, 64 * MIB, &neg, &r) == LB_ERR_INVALID_ARG);
    free(img);
    lb_model_free(m);
}

/* More memory never gives less context, nor do fewer bits. */
static void test_monotonic(void)
{
    lb_model *m = load();
    if (!m)
        return;
    lb_plan_params pp = lb_plan_default_params();
    pp.n_threads = 2;
    lb_plan_result prev, r;
    memset(&prev, 0, sizeof prev);
    int bad = 0;
    for (size_t budget = 16 * MIB; budget <= 512 * MIB && bad < 5; budget += 7 * MIB) {
        CHECK(lb_plan_model(m, budget, &pp, &r) == LB_OK);
        for (int i = 0; i < LB_PLAN_N_PAIRS; i++) {
            if (r.pairs[i].n_ctx < prev.pairs[i].n_ctx) {
                bad++;
                CHECKF(0, "budget %zu pair %d: %d < %d", budget, i, r.pairs[i].n_ctx, prev.pairs[i].n_ctx);
            }
            if (r.pairs[i].n_ctx)
                CHECK(r.pairs[i].total_bytes <= budget);
        }
        /* Types in enum order have fewer and fewer bits.  Below a few
         * groups a quantized cache costs more than F16 (its F16 residual
         * window and scratch), so the order holds from 1K tokens on. */
        for (int k = 0; k < LB_KV_TYPE_COUNT; k++)
            for (int v = 0; v < LB_KV_TYPE_COUNT; v++) {
                int c = r.pairs[k * LB_KV_TYPE_COUNT + v].n_ctx;
                if (c < 1024)
                    continue;
                if (v + 1 < LB_KV_TYPE_COUNT && r.pairs[k * LB_KV_TYPE_COUNT + v + 1].n_ctx < c) {
                    bad++;
                    CHECKF(0, "budget %zu: V %d -> %d shrinks the context", budget, v, v + 1);
                }
                if (k + 1 < LB_KV_TYPE_COUNT && r.pairs[(k + 1) * LB_KV_TYPE_COUNT + v].n_ctx < c) {
                    bad++;
                    CHECKF(0, "budget %zu: K %d -> %d shrinks the context", budget, k, k + 1);
                }
            }
        prev = r;
    }
    /* At 512 MiB this small model reaches far: Q2/Q2 over 6x F16/F16 is not
     * expected (fixed costs), but Q4/Q4 clearly beats F16/F16. */
    CHECK(r.pairs[LB_KV_TYPE_COUNT * LB_KV_Q4 + LB_KV_Q4].n_ctx > 3 * r.pairs[0].n_ctx);
    lb_model_free(m);
}

/* The recommendation: the most precise pair reaching min_ctx, else the longest. */
static void test_recommendation(void)
{
    lb_model *m = load();
    if (!m)
        return;
    lb_plan_params pp = lb_plan_default_params();
    pp.n_threads = 2;
    lb_plan_result r;
    pp.min_ctx = 256;
    CHECK(lb_plan_model(m, 64 * MIB, &pp, &r) == LB_OK);
    CHECK(r.recommended == 0);   /* f16/f16 */
    pp.min_ctx = r.pairs[0].n_ctx + 1;   /* just past F16/F16: f16/q8 ranks next */
    CHECK(lb_plan_model(m, 64 * MIB, &pp, &r) == LB_OK);
    CHECKF(r.recommended == LB_KV_TYPE_COUNT * LB_KV_F16 + LB_KV_Q8, "recommended %d", r.recommended);
    pp.min_ctx = r.pairs[LB_KV_TYPE_COUNT * LB_KV_Q8 + LB_KV_Q8].n_ctx + 1;
    CHECK(lb_plan_model(m, 64 * MIB, &pp, &r) == LB_OK);
    CHECK(r.recommended >= 0 && r.pairs[r.recommended].n_ctx >= pp.min_ctx);
    CHECK(lb_kv_type_bits(r.pairs[r.recommended].kv_k) < 8 || lb_kv_type_bits(r.pairs[r.recommended].kv_v) < 8);
    pp.min_ctx = LB_PLAN_MAX_CTX;   /* nothing reaches it: the longest context */
    CHECK(lb_plan_model(m, 64 * MIB, &pp, &r) == LB_OK);
    CHECK(r.recommended == LB_KV_TYPE_COUNT * LB_KV_Q2 + LB_KV_Q2);
    /* A budget below the weights: nothing fits. */
    CHECK(lb_plan_model(m, 8 * MIB, &pp, &r) == LB_OK);
    CHECK(r.recommended == -1 && r.pairs[0].n_ctx == 0);
    /* max_ctx caps every pair. */
    pp.min_ctx = 0;
    pp.max_ctx = 300;
    CHECK(lb_plan_model(m, 512 * MIB, &pp, &r) == LB_OK);
    CHECK(r.pairs[0].n_ctx == 300 && r.pairs[LB_PLAN_N_PAIRS - 1].n_ctx == 300 && r.min_ctx == 300);
    CHECK(r.recommended == 0);
    lb_model_free(m);
}

/* A model whose head_dim the quantized cache cannot take: only F16/F16 is planned. */
static void test_unsupported_pairs(void)
{
    size_t n = 0;
    unsigned char *img = read_path(check_shared("models/llama-2-tiny-random.gguf"), &n);
    CHECK(img != NULL);
    if (!img)
        return;
    lb_plan_params pp = lb_plan_default_params();
    pp.n_threads = 1;
    pp.max_ctx = 4096;
    lb_plan_result r;
    CHECKF(lb_plan_from_gguf(img, n, 64 * MIB, &pp, &r) == LB_OK, "%s", r.error);
    CHECK(r.pairs[0].supported && r.pairs[0].n_ctx == 4096);
    CHECK(!r.pairs[LB_KV_TYPE_COUNT * LB_KV_Q4 + LB_KV_Q4].supported && r.pairs[LB_KV_TYPE_COUNT * LB_KV_Q4 + LB_KV_Q4].n_ctx == 0);
    CHECK(r.recommended == 0);
    free(img);
}

int main(void)
{
    RUN(test_plan_matches_session);
    RUN(test_header_prefix);
    RUN(test_monotonic);
    RUN(test_recommendation);
    RUN(test_unsupported_pairs);
    return check_done();
}
