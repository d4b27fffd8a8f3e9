/* Loading a model: open the GGUF, read hyper-parameters, bind weights, build
 * the tokenizer.  Public entry points lb_model_load / lb_model_load_memory. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

static _Thread_local char last_load_error[LB_ERR_MSG_MAX];

const char *lb_last_load_error(void) { return last_load_error; }

lb_model_params lb_model_default_params(void)
{
    lb_model_params p;
    memset(&p, 0, sizeof p);
    p.use_mmap = true;
    return p;
}

static lb_status find(const lb_model *m, const char *name, bool required, const lb_gguf_tensor **out, lb_err *err)
{
    *out = lb_gguf_find_tensor(m->gguf, name);
    if (!*out && required)
        return lb__errf(err, LB_ERR_NOT_FOUND, "tensor '%s' is missing", name);
    return LB_OK;
}

/* A weight that multiplies vectors of `cols` into vectors of `rows`. */
static lb_status bind_weight(const lb_model *m, const char *name, int64_t cols, int64_t rows,
                             bool required, lb_weight *w, lb_err *err)
{
    const lb_gguf_tensor *t;
    lb_status st = find(m, name, required, &t, err);
    memset(w, 0, sizeof *w);
    if (st || !t)
        return st;
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
        return lb__errf(err, LB_ERR_FORMAT, "tensor '%s' has shape [%lld, %lld] (%u dims), expected [%lld, %lld]",
                        name, (long long)t->ne[0], (long long)t->ne[1], t->n_dims, (long long)cols, (long long)rows);
    const lb_quant_traits *q = lb_quant_ref(t->type);
    const lb_type_layout *l = lb_type_layout_of(t->type);
    if (!q || !q->vec_dot || !q->dequant)
        return lb__errf(err, LB_ERR_UNSUPPORTED, "tensor '%s' has type %s, which lowbit cannot compute with yet",
                        name, l ? l->name : "?");
    w->data = t->data;
    w->type = t->type;
    w->cols = cols;
    w->rows = rows;
    w->row_bytes = lb_type_row_bytes(t->type, cols);
    return LB_OK;
}

static lb_status bind_vec(const lb_model *m, const char *name, int64_t n, bool required, lb_vec *v, lb_err *err)
{
    const lb_gguf_tensor *t;
    lb_status st = find(m, name, required, &t, err);
    memset(v, 0, sizeof *v);
    if (st || !t)
        return st;
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return lb__errf(err, LB_ERR_FORMAT, "tensor '%s' has %lld x %lld elements, expected a vector of %lld",
                        name, (long long)t->ne[0], (long long)t->ne[1], (long long)n);
    if (t->type != LB_TYPE_F32)
        return lb__errf(err, LB_ERR_UNSUPPORTED, "tensor '%s' must be f32", name);
    if (((uintptr_t)t->data) % sizeof(float))
        return lb__errf(err, LB_ERR_FORMAT, "tensor '%s' data is not 4-byte aligned", name);
    v->data = t->data;
    v->n = n;
    return LB_OK;
}

