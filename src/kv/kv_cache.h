/* The KV cache of one session: keys and values of every layer for up to
 * n_ctx positions, sized and allocated once.  This version stores F16; the
 * quantized, paged store replaces it behind the same lb_kv_ops. */
#ifndef LB_KV_KV_CACHE_H
#define LB_KV_KV_CACHE_H

#include "model/forward.h"

typedef struct lb_kv_cache lb_kv_cache;

/* Bytes a cache for this model and context takes (for planning). */
size_t lb_kv_cache_bytes(const lb_hparams *hp, int n_ctx, int n_threads);

lb_status lb_kv_cache_new(const lb_hparams *hp, int n_ctx, int n_threads, lb_kv_cache **out, lb_err *err);
void lb_kv_cache_free(lb_kv_cache *c);
/* The operations the forward pass calls. */
lb_kv_ops lb_kv_cache_ops(lb_kv_cache *c);
int lb_kv_cache_n_ctx(const lb_kv_cache *c);

#endif
