/* The llama-family forward pass: for a batch of tokens, embedding lookup,
 * then per layer RMSNorm -> Q/K/V projections (+bias) -> RoPE -> cached
 * causal attention -> output projection -> residual -> RMSNorm -> SwiGLU FFN
 * -> residual, then the final norm and the vocabulary projection. */
#include "forward.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "ops.h"

struct lb_forward {
    int n_batch;
    /* Every buffer holds n_batch rows. */
    float *x;      /* [n_batch][n_embd]  residual stream */
    float *xn;     /* [n_batch][n_embd]  normalised input of a sub-block */
    float *q;      /* [n_batch][n_head * head_dim] */
    float *k;      /* [n_batch][n_head_kv * head_dim] */
    float *v;      /* [n_batch][n_head_kv * head_dim] */
    float *att;    /* [n_batch][n_head * head_dim]  attention output */
    float *proj;   /* [n_batch][n_embd]  output of attn_output / ffn_down */
    float *gate;   /* [n_batch][n_ff] */
    float *up;     /* [n_batch][n_ff] */
    float *cs;     /* [n_batch][n_rot / 2][2]  cos, sin per position */
    float theta_scale;   /* ratio of successive RoPE frequencies, base^(-2/n_rot) */
    int *single_idx;   /* [n_batch] multi-sequence batches: the sequences with one row */
    int *single_row;   /* [n_batch] and their rows */
    int *pos;          /* [n_batch] each row's position */
    void *act;     /* activation scratch for lb_matmul, act_bytes */
    size_t act_bytes;
    void *block;   /* the single allocation all of the above live in */
};

static size_t round_up(size_t n) { return (n + 63) & ~(size_t)63; }

/* Largest activation scratch any weight of the model needs for n rows;
 * the quantized formats take at most ~1.25 bytes per element, f32 none. */
static size_t act_bytes_for(const lb_hparams *hp, int n)
{
    int64_t widest = hp->n_embd;
    if (hp->n_ff > widest)
        widest = hp->n_ff;
    if ((int64_t)hp->n_head * hp->head_dim > widest)
        widest = (int64_t)hp->n_head * hp->head_dim;
    /* a8_32 is 40 bytes per 32 elements, a8_K 292 per 256: both < 1.25 bytes each */
    return round_up((size_t)((widest * 5 + 3) / 4 + 64) * (size_t)n);
}

static size_t layout(const lb_hparams *hp, int nb, size_t off[10])
{
    const size_t E = (size_t)hp->n_embd, Q = (size_t)hp->n_head * (size_t)hp->head_dim,
                 KV = (size_t)hp->n_head_kv * (size_t)hp->head_dim, F = (size_t)hp->n_ff;
    const size_t sizes[10] = {
        E * nb, E * nb, Q * nb, KV * nb, KV * nb, Q * nb, E * nb, F * nb, F * nb, (size_t)hp->n_rot * nb,
    };
    size_t total = 0;
    for (int i = 0; i < 10; i++) {
        off[i] = total;
        total += round_up(sizes[i] * sizeof(float));
    }
    return total;
}

size_t lb_forward_bytes(const lb_hparams *hp, int n_batch)
{
    size_t off[10];
    return layout(hp, n_batch, off) + act_bytes_for(hp, n_batch) + sizeof(lb_forward) +
           3 * (size_t)n_batch * sizeof(int);
}

lb_status lb_forward_new(const lb_model *m, int n_batch, lb_forward **out, lb_err *err)
{
    const lb_hparams *hp = &m->hp;
    if (n_batch < 1)
        return lb__errf(err, LB_ERR_INVALID_ARG, "n_batch must be >= 1 (got %d)", n_batch);
    lb_forward *f = calloc(1, sizeof *f);
    if (!f)
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate forward state");
    size_t off[10];
    size_t fbytes = layout(hp, n_batch, off);
    f->act_bytes = act_bytes_for(hp, n_batch);
    size_t total = fbytes + f->act_bytes;
    f->block = lb_aligned_alloc(64, total);
    f->single_idx = calloc(3 * (size_t)n_batch, sizeof(int));
    if (!f->block || !f->single_idx) {
        lb_aligned_free(f->block);
        free(f->single_idx);
        free(f);
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate %zu bytes of scratch for batches of %d", total, n_batch);
    }
    char *b = f->block;
    float **bufs[10] = {&f->x, &f->xn, &f->q, &f->k, &f->v, &f->att, &f->proj, &f->gate, &f->up, &f->cs};
    for (int i = 0; i < 10; i++)
        *bufs[i] = (float *)(b + off[i]);
    f->act = b + fbytes;
    f->single_row = f->single_idx + n_batch;
    f->pos = f->single_idx + 2 * (size_t)n_batch;
    f->n_batch = n_batch;
    f->theta_scale = powf(hp->rope_base, -2.0f / (float)hp->n_rot);
    *out = f;
    return LB_OK;
}

