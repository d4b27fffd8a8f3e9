/* The quantized KV store (any K/V type pair other than F16/F16): layout and
 * algorithm are described at the top of kv_quant.c and in docs/kv-cache.md.
 * Reached through kv_cache.h; declared here for kv_cache.c and the tests. */
#ifndef LB_KV_KV_QUANT_H
#define LB_KV_KV_QUANT_H

#include "kernels/kvq.h"
#include "kv_types.h"
#include "model/forward.h"

typedef struct lb_kvq_cache lb_kvq_cache;

/* Exactly what lb__kvq_cache_new allocates (block + struct). */
size_t lb__kvq_cache_bytes(const lb_hparams *hp, int n_ctx, lb_kv_type k, lb_kv_type v, int n_sink, int n_threads);
lb_status lb__kvq_cache_new(const lb_hparams *hp, int n_ctx, int n_threads, lb_kv_type k, lb_kv_type v, int n_sink,
                            lb_kvq_cache **out, lb_err *err);
/* The same keeping only the sinks and a sliding window of the newest
 * positions (n_window > 0; n_ctx is then ignored and positions run up to
 * LB_KV_MAX_POS): ceil(n_window / G) quantized group slots used as a ring,
 * plus the residual group. */
size_t lb__kvq_cache_bytes_window(const lb_hparams *hp, int n_ctx, int n_window, lb_kv_type k, lb_kv_type v,
                                  int n_sink, int n_threads);
lb_status lb__kvq_cache_new_window(const lb_hparams *hp, int n_ctx, int n_window, int n_threads, lb_kv_type k,
                                   lb_kv_type v, int n_sink, lb_kvq_cache **out, lb_err *err);
void lb__kvq_cache_free(lb_kvq_cache *c);
lb_kv_ops lb__kvq_cache_ops(lb_kvq_cache *c);

/* For tests: K and V of (layer, kv head, position) as the attention sees
 * them (dequantized, rotated back): k, v: [head_dim].  pos must be stored
 * in that layer and, when windowed, not evicted. */
void lb__kvq_read(const lb_kvq_cache *c, int il, int h, int pos, float *k, float *v);
/* Writes a batch whose storing store() deferred to attend() (needed only
 * when attend() is not called, e.g. before lb__kvq_read). */
void lb__kvq_flush(lb_kvq_cache *c);
/* Use these kernels instead of the best ones (tests compare scalar and AVX2). */
void lb__kvq_use_kernels(lb_kvq_cache *c, const lb_kvq_kernels *ks);

/* The fixed randomized Hadamard rotation of one head vector (n = 64, 128 or
 * 256), orthonormal: x <- H diag(sign) x / sqrt(n), and its inverse. */
void lb__kv_rotate(float *x, int n);
void lb__kv_unrotate(float *x, int n);

#endif
