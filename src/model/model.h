/* The loaded model: hyper-parameters, weight views bound to GGUF tensors, and
 * the tokenizer.  Everything here is read-only after loading, so any number
 * of sessions (and threads) can share one model. */
#ifndef LB_MODEL_MODEL_H
#define LB_MODEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

typedef enum lb_arch {
    LB_ARCH_LLAMA,
    LB_ARCH_QWEN2
} lb_arch;

typedef enum lb_rope_kind {
    LB_ROPE_NORM,   /* rotate adjacent pairs (x[2i], x[2i+1]): llama's GGUF layout */
    LB_ROPE_NEOX    /* rotate halves (x[i], x[i + n_rot/2]): qwen2, phi3, gemma */
} lb_rope_kind;

typedef struct lb_hparams {
    int n_vocab;
    int n_ctx_train;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;      /* n_embd / n_head unless the file says otherwise */
    int n_ff;
    int n_rot;         /* dimensions rotated by RoPE (<= head_dim) */
    float norm_eps;
    float rope_base;
    float rope_scale;  /* positions are multiplied by this (1 / linear scaling factor) */
    lb_rope_kind rope;
} lb_hparams;

/* A 2-D weight: rows of `cols` elements each, stored in `type`. */
typedef struct lb_weight {
    const void *data;
    uint32_t type;
    int64_t cols;      /* ne[0]: the input dimension */
    int64_t rows;      /* ne[1]: the output dimension */
    size_t row_bytes;
} lb_weight;

/* A 1-D F32 vector (norm weights, biases); NULL data when absent. */
typedef struct lb_vec {
    const float *data;
    int64_t n;
} lb_vec;

typedef struct lb_layer {
    lb_vec attn_norm;             /* [n_embd] */
    lb_weight wq;                 /* [n_embd] -> [n_head * head_dim] */
    lb_weight wk, wv;             /* [n_embd] -> [n_head_kv * head_dim] */
    lb_vec bq, bk, bv;            /* biases (qwen2), or absent */
    lb_weight wo;                 /* [n_head * head_dim] -> [n_embd] */
    lb_vec ffn_norm;              /* [n_embd] */
    lb_weight w_gate, w_up;       /* [n_embd] -> [n_ff] */
    lb_weight w_down;             /* [n_ff] -> [n_embd] */
} lb_layer;

struct lb_model {
    lb_gguf *gguf;                /* owns the file bytes every weight points into */
    lb_tokenizer *tok;
    lb_arch arch;
    char arch_name[32];
    char name[128];
    lb_hparams hp;
    lb_weight tok_embd;           /* [n_embd] x n_vocab rows */
    lb_vec out_norm;              /* [n_embd] */
    lb_weight output;             /* [n_embd] -> [n_vocab]; tok_embd when tied */
    lb_layer *layers;             /* [n_layer] */
    int64_t n_params;
    uint64_t weight_bytes;
    char err[LB_ERR_MSG_MAX];
};

/* Reads the hyper-parameters of a supported architecture from g's metadata. */
lb_status lb__hparams_read(const lb_gguf *g, lb_arch *arch, lb_hparams *hp, lb_err *err);

/* Binds every weight to its tensor, checking types and shapes against hp. */
lb_status lb__model_bind(lb_model *m, lb_err *err);

#endif