void lb_forward_free(lb_forward *f)
{
    if (!f)
        return;
    lb_aligned_free(f->block);
    free(f->single_idx);
    free(f);
}

/* One product of a sub-block: its weights (Q, K, V; gate, up; or one) and
 * the conversion of its input, when the rows can be converted ahead. */
typedef struct product {
    lb_matw w[3];
    int nw;
    lb_matmul_in in;
    bool ahead;   /* in is valid: per_token converts each row */
} product;

static void product_init(product *p, const lb_weight *const *w, int nw)
{
    for (int i = 0; i < nw; i++)
        p->w[i] = (lb_matw){w[i]->data, w[i]->type, w[i]->rows, w[i]->cols, w[i]->row_bytes};
    p->nw = nw;
    p->ahead = lb_matmul_input(p->w, nw, &p->in);
}

/* x's rows were converted ahead iff converted (and then p->ahead holds). */
static void product_run(lb_pool *pool, const product *p, const float *x, int n, float *const *y, void *act,
                        bool converted)
{
    lb_matmul_fused_in(pool, p->w, p->nw, x, n, y, act, converted && p->ahead);
}

static void add_bias(float *y, const lb_vec *b, int n, int64_t width)
{
    if (!b->data)
        return;
    for (int t = 0; t < n; t++)
        lb_add(y + t * width, b->data, width);
}

/* Per-token elementwise work is split over the pool by token, and each row
 * is also converted for the product that reads it next (lb_matmul_input):
 * converting all rows on the calling thread kept the others waiting. */
typedef enum tok_step {
    TOK_ATTN_NORM,   /* [residual add,] attention norm; at layer 0 the embedding and RoPE angles first */
    TOK_ROPE,
    TOK_FFN_NORM,    /* residual add, FFN norm */
    TOK_SWIGLU,
    TOK_OUT_NORM,    /* residual add, final norm */
} tok_step;

typedef struct tok_job {
    lb_forward *f;
    const lb_model *m;
    const lb_layer *L;
    const int32_t *tokens;   /* [n] for the embedding */
    int n;
    tok_step which;
    bool add;                /* x += proj first (the residual of the sub-block before) */
    bool embed;              /* TOK_ATTN_NORM of layer 0 */
    const lb_matmul_in *in;  /* the next product's conversion, or NULL: it converts itself */
    atomic_int next;   /* the next token to take: claimed, so a late thread never holds the step back */
} tok_job;

/* Row t's embedding and its RoPE angles: pair i's angle is pos * theta_scale^i,
 * the power taken by repeated multiplication, then scaled (linear RoPE
 * scaling).  Float rather than double on purpose: it is how llama.cpp
 * computes them, and the rotated K and Q must round as there (see ops.c). */
static void embed_row(lb_forward *f, const lb_model *m, int32_t token, int64_t t)
{
    const lb_hparams *hp = &m->hp;
    lb_dequant_fn emb_row = lb_kernels()->dequant[m->tok_embd.type];
    emb_row((const char *)m->tok_embd.data + (size_t)token * m->tok_embd.row_bytes, f->x + t * hp->n_embd,
            hp->n_embd);
    float theta = (float)f->pos[t];
    float *cs = f->cs + t * hp->n_rot;
    for (int i = 0; i < hp->n_rot / 2; i++) {
        float th = hp->rope_scale * theta;
        cs[2 * i] = cosf(th);
        cs[2 * i + 1] = sinf(th);
        theta *= f->theta_scale;
    }
}