lb_status lb__model_bind(lb_model *m, lb_err *err)
{
    lb_hparams *hp = &m->hp;
    const lb_gguf_tensor *emb = lb_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb)
        return lb__errf(err, LB_ERR_NOT_FOUND, "tensor 'token_embd.weight' is missing");
    if (emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
        return lb__errf(err, LB_ERR_FORMAT, "token_embd.weight has %lld rows", (long long)emb->ne[1]);
    hp->n_vocab = (int)emb->ne[1];
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    lb_status st;
    if ((st = bind_weight(m, "token_embd.weight", E, hp->n_vocab, true, &m->tok_embd, err)) ||
        (st = bind_vec(m, "output_norm.weight", E, true, &m->out_norm, err)) ||
        (st = bind_weight(m, "output.weight", E, hp->n_vocab, false, &m->output, err)))
        return st;
    if (!m->output.data)
        m->output = m->tok_embd;   /* tied embeddings */

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers)
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate %d layers", hp->n_layer);
    bool biases = m->arch == LB_ARCH_QWEN2;
    for (int i = 0; i < hp->n_layer; i++) {
        lb_layer *L = &m->layers[i];
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, i), n)
        if ((st = bind_vec(m, NAME("attn_norm.weight"), E, true, &L->attn_norm, err)) ||
            (st = bind_weight(m, NAME("attn_q.weight"), E, Q, true, &L->wq, err)) ||
            (st = bind_weight(m, NAME("attn_k.weight"), E, KV, true, &L->wk, err)) ||
            (st = bind_weight(m, NAME("attn_v.weight"), E, KV, true, &L->wv, err)) ||
            (st = bind_vec(m, NAME("attn_q.bias"), Q, biases, &L->bq, err)) ||
            (st = bind_vec(m, NAME("attn_k.bias"), KV, biases, &L->bk, err)) ||
            (st = bind_vec(m, NAME("attn_v.bias"), KV, biases, &L->bv, err)) ||
            (st = bind_weight(m, NAME("attn_output.weight"), Q, E, true, &L->wo, err)) ||
            (st = bind_vec(m, NAME("ffn_norm.weight"), E, true, &L->ffn_norm, err)) ||
            (st = bind_weight(m, NAME("ffn_gate.weight"), E, hp->n_ff, true, &L->w_gate, err)) ||
            (st = bind_weight(m, NAME("ffn_up.weight"), E, hp->n_ff, true, &L->w_up, err)) ||
            (st = bind_weight(m, NAME("ffn_down.weight"), hp->n_ff, E, true, &L->w_down, err)))
            return st;
#undef NAME
    }
    return LB_OK;
}

static void totals(lb_model *m)
{
    int64_t n = lb_gguf_n_tensors(m->gguf);
    for (int64_t i = 0; i < n; i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(m->gguf, i);
        m->n_params += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        m->weight_bytes += t->nbytes;
    }
}

/* With a progress callback, reads one byte of every page of the file so the
 * weights are in memory (and progress is visible) before the first token,
 * instead of stalling generation on page faults. */
static void prefault(const lb_gguf *g, const lb_model_params *p)
{
    const volatile unsigned char *b = lb_gguf_bytes(g);
    size_t n = lb_gguf_file_size(g), step = n / 100 + 1;
    unsigned sink = 0;
    for (size_t done = 0; done < n;) {
        size_t end = done + step < n ? done + step : n;
        for (size_t i = done; i < end; i += 4096)
            sink += b[i];
        done = end;
        p->progress((float)done / (float)n, p->progress_user);
    }
    (void)sink;
}

