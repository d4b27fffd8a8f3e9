/* The trainable student: every 2-D weight dequantized once (w0), its
 * per-block log-scales and the RMSNorm weights in one parameter vector, and
 * the file written back with the tuned block scales. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/fp16.h"
#include "quant/blocks.h"
#include "quant/lbq.h"
#include "quant/lbqv.h"
#include "quant/quant.h"
#include "tune/tune.h"

/* Where a type keeps its block scale(s): every element of a block is linear
 * in d (and in dmin / m, where present), so scaling both by a factor scales
 * the block's dequantized values by exactly that factor. */
typedef struct scale_layout {
    uint32_t type;
    int blck, bytes;
    int off_d, off_m;   /* byte offsets of the f16 scale and of the f16 min-scale (-1: none) */
} scale_layout;

static const scale_layout layouts[] = {
    {LB_TYPE_Q4_0, LB_QK, sizeof(lb_block_q4_0), offsetof(lb_block_q4_0, d), -1},
    {LB_TYPE_Q4_1, LB_QK, sizeof(lb_block_q4_1), offsetof(lb_block_q4_1, d), offsetof(lb_block_q4_1, m)},
    {LB_TYPE_Q5_0, LB_QK, sizeof(lb_block_q5_0), offsetof(lb_block_q5_0, d), -1},
    {LB_TYPE_Q5_1, LB_QK, sizeof(lb_block_q5_1), offsetof(lb_block_q5_1, d), offsetof(lb_block_q5_1, m)},
    {LB_TYPE_Q8_0, LB_QK, sizeof(lb_block_q8_0), offsetof(lb_block_q8_0, d), -1},
    {LB_TYPE_Q2_K, LB_QK_K, sizeof(lb_block_q2_K), offsetof(lb_block_q2_K, d), offsetof(lb_block_q2_K, dmin)},
    {LB_TYPE_Q3_K, LB_QK_K, sizeof(lb_block_q3_K), offsetof(lb_block_q3_K, d), -1},
    {LB_TYPE_Q4_K, LB_QK_K, sizeof(lb_block_q4_K), offsetof(lb_block_q4_K, d), offsetof(lb_block_q4_K, dmin)},
    {LB_TYPE_Q5_K, LB_QK_K, sizeof(lb_block_q5_K), offsetof(lb_block_q5_K, d), offsetof(lb_block_q5_K, dmin)},
    {LB_TYPE_Q6_K, LB_QK_K, sizeof(lb_block_q6_K), offsetof(lb_block_q6_K, d), -1},
    {LB_TYPE_LBQ2, LB_QK_K, sizeof(lb_block_lbq2), offsetof(lb_block_lbq2, d), -1},
    {LB_TYPE_LBQ3, LB_QK_K, sizeof(lb_block_lbq3), offsetof(lb_block_lbq3, d), -1},
    {LB_TYPE_LBQ4, LB_QK_K, sizeof(lb_block_lbq4), offsetof(lb_block_lbq4, d), -1},
    {LB_TYPE_LBQV, LB_QK_K, sizeof(lb_block_lbqv), offsetof(lb_block_lbqv, d), -1},
};

static const scale_layout *scale_layout_of(uint32_t type)
{
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        if (layouts[i].type == type)
            return &layouts[i];
    return NULL;
}

