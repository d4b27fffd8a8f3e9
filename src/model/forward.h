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

#endif
