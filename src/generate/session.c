/* Sessions: creation sizes everything once; eval feeds tokens through the
 * forward pass in batches and appends them to the KV cache, which a shared
 * kv_pool may reclaim while the session is idle. */
#include "session.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv_window.h"

lb_session_params lb_session_default_params(void)
{
    lb_session_params p;
    memset(&p, 0, sizeof p);
    return p;
}

/* Bytes the cache of s takes (what its pool reserves). */
static size_t kv_bytes(const lb_session *s)
{
    const lb_session_params *p = &s->params;
    const lb_hparams *hp = &s->model->hp;
    return p->n_window > 0 ? lb_kv_estimate_bytes_window(hp, p->n_window, p->n_sinks, p->kv_type_k, p->kv_type_v,
                                                         s->n_threads)
                           : lb_kv_estimate_bytes_sinks(hp, s->n_ctx, p->kv_type_k, p->kv_type_v, p->n_sinks,
                                                        s->n_threads);
}

/* Creates the KV cache of s, reserving it from the pool first. */
static lb_status make_kv(lb_session *s, lb_err *err)
{
    const lb_session_params *p = &s->params;
    const lb_hparams *hp = &s->model->hp;
    if (s->kv_pool) {
        size_t bytes = kv_bytes(s);
        if (!bytes)   /* invalid types or an unsupported model: let the constructor say which */
            bytes = 1;
        if (lb__kv_pool_reserve(s->kv_pool, &s->member, bytes))
            return lb__errf(err, LB_ERR_NOMEM, "the KV pool cannot hold another %zu bytes (%zu in use)", bytes,
                            lb_kv_pool_used(s->kv_pool));
    }
    lb_status st;
    if (p->n_window > 0)
        st = lb_kv_cache_new_window(hp, p->n_window, p->n_sinks, s->n_threads, p->kv_type_k, p->kv_type_v, &s->kv,
                                    err);
    else if (p->n_sinks > s->n_ctx)
        st = lb__errf(err, LB_ERR_INVALID_ARG, "%d sinks do not fit in a context of %d", p->n_sinks, s->n_ctx);
    else
        st = lb_kv_cache_new_typed(hp, s->n_ctx, s->n_threads, p->kv_type_k, p->kv_type_v, p->n_sinks, &s->kv, err);
    if (st && s->kv_pool)
        lb__kv_pool_reserve(s->kv_pool, &s->member, 0);   /* gives the reservation back */
    return st;
}

/* The pool's reclaim (pool locked, s idle): the context is forgotten. */
static void drop_kv(lb_kv_member *m)
{
    lb_session *s = (lb_session *)(void *)((char *)m - offsetof(lb_session, member));
    lb_kv_cache_free(s->kv);
    s->kv = NULL;
    s->n_past = 0;
}

lb_status lb__session_acquire(lb_session *s)
{
    if (!s->kv_pool)
        return LB_OK;
    lb__kv_pool_busy(s->kv_pool, &s->member, true);
    if (s->kv)
        return LB_OK;
    lb_err err = {0};
    s->n_past = 0;
    lb_status st = make_kv(s, &err);
    if (st) {
        snprintf(s->err, sizeof s->err, "%s", err.msg);
        lb__kv_pool_busy(s->kv_pool, &s->member, false);
    }
    return st;
}

void lb__session_release(lb_session *s)
{
    if (s->kv_pool)
        lb__kv_pool_busy(s->kv_pool, &s->member, false);
}