static lb_status weight_init(lb_tune_weight *tw, const lb_weight *src, bool need_t, const char *what, lb_err *err)
{
    memset(tw, 0, sizeof *tw);
    tw->src = src;
    const lb_quant_traits *qt = lb_quant_ref(src->type);
    if (!qt || !qt->dequant)
        return lb__errf(err, LB_ERR_UNSUPPORTED, "%s: tensor type %u cannot be dequantized", what, src->type);
    const scale_layout *sl = scale_layout_of(src->type);
    if (!sl && src->type != LB_TYPE_F32 && src->type != LB_TYPE_F16 && src->type != LB_TYPE_BF16)
        return lb__errf(err, LB_ERR_UNSUPPORTED, "%s: tuning does not know the block scales of type %u", what,
                        src->type);
    size_t n = (size_t)src->rows * (size_t)src->cols;
    tw->w0 = lb_aligned_alloc(64, n * sizeof(float));
    tw->w = lb_aligned_alloc(64, n * sizeof(float));
    tw->wt = need_t ? lb_aligned_alloc(64, n * sizeof(float)) : NULL;
    if (!tw->w0 || !tw->w || (need_t && !tw->wt))
        return lb__errf(err, LB_ERR_NOMEM, "%s: cannot allocate %zu floats", what, n * 3);
    for (int64_t r = 0; r < src->rows; r++)
        qt->dequant((const char *)src->data + (size_t)r * src->row_bytes, tw->w0 + (size_t)r * src->cols,
                    src->cols);
    if (sl) {
        tw->blck = sl->blck;
        tw->nblk = src->rows * (src->cols / sl->blck);
    }
    return LB_OK;
}

static void weight_free(lb_tune_weight *tw)
{
    lb_aligned_free(tw->w0);
    lb_aligned_free(tw->w);
    lb_aligned_free(tw->wt);
    memset(tw, 0, sizeof *tw);
}

void lb__tune_model_free(lb_tune_model *tm)
{
    if (!tm)
        return;
    for (int i = 0; tm->w && i < tm->n_w; i++)   /* a tied output shares the embedding's entry */
        weight_free(&tm->w[i]);
    free(tm->w);
    free(tm->params);
    free(tm->grads);
    free(tm->lr_scale);
    memset(tm, 0, sizeof *tm);
}

static float rms_of(const float *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return n ? (float)sqrt(s / (double)n) : 1.0f;
}

lb_status lb__tune_model_init(lb_tune_model *tm, const lb_model *m, lb_pool *pool, lb_err *err)
{
    memset(tm, 0, sizeof *tm);
    const lb_hparams *hp = &m->hp;
    if (m->arch != LB_ARCH_LLAMA)
        return lb__errf(err, LB_ERR_UNSUPPORTED, "tuning supports the llama architecture only (this model is %s)",
                        m->arch_name);
    if (hp->rope != LB_ROPE_NORM || hp->n_rot != hp->head_dim || hp->n_head % hp->n_head_kv)
        return lb__errf(err, LB_ERR_UNSUPPORTED, "tuning needs adjacent-pair RoPE over whole heads and "
                        "n_head a multiple of n_head_kv");
    for (int il = 0; il < hp->n_layer; il++) {
        const lb_layer *L = &m->layers[il];
        if (L->bq.data || L->bk.data || L->bv.data)
            return lb__errf(err, LB_ERR_UNSUPPORTED, "layer %d has attention biases (not llama)", il);
        if (!L->attn_norm.data || !L->ffn_norm.data)
            return lb__errf(err, LB_ERR_NOT_FOUND, "layer %d lacks a norm weight", il);
    }
    tm->m = m;
    tm->hp = *hp;
    bool tied = m->output.data == m->tok_embd.data;
    tm->n_w = hp->n_layer * LB_TUNE_WPL + (tied ? 1 : 2);
    tm->w = calloc((size_t)tm->n_w + 1, sizeof *tm->w);
    if (!tm->w)
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate the weight table");
    lb_status st = LB_OK;
    static const char *names[LB_TUNE_WPL] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                             "ffn_down"};
    for (int il = 0; il < hp->n_layer && !st; il++) {
        const lb_layer *L = &m->layers[il];
        const lb_weight *ws[LB_TUNE_WPL] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int j = 0; j < LB_TUNE_WPL && !st; j++) {
            char what[64];
            snprintf(what, sizeof what, "blk.%d.%s.weight", il, names[j]);
            st = weight_init(&tm->w[il * LB_TUNE_WPL + j], ws[j], true, what, err);
        }
    }
    int ie = hp->n_layer * LB_TUNE_WPL;
    if (!st)
        st = weight_init(&tm->w[ie], &m->tok_embd, tied, "token_embd.weight", err);
    tm->emb = &tm->w[ie];
    tm->out = tied ? tm->emb : &tm->w[ie + 1];
    if (!st && !tied)
        st = weight_init(tm->out, &m->output, true, "output.weight", err);
    if (st) {
        lb__tune_model_free(tm);
        return st;
    }
    const int64_t E = hp->n_embd;
    for (int i = 0; i < tm->n_w; i++)
        tm->n_scales += tm->w[i].nblk;
    tm->n_params = tm->n_scales + (2 * (int64_t)hp->n_layer + 1) * E;
    tm->params = calloc((size_t)tm->n_params, sizeof(float));
    tm->grads = calloc((size_t)tm->n_params, sizeof(float));
    tm->lr_scale = calloc((size_t)tm->n_params, sizeof(float));
    if (!tm->params || !tm->grads || !tm->lr_scale) {
        lb__tune_model_free(tm);
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate %lld parameters", (long long)tm->n_params);
    }
    int64_t off = 0;
    for (int i = 0; i < tm->n_w; i++) {
        if (!tm->w[i].nblk)
            continue;
        tm->w[i].s = tm->params + off;
        tm->w[i].gs = tm->grads + off;
        off += tm->w[i].nblk;
    }
    for (int64_t i = 0; i < off; i++)
        tm->lr_scale[i] = 1.0f;
    tm->attn_norm = tm->params + off;
    tm->ffn_norm = tm->attn_norm + (int64_t)hp->n_layer * E;
    tm->out_norm = tm->ffn_norm + (int64_t)hp->n_layer * E;
    /* Norm weights are absolute values of any size: each vector steps in
     * units of its own RMS so that one learning rate suits both groups. */
    for (int il = 0; il < hp->n_layer; il++) {
        memcpy(tm->attn_norm + il * E, m->layers[il].attn_norm.data, (size_t)E * sizeof(float));
        memcpy(tm->ffn_norm + il * E, m->layers[il].ffn_norm.data, (size_t)E * sizeof(float));
    }
    memcpy(tm->out_norm, m->out_norm.data, (size_t)E * sizeof(float));
    for (int v = 0; v < 2 * hp->n_layer + 1; v++) {
        float *x = tm->attn_norm + v * E;
        float r = rms_of(x, E);
        for (int64_t i = 0; i < E; i++)
            tm->lr_scale[x - tm->params + i] = r;
    }
    tm->train_norms = true;
    lb__tune_model_apply(tm, pool);
    return LB_OK;
}