static void rope_row(lb_forward *f, const lb_hparams *hp, int64_t t)
{
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    const float *cs = f->cs + t * hp->n_rot;
    if (hp->rope == LB_ROPE_NORM) {
        lb_rope_norm(f->q + t * Q, hp->n_head, hp->head_dim, hp->n_rot, cs);
        lb_rope_norm(f->k + t * KV, hp->n_head_kv, hp->head_dim, hp->n_rot, cs);
    } else {
        lb_rope_neox(f->q + t * Q, hp->n_head, hp->head_dim, hp->n_rot, cs);
        lb_rope_neox(f->k + t * KV, hp->n_head_kv, hp->head_dim, hp->n_rot, cs);
    }
}

/* Rows a thread claims at a time in the norm steps: lb_rmsnorm_rows runs
 * four rows' sums side by side. */
#define NORM_ROWS 4

static void per_token(void *ctx, int ith, int nth)
{
    tok_job *j = ctx;
    lb_forward *f = j->f;
    const lb_hparams *hp = &j->m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const float *norm = j->which == TOK_ATTN_NORM  ? j->L->attn_norm.data
                        : j->which == TOK_FFN_NORM ? j->L->ffn_norm.data
                        : j->which == TOK_OUT_NORM ? j->m->out_norm.data
                                                   : NULL;
    const int unit = norm ? NORM_ROWS : 1;
    (void)ith;
    (void)nth;
    for (int t0; (t0 = atomic_fetch_add_explicit(&j->next, unit, memory_order_relaxed)) < j->n;) {
        const int t1 = t0 + unit < j->n ? t0 + unit : j->n;
        for (int64_t t = t0; t < t1; t++) {
            if (j->embed)
                embed_row(f, j->m, j->tokens[t], t);
            if (j->add)
                lb_add(f->x + t * E, f->proj + t * E, E);
            if (j->which == TOK_ROPE)
                rope_row(f, hp, t);
            else if (j->which == TOK_SWIGLU)
                lb_swiglu(f->gate + t * F, f->up + t * F, F);
        }
        if (norm)
            lb_rmsnorm_rows(t1 - t0, f->xn + t0 * E, f->x + t0 * E, E, norm, E, hp->norm_eps);
        for (int64_t t = t0; j->in && t < t1; t++)
            lb_matmul_input_row(j->in, norm ? f->xn + t * E : f->gate + t * F, t, f->act);
    }
}

/* Rows up to which the per-token work stays on the calling thread: a decode
 * step's few rows of norms and SwiGLU take microseconds, less than a pool
 * barrier, which on a shared machine can cost a whole time slice.  Eight
 * rows (8 streams decoded together) are worth sharing: with 8 here the other
 * thread idled through them, and 8-stream decoding of techdocs-28M Q4_K_M
 * ran 5% slower (paired runs, docs/server.md). */
#define PER_TOKEN_INLINE_MAX 4

static void run_tokens(lb_pool *pool, tok_job *j, tok_step which, bool add, const lb_matmul_in *in)
{
    j->which = which;
    j->add = add;
    j->in = in;
    atomic_store_explicit(&j->next, 0, memory_order_relaxed);
    if (j->n <= PER_TOKEN_INLINE_MAX)
        per_token(j, 0, 1);
    else
        lb_pool_run_claimed(pool, per_token, j);
}

/* Where the rows of a batch come from: one sequence (row t at position
 * pos0 + t of cache kv) or several (seq[i]'s rows one after another). */
typedef struct rows {
    const lb_kv_ops *kv;
    int pos0;
    const lb_fwd_seq *seq;   /* [n_seq] or NULL for one sequence */
    int n_seq;
    lb_pool *attn_pool;
} rows;

/* Attention of the single-row sequences of a batch: each thread takes whole
 * sequences and runs their attention single-threaded on their own caches,
 * so the work is one pool run per layer rather than one per sequence. */