lb_status lb_session_new(lb_model *m, const lb_session_params *p, lb_session **out)
{
    if (!m || !out)
        return LB_ERR_INVALID_ARG;
    lb_session_params def = lb_session_default_params();
    if (!p)
        p = &def;
    if (p->n_ctx < 0 || p->n_threads < 0 || p->n_batch < 0 || p->n_window < 0 || p->n_sinks < 0 ||
        p->n_window > LB_KV_MAX_POS / 2 || p->n_sinks > LB_KV_MAX_POS / 2) {
        snprintf(m->err, sizeof m->err,
                 "bad session parameters (n_ctx %d, n_threads %d, n_batch %d, n_window %d, n_sinks %d)", p->n_ctx,
                 p->n_threads, p->n_batch, p->n_window, p->n_sinks);
        return LB_ERR_INVALID_ARG;
    }
    lb_session *s = calloc(1, sizeof *s);
    if (!s)
        return LB_ERR_NOMEM;
    s->model = m;
    s->params = *p;
    s->n_ctx = p->n_ctx ? p->n_ctx : m->hp.n_ctx_train;
    s->n_threads = p->n_threads ? p->n_threads : lb_cpu_count();
    s->n_batch = p->n_batch ? p->n_batch : (s->n_ctx < 512 ? s->n_ctx : 512);
    if (s->n_batch > s->n_ctx)
        s->n_batch = s->n_ctx;
    lb_err err = {0};
    lb_status st = LB_OK;
    s->pool = lb_pool_new(s->n_threads);
    if (!s->pool)
        st = lb__errf(&err, LB_ERR_NOMEM, "cannot start %d threads", s->n_threads);
    if (!st) {
        s->n_threads = lb_pool_size(s->pool);
        if (p->kv_pool) {
            s->kv_pool = p->kv_pool;
            s->member.drop = drop_kv;
            lb__kv_pool_join(s->kv_pool, &s->member);
        }
        st = make_kv(s, &err);
        if (p->n_window > 0)
            s->n_ctx = LB_KV_MAX_POS;   /* the window slides: only RoPE's float positions bound a stream */
    }
    if (!st)
        st = lb_forward_new(m, s->n_batch, &s->fwd, &err);
    if (st) {
        snprintf(m->err, sizeof m->err, "%s", err.msg);
        lb_session_free(s);
        return st;
    }
    *out = s;
    return LB_OK;
}

void lb_session_free(lb_session *s)
{
    if (!s)
        return;
    lb_forward_free(s->fwd);
    if (s->kv_pool)
        lb__kv_pool_leave(s->kv_pool, &s->member);
    lb_kv_cache_free(s->kv);
    lb_pool_free(s->pool);
    free(s);
}

const char *lb_session_last_error(const lb_session *s) { return s ? s->err : ""; }

void lb_session_reset(lb_session *s) { s->n_past = 0; }

int lb__session_share_prefix(lb_session *dst, lb_session *src, int n)
{
    const int have = n > 0 && src->kv && n <= src->n_past ? n : 0;
    dst->n_past = 0;
    if (!have || !dst->kv || src->model != dst->model || lb_kv_cache_copy_prefix(dst->kv, src->kv, have))
        return 0;
    dst->n_past = have;
    return have;
}

int lb_session_n_past(const lb_session *s) { return s->n_past; }

size_t lb__session_prefix_bytes(const lb_session *s, int n)
{
    return s->kv && n > 0 && n <= s->n_past ? lb_kv_cache_prefix_bytes(s->kv, n) : 0;
}

bool lb__session_save_prefix(const lb_session *s, int n, void *buf)
{
    return lb__session_prefix_bytes(s, n) && lb_kv_cache_save_prefix(s->kv, n, buf) == LB_OK;
}

int lb__session_load_prefix(lb_session *s, const void *buf, int n_saved, int n)
{
    s->n_past = 0;
    if (!s->kv || n <= 0 || lb_kv_cache_load_prefix(s->kv, buf, n_saved, n))
        return 0;
    s->n_past = n;
    return n;
}

static lb_status eval(lb_session *s, const lb_token *tokens, int n, float *logits, bool logits_last_only);

lb_status lb_session_eval(lb_session *s, const lb_token *tokens, int n, float *logits, bool logits_last_only)
{
    if (!s || (!tokens && n) || n < 0)
        return LB_ERR_INVALID_ARG;
    lb_status st = lb__session_acquire(s);
    if (st)
        return st;
    st = eval(s, tokens, n, logits, logits_last_only);
    lb__session_release(s);
    return st;
}

static lb_status eval(lb_session *s, const lb_token *tokens, int n, float *logits, bool logits_last_only)
{
    lb_err err = {0};
    if (s->n_past + n > s->n_ctx) {
        snprintf(s->err, sizeof s->err, "%d positions are cached and %d more do not fit in the context of %d",
                 s->n_past, n, s->n_ctx);
        return LB_ERR_RANGE;
    }
    lb_kv_ops ops = lb_kv_cache_ops(s->kv);
    const int V = s->model->hp.n_vocab;
    for (int done = 0; done < n;) {
        int nb = n - done < s->n_batch ? n - done : s->n_batch;
        bool last = done + nb == n;
        float *out = NULL;
        int n_out = 0;
        if (logits && !logits_last_only) {
            out = logits + (size_t)done * V;
            n_out = nb;
        } else if (logits && last) {
            out = logits;
            n_out = 1;
        }
        lb_status st = lb_forward_run(s->fwd, s->model, &ops, s->pool, tokens + done, nb, s->n_past, out, n_out, &err);
        if (st) {
            snprintf(s->err, sizeof s->err, "%s", err.msg);
            return st;
        }
        s->n_past += nb;
        done += nb;
    }
    return LB_OK;
}