typedef struct apply_job {
    lb_tune_weight *w;
    int n_w;
} apply_job;

/* Transposes in 32 x 32 tiles so both sides stay in cache. */
static void apply_one(lb_tune_weight *tw, int ith, int nth)
{
    const int64_t R = tw->src->rows, C = tw->src->cols;
    int64_t r0, r1;
    lb_split((R + 31) / 32, ith, nth, &r0, &r1);
    r0 *= 32;
    r1 = r1 * 32 < R ? r1 * 32 : R;
    for (int64_t r = r0; r < r1; r++) {
        const float *a = tw->w0 + r * C;
        float *b = tw->w + r * C;
        if (!tw->s) {
            memcpy(b, a, (size_t)C * sizeof(float));
            continue;
        }
        int64_t nb = C / tw->blck;
        for (int64_t k = 0; k < nb; k++) {
            float f = expf(tw->s[r * nb + k]);
            for (int e = 0; e < tw->blck; e++)
                b[k * tw->blck + e] = f * a[k * tw->blck + e];
        }
    }
    if (!tw->wt)
        return;
    for (int64_t rb = r0; rb < r1; rb += 32)
        for (int64_t cb = 0; cb < C; cb += 32) {
            int64_t re = rb + 32 < r1 ? rb + 32 : r1, ce = cb + 32 < C ? cb + 32 : C;
            for (int64_t c = cb; c < ce; c++)
                for (int64_t r = rb; r < re; r++)
                    tw->wt[c * R + r] = tw->w[r * C + c];
        }
}

static void apply_worker(void *ctx, int ith, int nth)
{
    apply_job *j = ctx;
    for (int i = 0; i < j->n_w; i++)
        apply_one(&j->w[i], ith, nth);
}

