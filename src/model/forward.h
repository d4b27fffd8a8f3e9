/* The forward pass of the llama family over a batch of tokens.  The KV cache
 * is reached through lb_kv_ops so that the cache layer (kv/) can choose its
 * own storage (and quantization) without the model knowing. */
#ifndef LB_MODEL_FORWARD_H
#define LB_MODEL_FORWARD_H

#include "base/threadpool.h"
#include "model.h"

typedef struct lb_kv_ops {
    void *ctx;
    /* Keeps K and V of n tokens at positions pos0 .. pos0+n-1 of layer il.
     * k, v: [n][n_head_kv * head_dim], K already rotated by RoPE.  They must
     * stay valid and unchanged until attend() of the same layer and tokens
     * returns: a cache may defer the storing to interleave it with the
     * attention (kv/kv_quant.c does, so a batch sees what single tokens see). */
    lb_status (*store)(void *ctx, int il, int pos0, int n, const float *k, const float *v);
    /* out: [n][n_head * head_dim] = causal attention of q ([n][n_head * head_dim],
     * scaled by 1/sqrt(head_dim) inside) over the cached positions 0 .. pos0+i
     * for row i. */
    void (*attend)(void *ctx, int il, int pos0, int n, const float *q, float *out, lb_pool *pool);
} lb_kv_ops;

typedef struct lb_forward lb_forward;

/* Scratch for batches of up to n_batch tokens, allocated once. */
lb_status lb_forward_new(const lb_model *m, int n_batch, lb_forward **out, lb_err *err);
void lb_forward_free(lb_forward *f);
/* Bytes lb_forward_new allocates (for planning). */
size_t lb_forward_bytes(const lb_hparams *hp, int n_batch);

/* Runs n (<= n_batch) tokens at positions pos0.. through the model.
 * logits: if non-NULL, [n_out][n_vocab] for the last n_out rows of the batch
 * (n_out = n, or 1 to get only the last row). */
lb_status lb_forward_run(lb_forward *f, const lb_model *m, const lb_kv_ops *kv, lb_pool *pool,
                         const int32_t *tokens, int n, int pos0, float *logits, int n_out, lb_err *err);

/* One sequence of a multi-sequence batch: its rows are consecutive tokens at
 * positions pos0 .. pos0+n-1 of the sequence whose cache kv reaches. */
typedef struct lb_fwd_seq {
    lb_kv_ops kv;
    int pos0;
    int n;   /* >= 1 */
} lb_fwd_seq;

/* Runs n_seq independent sequences through the model in one pass: tokens
 * holds seq[0]'s seq[0].n tokens, then seq[1]'s, ... (at most n_batch in
 * all; every cache at most once).  Each weight matrix is read once for all
 * rows; attention runs per sequence on its own cache.  Each sequence's rows
 * compute exactly what lb_forward_run gives for the same tokens alone (the
 * same kernels in the same order), so batching never changes a result.
 * attn_pool runs the attention of a sequence with several rows, and of
 * single-row ones when they are fewer than pool's threads (NULL = the
 * calling thread only); it must not have more threads than any of the
 * caches was made for.  Otherwise the single-row sequences are spread whole
 * over pool's threads.
 * logits: if non-NULL, [n_seq][n_vocab], the row after each sequence's last
 * token.  On error a cache may hold K/V for the batch's positions in some
 * layers; they are overwritten by the next run. */
lb_status lb_forward_run_multi(lb_forward *f, const lb_model *m, const lb_fwd_seq *seq, int n_seq, lb_pool *pool,
                               lb_pool *attn_pool, const int32_t *tokens, float *logits, lb_err *err);

#endif
