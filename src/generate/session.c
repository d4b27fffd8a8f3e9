/* Sessions: creation sizes everything once; eval feeds tokens through the
 * forward pass in batches and appends them to the KV cache. */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

lb_session_params lb_session_default_params(void)
{
    lb_session_params p;
    memset(&p, 0, sizeof p);
    return p;
}

lb_status lb_session_new(lb_model *m, const lb_session_params *p, lb_session **out)
{
    if (!m || !out)
        return LB_ERR_INVALID_ARG;
    lb_session_params def = lb_session_default_params();
    if (!p)
        p = &def;
    if (p->n_ctx < 0 || p->n_threads < 0 || p->n_batch < 0)
        return LB_ERR_INVALID_ARG;
    lb_session *s = calloc(1, sizeof *s);
    if (!s)
        return LB_ERR_NOMEM;
    s->model = m;
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
        st = lb_kv_cache_new_typed(&m->hp, s->n_ctx, s->n_threads, p->kv_type_k, p->kv_type_v, 0, &s->kv, &err);
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
    lb_kv_cache_free(s->kv);
    lb_pool_free(s->pool);
    free(s);
}

const char *lb_session_last_error(const lb_session *s) { return s ? s->err : ""; }

void lb_session_reset(lb_session *s) { s->n_past = 0; }

int lb_session_n_past(const lb_session *s) { return s->n_past; }

lb_status lb_session_eval(lb_session *s, const lb_token *tokens, int n, float *logits, bool logits_last_only)
{
    if (!s || (!tokens && n) || n < 0)
        return LB_ERR_INVALID_ARG;
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
