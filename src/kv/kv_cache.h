/* The KV cache of one session: keys and values of every layer for up to
 * n_ctx positions, sized and allocated once.  F16/F16 is the exact store of
 * kv_cache.c; any other K/V type pair is the quantized store of kv_quant.c,
 * behind the same lb_kv_ops. */
#ifndef LB_KV_KV_CACHE_H
#define LB_KV_KV_CACHE_H

#include "kv_quant.h"
#include "kv_types.h"
#include "model/forward.h"

typedef struct lb_kv_cache lb_kv_cache;

/* Bytes a cache for this model and context takes (for planning). */
size_t lb_kv_cache_bytes(const lb_hparams *hp, int n_ctx, int n_threads);

/* An F16/F16 cache (the same as lb_kv_cache_new_typed with F16, F16, 0). */
lb_status lb_kv_cache_new(const lb_hparams *hp, int n_ctx, int n_threads, lb_kv_cache **out, lb_err *err);
/* A cache storing keys as k and values as v, the first n_sink positions kept
 * in F16 (ignored for F16/F16).  Allocates exactly
 * lb_kv_estimate_bytes_sinks(hp, n_ctx, k, v, n_sink, n_threads) bytes.
 * Errors: LB_ERR_INVALID_ARG (bad counts or type), LB_ERR_UNSUPPORTED (a
 * quantized type with a head_dim other than 64/128/256), LB_ERR_NOMEM. */
lb_status lb_kv_cache_new_typed(const lb_hparams *hp, int n_ctx, int n_threads, lb_kv_type k, lb_kv_type v,
                                int n_sink, lb_kv_cache **out, lb_err *err);
/* A cache for an unbounded stream that keeps the first n_sink positions and
 * a sliding window of the newest ones (docs/kv-cache.md, "Sliding window"):
 * F16/F16 keeps exactly the n_window newest, in a ring of n_window +
 * LB_KV_RING_SLACK slots; a quantized pair keeps between n_window + 1 and
 * n_window + LB_KV_GROUP (n_window rounded up to whole key groups, plus the
 * residual group).  Positions are absolute, up to LB_KV_MAX_POS; a query
 * scores the sinks as if it stood right after them and the window (the
 * keys are never re-rotated).  Allocates exactly
 * lb_kv_estimate_bytes_window(hp, n_window, n_sink, k, v, n_threads) bytes.
 * Errors as lb_kv_cache_new_typed. */
lb_status lb_kv_cache_new_window(const lb_hparams *hp, int n_window, int n_sink, int n_threads, lb_kv_type k,
                                 lb_kv_type v, lb_kv_cache **out, lb_err *err);
/* Bytes of an F16/F16 windowed cache (for the estimator). */
size_t lb_kv_cache_bytes_window(const lb_hparams *hp, int n_window, int n_sink, int n_threads);
void lb_kv_cache_free(lb_kv_cache *c);
/* The operations the forward pass calls. */
lb_kv_ops lb_kv_cache_ops(lb_kv_cache *c);
/* Positions the cache accepts: its context, or LB_KV_MAX_POS when windowed. */
int lb_kv_cache_n_ctx(const lb_kv_cache *c);
/* Whether positions 0..n-1 of c can be copied into another cache
 * (lb_kv_cache_copy_prefix) or kept while later ones are overwritten: true
 * for an F16/F16 cache without a window, whose slots are plain rows by
 * position.  A quantized store keeps a residual group and per-layer counts
 * that a cut would have to rebuild, and a window's slots are reused; both
 * say no (docs/server.md, "Prompt cache"). */
bool lb_kv_cache_prefix_shareable(const lb_kv_cache *c);
/* Copies K and V of positions 0..n-1 of every layer from src into dst (the
 * same model and context, both shareable): dst then holds what evaluating
 * those n tokens would have stored.  LB_ERR_UNSUPPORTED if either cannot
 * share, LB_ERR_RANGE if n is outside 0..n_ctx. */
lb_status lb_kv_cache_copy_prefix(lb_kv_cache *dst, const lb_kv_cache *src, int n);
/* The same through a buffer, for keeping a prefix after the cache moves on
 * (the server's prompt store): bytes for n positions (0 if c cannot share),
 * then K and V of positions 0..n-1 written to buf, and positions 0..n-1 of
 * a cache of the same model and context read back from a buffer that
 * n_saved >= n positions were saved to.  LB_ERR_UNSUPPORTED / LB_ERR_RANGE
 * as lb_kv_cache_copy_prefix. */
size_t lb_kv_cache_prefix_bytes(const lb_kv_cache *c, int n);
lb_status lb_kv_cache_save_prefix(const lb_kv_cache *c, int n, void *buf);
lb_status lb_kv_cache_load_prefix(lb_kv_cache *c, const void *buf, int n_saved, int n);
/* The quantized store inside c, or NULL for an F16/F16 cache (tests). */
lb_kvq_cache *lb__kv_cache_quant(lb_kv_cache *c);
/* The bytes of the handle wrapped around a quantized store (for the estimator). */
size_t lb__kv_cache_wrapper_bytes(void);

#endif
