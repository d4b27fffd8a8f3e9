/* Batched decoding: one forward pass over several sessions at once, each
 * with its next token or a chunk of its prompt (lb_batch_eval in lowbit.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "session.h"

struct lb_batch {
    lb_model *model;
    lb_batch_params p;
    lb_pool *pool;
    lb_forward *fwd;          /* scratch for p.max_tokens rows */
    lb_fwd_seq *seq;          /* [max_sessions] the sessions of the current step */
    char err[LB_ERR_MSG_MAX];
};

lb_batch_params lb_batch_default_params(void)
{
    lb_batch_params p;
    memset(&p, 0, sizeof p);
    p.max_sessions = 8;
    return p;
}

lb_status lb_batch_new(lb_model *m, const lb_batch_params *pp, lb_batch **out)
{
    lb_batch_params p = pp ? *pp : lb_batch_default_params();
    if (!m || !out || p.max_sessions < 1 || p.max_tokens < 0 || p.n_threads < 0)
        return LB_ERR_INVALID_ARG;
    if (p.max_tokens == 0)
        p.max_tokens = p.max_sessions;
    if (p.max_tokens < p.max_sessions) {
        snprintf(m->err, sizeof m->err, "a batch of %d sessions needs room for at least as many tokens (got %d)",
                 p.max_sessions, p.max_tokens);
        return LB_ERR_INVALID_ARG;
    }
    lb_batch *b = calloc(1, sizeof *b);
    if (!b)
        return LB_ERR_NOMEM;
    b->model = m;
    b->p = p;
    b->seq = calloc((size_t)p.max_sessions, sizeof *b->seq);
    lb_err err = {0};
    lb_status st = LB_OK;
    if (!b->seq)
        st = lb__errf(&err, LB_ERR_NOMEM, "cannot allocate a batch of %d sessions", p.max_sessions);
    if (!st && !(b->pool = lb_pool_new(p.n_threads ? p.n_threads : lb_cpu_count())))
        st = lb__errf(&err, LB_ERR_NOMEM, "cannot start %d threads", p.n_threads);
    if (!st)
        st = lb_forward_new(m, p.max_tokens, &b->fwd, &err);
    if (st) {
        snprintf(m->err, sizeof m->err, "%s", err.msg);
        lb_batch_free(b);
        return st;
    }
    *out = b;
    return LB_OK;
}

void lb_batch_free(lb_batch *b)
{
    if (!b)
        return;
    lb_forward_free(b->fwd);
    lb_pool_free(b->pool);
    free(b->seq);
    free(b);
}

const char *lb_batch_last_error(const lb_batch *b) { return b ? b->err : ""; }

lb_status lb_batch_eval(lb_batch *b, lb_session *const *sessions, int n, const lb_token *tokens, const int *n_tokens,
                        float *logits)
{
    if (!b)
        return LB_ERR_INVALID_ARG;
    b->err[0] = '\0';
    if (!sessions || !tokens || n < 1 || n > b->p.max_sessions) {
        snprintf(b->err, sizeof b->err, "a batch of %d sessions (allowed 1..%d)", n, b->p.max_sessions);
        return LB_ERR_INVALID_ARG;
    }
    /* The smallest thread count among the sessions bounds the pool their
     * caches' per-thread scratch can serve. */
    int min_threads = 1 << 30, total = 0;
    for (int i = 0; i < n; i++) {
        lb_session *s = sessions[i];
        int k = n_tokens ? n_tokens[i] : 1;
        if (!s || s->model != b->model) {
            snprintf(b->err, sizeof b->err, "session %d of the batch is %s", i, s ? "of another model" : "NULL");
            return LB_ERR_INVALID_ARG;
        }
        /* Two sequences writing one cache would race; the quadratic scan is nothing next to a forward pass. */
        for (int j = 0; j < i; j++)
            if (sessions[j] == s) {
                snprintf(b->err, sizeof b->err, "session %d of the batch is also session %d", i, j);
                return LB_ERR_INVALID_ARG;
            }
        if (k < 1 || k > b->p.max_tokens - total) {
            snprintf(b->err, sizeof b->err, "session %d of the batch has %d tokens; the batch holds %d in all", i, k,
                     b->p.max_tokens);
            return LB_ERR_INVALID_ARG;
        }
        if (k > s->n_ctx - s->n_past) {
            snprintf(b->err, sizeof b->err, "session %d of the batch: %d positions are cached and %d more do not fit "
                     "in the context of %d", i, s->n_past, k, s->n_ctx);
            snprintf(s->err, sizeof s->err, "%s", b->err);
            return LB_ERR_RANGE;
        }
        total += k;
        b->seq[i].n = k;
        if (s->n_threads < min_threads)
            min_threads = s->n_threads;
    }
    /* A session in a shared KV pool may have had its cache reclaimed while
     * idle: acquiring re-creates it (n_past back to 0) and keeps the pool
     * off it until the step is over. */
    for (int i = 0; i < n; i++) {
        lb_status st = lb__session_acquire(sessions[i]);
        if (st) {
            snprintf(b->err, sizeof b->err, "session %d of the batch: %.400s", i, sessions[i]->err);
            while (i-- > 0)
                lb__session_release(sessions[i]);
            return st;
        }
        b->seq[i].kv = lb_kv_cache_ops(sessions[i]->kv);
        b->seq[i].pos0 = sessions[i]->n_past;
    }
    lb_pool *attn_pool = lb_pool_size(b->pool) <= min_threads ? b->pool : NULL;
    lb_err err = {0};
    lb_status st = lb_forward_run_multi(b->fwd, b->model, b->seq, n, b->pool, attn_pool, tokens, logits, &err);
    if (st)
        snprintf(b->err, sizeof b->err, "%s", err.msg);
    for (int i = 0; i < n; i++) {
        if (!st)
            sessions[i]->n_past += b->seq[i].n;
        lb__session_release(sessions[i]);
    }
    return st;
}

void lb__batch_nap(lb_batch *b)
{
    if (b)
        lb_pool_nap(b->pool);
}

void lb__batch_run(lb_batch *b, void (*fn)(void *ctx, int ith, int nth), void *ctx)
{
    lb_pool_run_claimed(b ? b->pool : NULL, fn, ctx);
}
