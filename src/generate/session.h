/* A session: one conversation's state over a shared model — the KV cache,
 * the forward scratch and the thread pool, all sized when it is created. */
#ifndef LB_GENERATE_SESSION_H
#define LB_GENERATE_SESSION_H

#include "base/threadpool.h"
#include "kv/kv_cache.h"
#include "model/forward.h"

struct lb_session {
    lb_model *model;
    lb_pool *pool;
    lb_kv_cache *kv;
    lb_forward *fwd;
    int n_ctx, n_batch, n_threads;
    int n_past;
    char err[LB_ERR_MSG_MAX];
};

#endif