static lb_status finish_load(lb_gguf *g, const lb_model_params *p, lb_model **out, lb_err *err)
{
    lb_model *m = calloc(1, sizeof *m);
    if (!m) {
        lb_gguf_free(g);
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate the model");
    }
    m->gguf = g;
    lb_status st = lb__hparams_read(g, &m->arch, &m->hp, err);
    if (!st)
        st = lb__model_bind(m, err);
    if (!st)
        st = lb_tokenizer_new(g, &m->tok, err);
    if (!st && lb_tokenizer_n_vocab(m->tok) != m->hp.n_vocab)
        st = lb__errf(err, LB_ERR_FORMAT, "the vocabulary has %d tokens but token_embd.weight has %d rows",
                      lb_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
    if (st) {
        lb_model_free(m);
        return st;
    }
    lb_gguf_str s;
    snprintf(m->arch_name, sizeof m->arch_name, "%s", m->arch == LB_ARCH_LLAMA ? "llama" : "qwen2");
    if (lb_gguf_get_str(g, "general.name", &s, NULL) == LB_OK)
        snprintf(m->name, sizeof m->name, "%.*s", (int)(s.len > 120 ? 120 : s.len), s.ptr);
    totals(m);
    if (p && p->progress)
        prefault(g, p);
    *out = m;
    return LB_OK;
}

static lb_status load_done(lb_status st, const lb_err *err)
{
    if (st)
        snprintf(last_load_error, sizeof last_load_error, "%s", err->msg);
    else
        last_load_error[0] = '\0';
    return st;
}

lb_status lb_model_load(const char *path, const lb_model_params *p, lb_model **out)
{
    lb_err err = {0};
    if (!path || !out)
        return load_done(lb__errf(&err, LB_ERR_INVALID_ARG, "lb_model_load: path and out are required"), &err);
    lb_model_params def = lb_model_default_params();
    if (!p)
        p = &def;
    lb_gguf *g = NULL;
    lb_status st = lb_gguf_open_file(path, p->use_mmap, &g, &err);   /* its messages name the path */
    if (!st && (st = finish_load(g, p, out, &err)))
        lb__err_prefix(&err, "%s", path);
    return load_done(st, &err);
}

lb_status lb_model_load_memory(const void *data, size_t size, const lb_model_params *p, lb_model **out)
{
    lb_err err = {0};
    if (!data || !out)
        return load_done(lb__errf(&err, LB_ERR_INVALID_ARG, "lb_model_load_memory: data and out are required"), &err);
    lb_model_params def = lb_model_default_params();
    if (!p)
        p = &def;
    lb_gguf *g = NULL;
    lb_status st = lb_gguf_open_memory(data, size, &g, &err);
    if (!st)
        st = finish_load(g, p, out, &err);
    return load_done(st, &err);
}

void lb_model_free(lb_model *m)
{
    if (!m)
        return;
    lb_tokenizer_free(m->tok);
    free(m->layers);
    lb_gguf_free(m->gguf);
    free(m);
}

void lb_model_get_info(const lb_model *m, lb_model_info *o)
{
    memset(o, 0, sizeof *o);
    o->arch = m->arch_name;
    o->name = m->name;
    o->n_vocab = m->hp.n_vocab;
    o->n_ctx_train = m->hp.n_ctx_train;
    o->n_embd = m->hp.n_embd;
    o->n_layer = m->hp.n_layer;
    o->n_head = m->hp.n_head;
    o->n_head_kv = m->hp.n_head_kv;
    o->n_ff = m->hp.n_ff;
    o->n_params = m->n_params;
    o->weight_bytes = m->weight_bytes;
    o->bits_per_weight = m->n_params ? (double)m->weight_bytes * 8.0 / (double)m->n_params : 0;
    o->bos = lb_tokenizer_bos(m->tok);
    o->eos = lb_tokenizer_eos(m->tok);
    o->add_bos = lb_tokenizer_add_bos(m->tok);
}

lb_status lb_tokenize(const lb_model *m, const char *text, size_t len, bool add_special,
                      bool parse_special, lb_token *out, size_t cap, size_t *n_out)
{
    if (!m || (!text && len) || !n_out)
        return LB_ERR_INVALID_ARG;
    lb_err err = {0};
    lb_status st = lb_tokenizer_encode(m->tok, text ? text : "", len, add_special, parse_special, out, cap, n_out, &err);
    if (st)
        return st;
    return *n_out > cap ? LB_ERR_RANGE : LB_OK;
}

const char *lb_token_piece(const lb_model *m, lb_token t, size_t *len) { return lb_tokenizer_piece(m->tok, t, len); }

bool lb_token_is_eog(const lb_model *m, lb_token t) { return lb_tokenizer_is_eog(m->tok, t); }

const char *lb_model_last_error(const lb_model *m) { return m ? m->err : ""; }

lb_status lb_model_meta_str(const lb_model *m, const char *key, char *buf, size_t cap)
{
    if (!m || !key || !buf || cap == 0)
        return LB_ERR_INVALID_ARG;
    lb_err err = {0};
    lb_gguf_str v;
    lb_status st = lb_gguf_get_str(m->gguf, key, &v, &err);
    if (st)
        return st;
    if (v.len >= cap)
        return LB_ERR_RANGE;
    memcpy(buf, v.ptr, (size_t)v.len);
    buf[v.len] = '\0';
    return LB_OK;
}
