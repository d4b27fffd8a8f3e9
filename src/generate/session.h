/* A session: one conversation's state over a shared model — the KV cache,
 * the forward scratch and the thread pool, all sized when it is created. */
#ifndef LB_GENERATE_SESSION_H
#define LB_GENERATE_SESSION_H

#include "base/threadpool.h"
#include "kv/kv_cache.h"
#include "kv/kv_pool.h"
#include "model/forward.h"

struct lb_session {
    lb_model *model;
    lb_pool *pool;
    lb_kv_cache *kv;         /* NULL after a kv_pool reclaimed it (see lb__session_acquire) */
    lb_kv_pool *kv_pool;     /* or NULL */
    lb_kv_member member;     /* this session in kv_pool */
    lb_session_params params;   /* what the cache is re-created from */
    lb_forward *fwd;
    int n_ctx, n_batch, n_threads;
    int n_past;
    char err[LB_ERR_MSG_MAX];
};

/* For code that evaluates a session without lb_session_eval (batched
 * decoding): marks s busy so its pool does not reclaim its cache meanwhile,
 * and re-creates the cache (n_past then 0) if it was reclaimed.  Every
 * successful acquire must be paired with a release. */
lb_status lb__session_acquire(lb_session *s);
void lb__session_release(lb_session *s);

#endif
