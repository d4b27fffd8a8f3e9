/* The server's prompt store (src/server/prompt_store.c): what it keeps,
 * drops and evicts within its budget, and that a prefix loaded from it gives
 * a fresh session's logits bit for bit.  The store is server code, outside
 * liblowbit, but needs nothing of the server: its one file is compiled in
 * here, so this test also runs under ASan and in the wasm build. */
#include "check.h"
#include "check_model.h"
#include "generate/session.h"
#include "lowbit.h"
#include "server/prompt_store.c"

static lb_model *g_model;
static int g_vocab;

static lb_session *new_session(lb_kv_type t)
{
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = 64;
    sp.n_threads = 1;
    sp.kv_type_k = t;
    sp.kv_type_v = t;
    lb_session *s = NULL;
    CHECK(lb_session_new(g_model, &sp, &s) == LB_OK);
    return s;
}

/* n tokens of text (at least 12 are asked for below) evaluated into a new session. */
static lb_session *filled(const char *text, lb_token *toks, int n)
{
    size_t got = 0;
    CHECK(lb_tokenize(g_model, text, strlen(text), true, true, toks, 64, &got) == LB_OK);
    CHECK((int)got >= n);
    lb_session *s = new_session(LB_KV_F16);
    CHECK(lb_session_eval(s, toks, n, NULL, true) == LB_OK);
    return s;
}

static void usage_is(const lb_prompt_store *ps, int entries, size_t bytes)
{
    int e;
    size_t b;
    lb_prompt_store_usage(ps, &e, &b);
    CHECKF(e == entries && b == bytes, "%d entries, %zu bytes; wanted %d, %zu", e, b, entries, bytes);
}

static void test_keep_drop_evict_load(void)
{
    enum { N = 12 };
    lb_token a[64], q[64], r[64];
    lb_session *sa = filled("The kernel module loader reads the configuration file and then exits", a, N);
    lb_session *sq = filled("To configure the server, edit the file and restart the daemon now", q, N);
    lb_session *sr = filled("A cache stores recently used data so that the next access is fast", r, N);
    const size_t pos = lb__session_prefix_bytes(sa, 1);   /* bytes a position */
    CHECK(pos > 0 && lb__session_prefix_bytes(sa, N) == N * pos);
    lb_prompt_store *ps = lb_prompt_store_new(2 * N * pos + N * pos / 2);   /* two entries of N, not three */

    lb_prompt_store_put(ps, sa, a, 10);
    usage_is(ps, 1, 10 * pos);
    lb_prompt_store_put(ps, sa, a, 10);   /* already held */
    lb_prompt_store_put(ps, sa, a, 6);    /* held as the beginning of the entry */
    usage_is(ps, 1, 10 * pos);
    lb_prompt_store_put(ps, sa, a, N);    /* supersedes the entry of 10 */
    usage_is(ps, 1, N * pos);
    lb_prompt_entry *e = NULL;
    CHECK(lb_prompt_store_match(ps, a, N, &e) == N && e);
    CHECK(lb_prompt_store_match(ps, a, 5, &e) == 5 && e);

    lb_prompt_store_put(ps, sq, q, N);
    usage_is(ps, 2, 2 * N * pos);
    CHECK(lb_prompt_store_match(ps, q, N, &e) == N);
    lb_prompt_store_put(ps, sr, r, N);    /* over the budget: the least recently used (a's) goes */
    usage_is(ps, 2, 2 * N * pos);
    CHECK(lb_prompt_store_match(ps, a, N, &e) < N);
    CHECK(lb_prompt_store_match(ps, r, N, &e) == N);

    /* q's first 8 positions loaded into a session that held something else, then the rest evaluated: the logits
     * of a session fed the same 12 tokens as 8 + 4 */
    float *want = malloc((size_t)g_vocab * sizeof *want), *got = malloc((size_t)g_vocab * sizeof *got);
    lb_session *ref = new_session(LB_KV_F16);
    CHECK(lb_session_eval(ref, q, 8, NULL, true) == LB_OK);
    CHECK(lb_session_eval(ref, q + 8, N - 8, want, true) == LB_OK);
    lb_session *d = filled("Memory is allocated once at start-up because the allocator is slow", r, N);
    CHECK(lb_prompt_store_match(ps, q, N, &e) == N);
    CHECK(lb_prompt_store_load(ps, e, d, 8) == 8);
    CHECK(lb_session_n_past(d) == 8);
    CHECK(lb_session_eval(d, q + 8, N - 8, got, true) == LB_OK);
    CHECK(memcmp(got, want, (size_t)g_vocab * sizeof *got) == 0);
    CHECK(lb_prompt_store_load(ps, e, d, N + 1) == 0 && lb_session_n_past(d) == 0);   /* more than it holds */

    /* what cannot be kept: larger than the budget, a quantized cache's positions */
    lb_prompt_store *tiny = lb_prompt_store_new(pos);
    lb_prompt_store_put(tiny, sa, a, 2);
    usage_is(tiny, 0, 0);
    lb_session *quant = new_session(LB_KV_Q8);
    CHECK(lb_session_eval(quant, a, 4, NULL, true) == LB_OK);
    lb_prompt_store_put(ps, quant, a, 4);
    usage_is(ps, 2, 2 * N * pos);
    lb_prompt_store_free(tiny);
    lb_prompt_store_free(ps);
    lb_prompt_store_free(NULL);
    free(want);
    free(got);
    lb_session_free(quant);
    lb_session_free(d);
    lb_session_free(ref);
    lb_session_free(sa);
    lb_session_free(sq);
    lb_session_free(sr);
}

int main(void)
{
    if (!(g_model = check_load_model("models/techdocs-28M-Q4_K_M.gguf", &g_vocab)))
        return 1;
    RUN(test_keep_drop_evict_load);
    lb_model_free(g_model);
    return check_done();
}