void lb__tune_model_apply(lb_tune_model *tm, lb_pool *pool)
{
    apply_job j = {tm->w, tm->n_w};
    lb_pool_run(pool, apply_worker, &j);
}

/* ------------------------------------------------------------ writing */

static void scale_f16(uint8_t *p, float f)
{
    lb_f16 h;
    memcpy(&h, p, 2);
    float v = lb_f16_to_f32(h) * f;
    if (v > 65504.0f)
        v = 65504.0f;
    if (v < -65504.0f)
        v = -65504.0f;
    h = lb_f32_to_f16(v);
    memcpy(p, &h, 2);
}

/* A copy of tw's tensor with its block scales multiplied by exp(s). */
static void *scaled_copy(const lb_tune_weight *tw)
{
    const scale_layout *sl = scale_layout_of(tw->src->type);
    size_t bytes = (size_t)tw->src->rows * tw->src->row_bytes;
    uint8_t *buf = malloc(bytes ? bytes : 1);
    if (!buf)
        return NULL;
    memcpy(buf, tw->src->data, bytes);
    for (int64_t b = 0; b < tw->nblk; b++) {
        uint8_t *blk = buf + (size_t)b * (size_t)sl->bytes;
        float f = expf(tw->s[b]);
        scale_f16(blk + sl->off_d, f);
        if (sl->off_m >= 0)
            scale_f16(blk + sl->off_m, f);
    }
    return buf;
}

lb_status lb__tune_model_write(const lb_tune_model *tm, const char *path, const char *const *meta_keys,
                               const double *meta_vals, int n_meta, lb_err *err)
{
    const lb_model *m = tm->m;
    const lb_gguf *g = m->gguf;
    const int64_t E = tm->hp.n_embd;
    lb_gguf_writer *w = lb_gguf_writer_new();
    int64_t nt = lb_gguf_n_tensors(g);
    void **owned = calloc((size_t)nt + 1, sizeof(void *));   /* [nt] buffers this function allocated */
    lb_status st = !w || !owned ? lb__errf(err, LB_ERR_NOMEM, "cannot allocate the writer") : LB_OK;
    if (!st)
        st = lb_gguf_writer_copy_kv(w, g);
    for (int i = 0; i < n_meta && !st; i++) {
        size_t kl = strlen(meta_keys[i]);
        bool is_int = (kl >= 5 && !strcmp(meta_keys[i] + kl - 5, "steps")) ||
                      (kl >= 7 && !strcmp(meta_keys[i] + kl - 7, "windows")) ||
                      (kl >= 6 && !strcmp(meta_keys[i] + kl - 6, "tokens"));
        st = is_int ? lb_gguf_writer_set_u32(w, meta_keys[i], (uint32_t)meta_vals[i])
                    : lb_gguf_writer_set_f32(w, meta_keys[i], (float)meta_vals[i]);
    }
    for (int64_t i = 0; i < nt && !st; i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        const void *data = t->data;
        for (int k = 0; k < tm->n_w; k++)
            if (tm->w[k].src->data == t->data && tm->w[k].s) {
                data = owned[i] = scaled_copy(&tm->w[k]);
                break;
            }
        const float *norm = NULL;
        for (int il = 0; il < tm->hp.n_layer && !norm; il++) {
            if (m->layers[il].attn_norm.data == t->data)
                norm = tm->attn_norm + il * E;
            else if (m->layers[il].ffn_norm.data == t->data)
                norm = tm->ffn_norm + il * E;
        }
        if (m->out_norm.data == t->data)
            norm = tm->out_norm;
        if (norm && t->type == LB_TYPE_F32)
            data = norm;
        if (!data) {
            st = lb__errf(err, LB_ERR_NOMEM, "cannot copy tensor %.*s", (int)t->name.len, t->name.ptr);
            break;
        }
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        st = lb_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, data);
        if (st)
            lb__errf(err, st, "cannot add tensor %s to the output", name);
    }
    if (!st)
        st = lb_gguf_writer_write(w, path, err);
    for (int64_t i = 0; owned && i < nt; i++)
        free(owned[i]);
    free(owned);
    lb_gguf_writer_free(w);
    return st;
}