typedef struct seq_attn_job {
    const lb_fwd_seq *seq;
    const int *idx;   /* [n] indices into seq */
    const int *row;   /* [n] their rows */
    int il, n;
    lb_forward *f;    /* q, k, v: the rows' queries, keys and values (stored here); att: the outputs */
    const lb_hparams *hp;
    bool rope;        /* the rows' RoPE is done here too (a decode step: every row is a sequence) */
    const lb_matmul_in *in;   /* each output row converted for the output projection, or NULL */
    atomic_int next;  /* the next sequence to take: claimed, so a late thread never holds the step back */
    atomic_int failed;    /* 1 + the first index into idx whose store failed, 0 if none */
    atomic_int status;    /* that store's status */
} seq_attn_job;

/* Each sequence's store too: the calling thread storing 8 sequences' keys
 * and values one after another kept the other thread idle.  Short prompt
 * chunks of the same step are items too (whole, single-threaded), placed
 * after the single rows and claimed first, being the longest. */
static void seq_attend(void *ctx, int ith, int nth)
{
    seq_attn_job *j = ctx;
    lb_forward *f = j->f;
    const int64_t qw = (int64_t)j->hp->n_head * j->hp->head_dim, kvw = (int64_t)j->hp->n_head_kv * j->hp->head_dim;
    (void)ith;
    (void)nth;
    for (;;) {
        int c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (c >= j->n)
            break;
        const int t = j->n - 1 - c;
        const lb_fwd_seq *sq = &j->seq[j->idx[t]];
        const int64_t row = j->row[t];
        if (j->rope)
            rope_row(f, j->hp, row);
        lb_status st = sq->kv.store(sq->kv.ctx, j->il, sq->pos0, sq->n, f->k + row * kvw, f->v + row * kvw);
        if (st) {
            int none = 0;
            if (atomic_compare_exchange_strong(&j->failed, &none, t + 1))
                atomic_store(&j->status, (int)st);
            continue;
        }
        sq->kv.attend(sq->kv.ctx, j->il, sq->pos0, sq->n, f->q + row * qw, f->att + row * qw, NULL);
        if (j->in)
            lb_matmul_input_row(j->in, f->att + row * qw, row, f->act);
    }
}

/* Finds a batch's single-row sequences (single_idx, single_row) and returns
 * their count. */
static int find_singles(lb_forward *f, const rows *r)
{
    int n_single = 0;
    for (int i = 0, row = 0; i < r->n_seq; row += r->seq[i++].n)
        if (r->seq[i].n == 1) {
            f->single_idx[n_single] = i;
            f->single_row[n_single++] = row;
        }
    return n_single;
}

/* Rows x cached positions of a prompt chunk up to which its attention stays
 * on the calling thread in a multi-sequence batch (about 0.1 ms of work). */
#define SMALL_CHUNK_ATTN 2048

/* A prompt chunk whose attention one thread does in less time than the attention pool's barrier takes. */
static bool small_chunk(const lb_fwd_seq *sq) { return (int64_t)sq->n * (sq->pos0 + sq->n) <= SMALL_CHUNK_ATTN; }

/* n_single: find_singles' count; rope: the RoPE of the single rows is
 * still to do (and they are all the rows); in: the output projection's
 * conversion to do per row (with rope). */
