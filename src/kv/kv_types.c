/* KV storage type names, sizes and the whole-cache estimator. */
#include "kv_types.h"

#include <string.h>

#include "kv_cache.h"
#include "kv_quant.h"
#include "kv_window.h"

static const char *const names[LB_KV_TYPE_COUNT] = {"f16", "q8", "q4", "q3", "q2"};
static const int bits[LB_KV_TYPE_COUNT] = {16, 8, 4, 3, 2};

const char *lb_kv_type_name(lb_kv_type t)
{
    return (unsigned)t < LB_KV_TYPE_COUNT ? names[t] : "?";
}

lb_status lb_kv_type_parse(const char *name, lb_kv_type *out)
{
    for (int t = 0; name && t < LB_KV_TYPE_COUNT; t++)
        if (!strcmp(name, names[t])) {
            *out = (lb_kv_type)t;
            return LB_OK;
        }
    return LB_ERR_INVALID_ARG;
}

int lb_kv_type_bits(lb_kv_type t)
{
    return (unsigned)t < LB_KV_TYPE_COUNT ? bits[t] : 0;
}

bool lb_kv_quant_supported(const lb_hparams *hp)
{
    return hp->head_dim == 64 || hp->head_dim == 128 || hp->head_dim == 256;
}

/* Bytes per token of one head for K or V (a whole number for the head
 * sizes supported: head_dim is a multiple of 64). */
static size_t side_bytes(int head_dim, lb_kv_type t, bool key)
{
    if (t == LB_KV_F16)
        return (size_t)head_dim * 2;
    const size_t b = (size_t)lb_kv_type_bits(t), D = (size_t)head_dim;
    /* codes, then an f16 scale and min per LB_KV_GROUP tokens (K) or per 64 channels (V) */
    return key ? D * b / 8 + D * 4 / LB_KV_GROUP : D * b / 8 + D / LB_KV_VGROUP * 4;
}

size_t lb_kv_bytes_per_token(const lb_hparams *hp, lb_kv_type k, lb_kv_type v)
{
    if (!lb_kv_type_bits(k) || !lb_kv_type_bits(v))
        return 0;
    return (size_t)hp->n_layer * hp->n_head_kv * (side_bytes(hp->head_dim, k, true) + side_bytes(hp->head_dim, v, false));
}

size_t lb_kv_estimate_bytes(const lb_hparams *hp, int n_ctx, lb_kv_type k, lb_kv_type v, int n_threads)
{
    return lb_kv_estimate_bytes_sinks(hp, n_ctx, k, v, 0, n_threads);
}

size_t lb_kv_estimate_bytes_sinks(const lb_hparams *hp, int n_ctx, lb_kv_type k, lb_kv_type v, int n_sink,
                                  int n_threads)
{
    if (n_ctx < 1 || n_threads < 1 || !lb_kv_type_bits(k) || !lb_kv_type_bits(v) || n_sink < 0 || n_sink > n_ctx)
        return 0;
    if (k == LB_KV_F16 && v == LB_KV_F16)   /* every position is F16 already: sinks change nothing */
        return lb_kv_cache_bytes(hp, n_ctx, n_threads);
    if (!lb_kv_quant_supported(hp))
        return 0;
    return lb__kv_cache_wrapper_bytes() + lb__kvq_cache_bytes(hp, n_ctx, k, v, n_sink, n_threads);
}

size_t lb_kv_estimate_bytes_window(const lb_hparams *hp, int n_window, int n_sink, lb_kv_type k, lb_kv_type v,
                                   int n_threads)
{
    if (n_window < 1 || n_window > LB_KV_MAX_POS / 2 || n_sink < 0 || n_sink > LB_KV_MAX_POS / 2 || n_threads < 1 ||
        !lb_kv_type_bits(k) || !lb_kv_type_bits(v))
        return 0;
    if (k == LB_KV_F16 && v == LB_KV_F16)
        return lb_kv_cache_bytes_window(hp, n_window, n_sink, n_threads);
    if (!lb_kv_quant_supported(hp))
        return 0;
    return lb__kv_cache_wrapper_bytes() + lb__kvq_cache_bytes_window(hp, 0, n_window, k, v, n_sink, n_threads);
}
