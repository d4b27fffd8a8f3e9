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

/* Starts dst's context with the first n positions of src's (src may be dst:
 * the positions after n are then dropped), so that a prompt beginning with
 * the same n tokens is evaluated from position n on.  The caller knows which
 * tokens src holds; this only moves or keeps their keys and values.  Returns
 * the positions dst now holds, n or 0: 0 when src holds fewer than n, either
 * cache cannot share a prefix (lb_kv_cache_prefix_shareable) or its pool
 * reclaimed it; dst's context is then empty.  Neither session may be in an
 * evaluation. */
int lb__session_share_prefix(lb_session *dst, lb_session *src, int n);

/* The same through a buffer (kv_cache.h): the bytes of s's first n
 * positions (0 if s holds fewer or its cache cannot share), saving them
 * (false if it cannot), and starting s's context with the first n of
 * n_saved positions saved from a session of the same model and context
 * (returns n, or 0 with s's context empty). */
size_t lb__session_prefix_bytes(const lb_session *s, int n);
bool lb__session_save_prefix(const lb_session *s, int n, void *buf);
int lb__session_load_prefix(lb_session *s, const void *buf, int n_saved, int n);

#endif
