/* A memory budget shared by the KV caches of several sessions, with idle
 * reclaim (the public half is lb_kv_pool_* in lowbit.h; docs/kv-cache.md,
 * "Sessions sharing a pool").  The pool does not own caches: each member
 * (a session) registers how many bytes it holds and a callback that drops
 * them; the pool decides whose are dropped. */
#ifndef LB_KV_KV_POOL_H
#define LB_KV_KV_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "lowbit.h"

typedef struct lb_kv_member lb_kv_member;
struct lb_kv_member {
    lb_kv_member *prev, *next;   /* the pool's list, most recently used last */
    size_t bytes;                /* reserved while held */
    bool held;                   /* the member's cache exists */
    int busy;                    /* > 0 while being evaluated: never reclaimed then */
    double last_ms;              /* when it was last released from busy */
    void (*drop)(lb_kv_member *m);   /* frees the member's cache (called with the pool locked) */
};

/* Adds m (not holding anything) to the pool. */
void lb__kv_pool_join(lb_kv_pool *p, lb_kv_member *m);
/* Drops m's reservation (not its cache: the caller frees that) and removes it. */
void lb__kv_pool_leave(lb_kv_pool *p, lb_kv_member *m);
/* Reserves bytes for m, reclaiming idle members' caches (least recently
 * used first, never m's) when the budget is short.  LB_ERR_NOMEM when even
 * that is not enough; nothing is reclaimed then. */
lb_status lb__kv_pool_reserve(lb_kv_pool *p, lb_kv_member *m, size_t bytes);
/* Marks m busy (it is then never reclaimed) or idle again. */
void lb__kv_pool_busy(lb_kv_pool *p, lb_kv_member *m, bool busy);

#endif