static lb_status store_and_attend(lb_forward *f, const lb_hparams *hp, const rows *r, lb_pool *pool, int il, int n,
                                  int n_single, bool rope, const lb_matmul_in *in, lb_err *err)
{
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    if (!r->seq) {
        lb_status st = r->kv->store(r->kv->ctx, il, r->pos0, n, f->k, f->v);
        if (st)
            return lb__errf(err, st, "the KV cache cannot hold positions %d..%d", r->pos0, r->pos0 + n - 1);
        r->kv->attend(r->kv->ctx, il, r->pos0, n, f->q, f->att, pool);
        return LB_OK;
    }
    /* Whole single-row sequences go to the threads, which store them too (seq_attend), and so do short
     * prompt chunks: done one after another on the calling thread they kept the other thread idle (8
     * requests restarting together put 7 prompts of ~11 rows in one step). */
    int n_items = n_single;
    for (int i = 0; i < r->n_seq; i++)
        n_items += r->seq[i].n > 1 && small_chunk(&r->seq[i]);
    const bool spread = n_items >= lb_pool_size(pool);
    n_items = n_single;
    for (int i = 0, row = 0; i < r->n_seq; row += r->seq[i++].n) {
        const lb_fwd_seq *sq = &r->seq[i];
        if (sq->n == 1 && spread)
            continue;
        if (spread && small_chunk(sq)) {
            f->single_idx[n_items] = i;
            f->single_row[n_items++] = row;
            continue;
        }
        lb_status st = sq->kv.store(sq->kv.ctx, il, sq->pos0, sq->n, f->k + row * KV, f->v + row * KV);
        if (st)
            return lb__errf(err, st, "the KV cache of sequence %d cannot hold positions %d..%d", i, sq->pos0,
                            sq->pos0 + sq->n - 1);
        if (sq->n > 1) {
            /* A prompt chunk: its rows and heads are spread over the attention pool, unless it is short
             * (a chat turn joining the batch): then the calling thread does it in less time than a
             * barrier with a descheduled worker, which is what every step of the other streams waits
             * for.  Rows never depend on the thread that computes them. */
            lb_pool *ap = small_chunk(sq) ? NULL : r->attn_pool;
            sq->kv.attend(sq->kv.ctx, il, sq->pos0, sq->n, f->q + row * Q, f->att + row * Q, ap);
        }
    }
    /* Fewer single-row sequences than threads: spreading whole sequences
     * would leave threads idle, so each gets the attention pool instead. */
    if (!spread) {
        for (int t = 0; t < n_single; t++) {
            const lb_fwd_seq *sq = &r->seq[f->single_idx[t]];
            int row = f->single_row[t];
            sq->kv.attend(sq->kv.ctx, il, sq->pos0, 1, f->q + row * Q, f->att + row * Q, r->attn_pool);
        }
        return LB_OK;
    }
    seq_attn_job j = {r->seq, f->single_idx, f->single_row, il, n_items, f, hp, rope, in, 0, 0, 0};
    atomic_init(&j.next, 0);
    atomic_init(&j.failed, 0);
    atomic_init(&j.status, 0);
    lb_pool_run_claimed(pool, seq_attend, &j);
    int bad = atomic_load(&j.failed);
    if (bad) {
        const lb_fwd_seq *sq = &r->seq[f->single_idx[bad - 1]];
        return lb__errf(err, (lb_status)atomic_load(&j.status), "the KV cache of sequence %d cannot hold position %d",
                        f->single_idx[bad - 1], sq->pos0);
    }
    return LB_OK;
}

