/* KV cache storage types: their names, bits, bytes per token and the
 * estimator of a whole cache's memory (what the planner relies on). */
#ifndef LB_KV_KV_TYPES_H
#define LB_KV_KV_TYPES_H

#include <stddef.h>

#include "lowbit.h"
#include "model/model.h"

/* Tokens per key group (keys are quantized per channel over this many
 * tokens, a multiple of 64) and the size of the F16 residual window that
 * collects them. */
#define LB_KV_GROUP 128
/* Channels per value group (values are quantized per token in groups of this many). */
#define LB_KV_VGROUP 64

/* Bits per stored element: 16, 8, 4, 3, 2; 0 for a value outside the enum. */
int lb_kv_type_bits(lb_kv_type t);

/* True when a quantized cache can be built for this model (head_dim must be
 * 64, 128 or 256: the Hadamard rotation needs a power of two and the groups
 * are 64 channels). */
bool lb_kv_quant_supported(const lb_hparams *hp);

/* Bytes one token adds to the cache over all layers and KV heads, scales
 * included, the F16 residual window and sinks excluded (the asymptotic cost
 * of context).  F16 is head_dim * 2 per head for each of K and V; b-bit keys
 * head_dim * (b / 8 + 4 / 128) (an f16 scale + min per channel per 128
 * tokens), b-bit values head_dim * (b / 8 + 4 / 64) (per 64 channels). */
size_t lb_kv_bytes_per_token(const lb_hparams *hp, lb_kv_type k, lb_kv_type v);

/* Exactly the bytes lb_kv_cache_new_typed allocates for these parameters
 * (the cache, its F16 residual window, sinks and per-thread scratch, and its
 * structs); 0 for invalid arguments or an unsupported model. */
size_t lb_kv_estimate_bytes(const lb_hparams *hp, int n_ctx, lb_kv_type k, lb_kv_type v, int n_threads);
/* The same with n_sink first tokens kept in F16. */
size_t lb_kv_estimate_bytes_sinks(const lb_hparams *hp, int n_ctx, lb_kv_type k, lb_kv_type v, int n_sink,
                                  int n_threads);

/* Exactly the bytes lb_kv_cache_new_window allocates; 0 for invalid
 * arguments or an unsupported model. */
size_t lb_kv_estimate_bytes_window(const lb_hparams *hp, int n_window, int n_sink, lb_kv_type k, lb_kv_type v,
                                   int n_threads);

#endif
