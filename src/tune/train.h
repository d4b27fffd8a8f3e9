/* The activations the training forward pass keeps for the backward pass,
 * shared by train_forward.c and train_backward.c only. */
#ifndef LB_TUNE_TRAIN_H
#define LB_TUNE_TRAIN_H

#include <stdatomic.h>

#include "tune/tune.h"

struct lb_tune_state {
    int ctx, n;             /* capacity and the token count of the last forward */
    int n_thr;              /* threads the per-head scratch is sized for */
    /* Saved by the forward pass (T = ctx, E = n_embd, Q = n_head * head_dim,
     * KV = n_head_kv * head_dim, F = n_ff, H = n_head, L = n_layer, V = n_vocab). */
    float *x;       /* [L + 1][T][E]  residual stream entering each layer; x[L] leaves the last */
    float *xn1;     /* [L][T][E]      attention norm output */
    float *r1;      /* [L][T]         its 1 / rms */
    float *q;       /* [L][T][Q]      after RoPE */
    float *k;       /* [L][T][KV]     after RoPE */
    float *v;       /* [L][T][KV] */
    float *p;       /* [L][H][T][T]   attention probabilities (0 above the diagonal) */
    float *att;     /* [L][T][Q]      attention output */
    float *xm;      /* [L][T][E]      residual after attention */
    float *xn2;     /* [L][T][E]      ffn norm output */
    float *r2;      /* [L][T] */
    float *g;       /* [L][T][F]      gate pre-activation */
    float *u;       /* [L][T][F]      up */
    float *h;       /* [L][T][F]      silu(g) * u */
    float *xnf;     /* [T][E]         final norm output */
    float *rf;      /* [T] */
    float *logits;  /* [T][V] */
    float *dlogits; /* [T][V] */
    float *cs;      /* [T][head_dim / 2][2] RoPE cos, sin */
    /* Backward scratch. */
    float *dx;      /* [T][E]  gradient of the residual stream */
    float *dxm;     /* [T][E] */
    float *dxn;     /* [T][E] */
    float *dq;      /* [T][Q] */
    float *dk;      /* [T][KV] */
    float *dv;      /* [T][KV] */
    float *datt;    /* [T][Q] */
    float *dg;      /* [T][F] */
    float *du;      /* [T][F] */
    float *dh;      /* [T][F] */
    float *dkh;     /* [H][T][head_dim] each query head's share of dK, summed per group afterwards */
    float *dvh;     /* [H][T][head_dim] the same for dV */
    float *dw;      /* [largest weight rows * cols] a weight's gradient before it is reduced per block */
    float *head;    /* [n_thr][3][T][max(T, head_dim)] per-thread attention scratch */
    void *block;    /* the one allocation */
};

/* One layer's attention heads handed out to the pool's threads, forward
 * and backward alike. */
typedef struct attn_job {
    lb_tune_state *st;
    const lb_hparams *hp;
    int il, n;
    atomic_int next;   /* the next query head to take */
} attn_job;

#endif
