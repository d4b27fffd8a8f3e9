/* End-to-end tuning of a quantized model (`lowbit tune`): the integer codes
 * stay frozen while one log-scale s per quantization block (W = exp(s) *
 * dequant(codes)) and the RMSNorm weights are trained by distillation from
 * the F16 model, with a float training forward and backward pass written for
 * the llama architecture (docs/quantization.md, "End-to-end tuning"). */
#ifndef LB_TUNE_TUNE_H
#define LB_TUNE_TUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "base/threadpool.h"
#include "model/model.h"

/* C[M][N] = (accumulate ? C : 0) + sum_k A(m, k) * B[k][n], with A(m, k) =
 * A[m * sam + k * sak] (so A or its transpose), B row-major with row stride
 * ldb, C with row stride ldc.  Spread over pool (NULL: the calling thread);
 * AVX2+FMA where the CPU has it, plain C otherwise. */
void lb__sgemm(lb_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t sam, int64_t sak,
               const float *B, int64_t ldb, float *C, int64_t ldc, bool accumulate);

/* One 2-D weight of the student.  Its scale blocks are the type's blocks
 * (32 or 256 consecutive elements of a row); their log-scales s are trained
 * when the type has a block scale, otherwise the weight is frozen. */
typedef struct lb_tune_weight {
    const lb_weight *src;   /* the model's view of the file's tensor */
    int blck;               /* elements per scale block; 0: frozen (F32/F16/BF16) */
    int64_t nblk;           /* rows * cols / blck scale blocks, row-major */
    float *w0;              /* [rows][cols] dequantized with the file's scales */
    float *w;               /* [rows][cols] exp(s) * w0: what the student computes with */
    float *wt;              /* [cols][rows] w transposed (for products x . w^T); NULL when unused */
    float *s;               /* [nblk] log-scales (into lb_tune_model.params); NULL when frozen */
    float *gs;              /* [nblk] their gradient (into lb_tune_model.grads) */
} lb_tune_weight;

#define LB_TUNE_WPL 7   /* weights per layer: q k v o gate up down */

typedef struct lb_tune_model {
    const lb_model *m;
    lb_hparams hp;
    int n_w;
    lb_tune_weight *w;      /* [n_w]: layer il's q k v o gate up down at il * 7 + j, then token_embd, output */
    lb_tune_weight *emb, *out;   /* the last two (the same one when the output is tied to the embedding) */
    float *attn_norm;       /* [n_layer][n_embd] (into params) */
    float *ffn_norm;        /* [n_layer][n_embd] */
    float *out_norm;        /* [n_embd] */
    int64_t n_params;       /* every log-scale, then every norm weight */
    int64_t n_scales;       /* of which log-scales */
    float *params;          /* [n_params] */
    float *grads;           /* [n_params] */
    float *lr_scale;        /* [n_params] per-parameter step multiplier (the norms' typical size) */
    bool train_norms;
} lb_tune_model;

/* Dequantizes every weight of m (which must outlive tm) and sets s = 0.
 * LB_ERR_UNSUPPORTED for an architecture other than llama (norm RoPE, no
 * biases); LB_ERR_NOMEM. */
lb_status lb__tune_model_init(lb_tune_model *tm, const lb_model *m, lb_pool *pool, lb_err *err);
void lb__tune_model_free(lb_tune_model *tm);
/* Recomputes w and wt from w0 and the current log-scales. */
void lb__tune_model_apply(lb_tune_model *tm, lb_pool *pool);
/* Writes the tuned model: the source file with every block's scale (d and
 * dmin / m) multiplied by exp(s) and rounded to f16 (clamped to its range),
 * the tuned norm weights, and the extra u32/f32 metadata given (n_meta
 * pairs; values as doubles, written as f32 unless the key ends in "steps",
 * "windows" or "tokens", then u32).  Every other byte is the source's. */
lb_status lb__tune_model_write(const lb_tune_model *tm, const char *path, const char *const *meta_keys,
                               const double *meta_vals, int n_meta, lb_err *err);

/* Forward/backward activations for windows of up to ctx tokens. */
typedef struct lb_tune_state lb_tune_state;
lb_status lb__tune_state_new(const lb_tune_model *tm, int ctx, int n_threads, lb_tune_state **out, lb_err *err);
void lb__tune_state_free(lb_tune_state *st);

/* The student's forward pass over tok[0..n) at positions 0..n-1 (n <= ctx),
 * keeping what the backward pass needs.  Returns the logits, [n][n_vocab],
 * owned by st (valid until the next forward). */
const float *lb__tune_forward(lb_tune_state *st, const lb_tune_model *tm, lb_pool *pool, const int32_t *tok, int n);
/* Sum over the n positions of KL(teacher || student), teacher given as
 * log-probabilities tlp [n][n_vocab], in double; when grad_scale != 0 also
 * sets the logits' gradient to grad_scale * d(sum)/d(logits). */
double lb__tune_kl(lb_tune_state *st, const lb_tune_model *tm, const float *tlp, int n, float grad_scale);
/* Back-propagates the logits' gradient of the last forward (set by
 * lb__tune_kl) and ADDS the gradient of every parameter to tm->grads. */
void lb__tune_backward(lb_tune_state *st, lb_tune_model *tm, lb_pool *pool, const int32_t *tok, int n);

/* Adam with bias correction over n parameters; m and v [n] start at zero. */
typedef struct lb_adam {
    int64_t n;
    float *m, *v;
    int t;
    float beta1, beta2, eps;
} lb_adam;
lb_status lb__adam_init(lb_adam *a, int64_t n, lb_err *err);
void lb__adam_free(lb_adam *a);
/* p -= lr * lr_scale[i] * mhat / (sqrt(vhat) + eps); lr_scale may be NULL. */
void lb__adam_step(lb_adam *a, float *p, const float *g, const float *lr_scale, float lr);

/* The training run behind `lowbit tune`. */
typedef struct lb_tune_params {
    int ctx;            /* tokens per window (BOS + ctx - 1 of text); default 256 */
    int steps;          /* optimizer steps; default 200 */
    int batch;          /* windows per step; default 4 */
    float lr;           /* peak learning rate of the log-scales; default 2e-3 */
    int warmup;         /* linear warm-up steps, then cosine decay to lr/10; default 10 */
    int holdout;        /* windows of the calibration text held out for validation; default 8 */
    int eval_every;     /* held-out KL every this many steps (and at the end); default 25 */
    int max_windows;    /* training windows at most (0: all the text gives) */
    int n_threads;      /* default 2 */
    uint64_t seed;      /* window order; default 1 */
    bool train_norms;   /* default true */
    bool keep_best;     /* keep the parameters of the best held-out KL; default true */
} lb_tune_params;

lb_tune_params lb_tune_default_params(void);

typedef struct lb_tune_report {
    double heldout_kl_before, heldout_kl_after;
    int steps_done, best_step, n_train_windows, n_heldout_windows;
    double seconds;
} lb_tune_report;

/* Tunes student against teacher (the same architecture and vocabulary) on
 * the text calib and writes out_path.  Progress lines go to stderr when
 * verbose.  The held-out windows are the last p->holdout windows of the
 * text and never trained on. */
lb_status lb_tune_run(lb_model *student, lb_model *teacher, const char *calib, size_t calib_len,
                      const lb_tune_params *p, const char *out_path, bool verbose, lb_tune_report *rep,
                      lb_err *err);

#endif