static lb_status run(lb_forward *f, const lb_model *m, const rows *r, lb_pool *pool, const int32_t *tokens, int n,
                     float *logits, int n_out, lb_err *err)
{
    const lb_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd;
    if (n < 1 || n > f->n_batch)
        return lb__errf(err, LB_ERR_INVALID_ARG, "batch of %d tokens (allowed 1..%d)", n, f->n_batch);
    if (n_out < 0 || n_out > n)
        return lb__errf(err, LB_ERR_INVALID_ARG, "n_out %d outside 0..%d", n_out, n);
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= hp->n_vocab)
            return lb__errf(err, LB_ERR_RANGE, "token id %d at batch index %d is outside the vocabulary (0..%d)",
                            tokens[t], t, hp->n_vocab - 1);
    for (int t = 0, sq = 0, k = 0; t < n; t++) {
        int pos = r->pos0 + t;
        if (r->seq) {
            while (k == r->seq[sq].n) {   /* n was checked to be the sum of the sequences' rows */
                sq++;
                k = 0;
            }
            pos = r->seq[sq].pos0 + k++;
        }
        f->pos[t] = pos;
    }

    const int64_t Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    /* A decode step of several streams: every row is a sequence of its own,
     * spread whole over the threads, which then also do each row's RoPE
     * and the conversion of its attention output (seq_attend). */
    const int n_single = r->seq ? find_singles(f, r) : 0;
    const bool decode = r->seq && n_single == r->n_seq && n_single >= lb_pool_size(pool);
    tok_job j = {f, m, NULL, tokens, n, TOK_ATTN_NORM, false, true, NULL, 0};
    for (int il = 0; il < hp->n_layer; il++) {
        const lb_layer *L = &m->layers[il];
        const lb_weight *qkv_w[3] = {&L->wq, &L->wk, &L->wv}, *gu_w[2] = {&L->w_gate, &L->w_up};
        product qkv, wo, gu, down;
        product_init(&qkv, qkv_w, 3);
        product_init(&wo, (const lb_weight *[]){&L->wo}, 1);
        product_init(&gu, gu_w, 2);
        product_init(&down, (const lb_weight *[]){&L->w_down}, 1);
        j.L = L;
        /* the residual of the layer before (its FFN) is added here */
        run_tokens(pool, &j, TOK_ATTN_NORM, il > 0, qkv.ahead ? &qkv.in : NULL);
        j.embed = false;
        float *const qkv_out[3] = {f->q, f->k, f->v};
        product_run(pool, &qkv, f->xn, n, qkv_out, f->act, true);
        add_bias(f->q, &L->bq, n, Q);
        add_bias(f->k, &L->bk, n, KV);
        add_bias(f->v, &L->bv, n, KV);
        if (!decode)
            run_tokens(pool, &j, TOK_ROPE, false, NULL);
        lb_status st = store_and_attend(f, hp, r, pool, il, n, n_single, decode, decode && wo.ahead ? &wo.in : NULL, err);
        if (st)
            return st;
        product_run(pool, &wo, f->att, n, &f->proj, f->act, decode);
        run_tokens(pool, &j, TOK_FFN_NORM, true, gu.ahead ? &gu.in : NULL);
        float *const gu_out[2] = {f->gate, f->up};
        product_run(pool, &gu, f->xn, n, gu_out, f->act, true);
        run_tokens(pool, &j, TOK_SWIGLU, false, down.ahead ? &down.in : NULL);
        product_run(pool, &down, f->gate, n, &f->proj, f->act, true);
    }
    /* the last FFN's residual */
    if (logits && n_out > 0) {
        run_tokens(pool, &j, TOK_OUT_NORM, true, NULL);
        const float *last = f->xn + (int64_t)(n - n_out) * E;
        if (r->seq && n_out != n) {
            /* The last row of every sequence, gathered: proj is free after the last layer. */
            for (int i = 0, row = 0; i < r->n_seq; i++) {
                row += r->seq[i].n;
                memcpy(f->proj + (int64_t)i * E, f->xn + (int64_t)(row - 1) * E, (size_t)E * sizeof(float));
            }
            last = f->proj;
        }
        product out;
        product_init(&out, (const lb_weight *[]){&m->output}, 1);
        product_run(pool, &out, last, n_out, &logits, f->act, false);
    }
    return LB_OK;   /* without logits the last residual add is skipped: nothing reads x after the run */
}

lb_status lb_forward_run(lb_forward *f, const lb_model *m, const lb_kv_ops *kv, lb_pool *pool,
                         const int32_t *tokens, int n, int pos0, float *logits, int n_out, lb_err *err)
{
    rows r = {kv, pos0, NULL, 0, pool};
    return run(f, m, &r, pool, tokens, n, logits, n_out, err);
}

lb_status lb_forward_run_multi(lb_forward *f, const lb_model *m, const lb_fwd_seq *seq, int n_seq, lb_pool *pool,
                               lb_pool *attn_pool, const int32_t *tokens, float *logits, lb_err *err)
{
    if (!seq || n_seq < 1 || n_seq > f->n_batch)
        return lb__errf(err, LB_ERR_INVALID_ARG, "a batch of %d sequences (allowed 1..%d)", n_seq, f->n_batch);
    int n = 0;
    for (int i = 0; i < n_seq; i++) {
        if (seq[i].n < 1 || seq[i].pos0 < 0)
            return lb__errf(err, LB_ERR_INVALID_ARG, "sequence %d of the batch has %d rows at position %d", i,
                            seq[i].n, seq[i].pos0);
        if (seq[i].n > f->n_batch - n)
            return lb__errf(err, LB_ERR_INVALID_ARG, "the batch's sequences have more than %d rows", f->n_batch);
        n += seq[i].n;
    }
    rows r = {NULL, 0, seq, n_seq, attn_pool};
    return run(f, m, &r, pool, tokens, n, logits, logits ? n_seq : 0, err);
}
