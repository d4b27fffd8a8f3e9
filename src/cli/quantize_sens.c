/* Measures each tensor's end-to-end sensitivity for the --bpw mixer: the
 * model is loaded over an in-memory copy of the source file, one tensor's
 * bytes are replaced by its LBQ2 rounding (back in the source type), the
 * calibration chunks are evaluated, the KL from the untouched model's
 * predictions is recorded, and the bytes are restored. */
#include "quantize_sens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fp16.h"
#include "format/gguf.h"
#include "lowbit.h"
#include "quant/ldlq.h"
#include "quant/quality.h"
#include "quant/quant.h"
#include "quant/quantize.h"

#define SENS_CTX 512
#define SENS_CHUNKS 3

struct lb__cli_sens {
    uint8_t *buf;             /* [size] the source file, weights edited in place */
    size_t size;
    lb_gguf *g;               /* view over buf */
    lb_model *m;
    lb_session *s;
    const lb_imatrix *im;
    const lb_hessian *h;      /* borrowed, may be NULL */
    lb_token *toks;           /* [n_chunks][SENS_CTX] */
    int n_chunks, n_vocab;
    float *ref;               /* [n_chunks][SENS_CTX / 2][n_vocab] reference logits of the scored halves */
    float *cur;               /* [SENS_CTX / 2][n_vocab] */
    bool verbose;
    int done;
    int n_threads;
};

void lb__cli_sens_set_hessian(lb__cli_sens *c, const lb_hessian *h)
{
    if (c)
        c->h = h;
}

static int eval_chunk(lb__cli_sens *c, int k, float *logits)
{
    const lb_token *t = c->toks + (size_t)k * SENS_CTX;
    lb_session_reset(c->s);
    int first = SENS_CTX / 2;
    if (lb_session_eval(c->s, t, first, NULL, false) || lb_session_eval(c->s, t + first, SENS_CTX - first, logits, false))
        return 1;
    return 0;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *b = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 && (b = malloc((size_t)n + 1))) {
        if (fread(b, 1, (size_t)n, f) != (size_t)n) {
            free(b);
            b = NULL;
        } else {
            b[n] = 0;
            *len = (size_t)n;
        }
    }
    fclose(f);
    return b;
}

int lb__cli_sens_new(const char *in_path, const char *calib, const lb_imatrix *im, int n_threads, bool verbose,
                     lb__cli_sens **out)
{
    *out = NULL;
    lb__cli_sens *c = calloc(1, sizeof *c);
    size_t tlen = 0;
    char *text = NULL;
    if (!c)
        goto fail;
    c->im = im;
    c->verbose = verbose;
    c->n_threads = n_threads;
    c->buf = (uint8_t *)read_all(in_path, &c->size);
    if (!c->buf) {
        fprintf(stderr, "lowbit quantize: cannot read %s\n", in_path);
        goto fail;
    }
    lb_err err = {0};
    if (lb_gguf_open_memory(c->buf, c->size, &c->g, &err)) {
        fprintf(stderr, "lowbit quantize: %s: %s\n", in_path, err.msg);
        goto fail;
    }
    lb_model_params mp = lb_model_default_params();
    if (lb_model_load_memory(c->buf, c->size, &mp, &c->m)) {
        fprintf(stderr, "lowbit quantize: cannot load %s for --calib\n", in_path);
        goto fail;
    }
    lb_model_info info;
    lb_model_get_info(c->m, &info);
    c->n_vocab = info.n_vocab;
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = sp.n_batch = SENS_CTX;
    sp.n_threads = n_threads;
    if (lb_session_new(c->m, &sp, &c->s)) {
        fprintf(stderr, "lowbit quantize: cannot create a session for --calib\n");
        goto fail;
    }
    text = read_all(calib, &tlen);
    size_t cap = tlen + 16, n_tok = 0;
    c->toks = text ? malloc(cap * sizeof *c->toks) : NULL;
    if (!c->toks || lb_tokenize(c->m, text, tlen, true, false, c->toks, cap, &n_tok)) {
        fprintf(stderr, "lowbit quantize: cannot read or tokenize %s\n", calib);
        goto fail;
    }
    c->n_chunks = (int)(n_tok / SENS_CTX) < SENS_CHUNKS ? (int)(n_tok / SENS_CTX) : SENS_CHUNKS;
    if (c->n_chunks < 1) {
        fprintf(stderr, "lowbit quantize: %s has fewer than %d tokens\n", calib, SENS_CTX);
        goto fail;
    }
    for (int k = 0; k < c->n_chunks; k++)
        if (info.add_bos && info.bos >= 0)
            c->toks[(size_t)k * SENS_CTX] = info.bos;
    size_t per = (size_t)(SENS_CTX / 2) * (size_t)c->n_vocab;
    c->ref = malloc(per * (size_t)c->n_chunks * sizeof *c->ref);
    c->cur = malloc(per * sizeof *c->cur);
    if (!c->ref || !c->cur)
        goto fail;
    for (int k = 0; k < c->n_chunks; k++)
        if (eval_chunk(c, k, c->ref + per * (size_t)k))
            goto fail;
    free(text);
    *out = c;
    return 0;
fail:
    free(text);
    lb__cli_sens_free(c);
    return 1;
}

double lb__cli_sens_measure(void *user, const char *name)
{
    lb__cli_sens *c = user;
    const lb_gguf_tensor *t = lb_gguf_find_tensor(c->g, name);
    if (!t || (t->type != LB_TYPE_F16 && t->type != LB_TYPE_F32) || t->ne[0] % 256)
        return -1;
    int64_t ne0 = t->ne[0], nrows = t->ne[1] * t->ne[2] * t->ne[3];
    size_t src_row = lb_type_row_bytes(t->type, ne0), nbytes = src_row * (size_t)nrows;
    uint8_t *data = c->buf + ((const uint8_t *)t->data - c->buf);
    uint8_t *save = malloc(nbytes);
    float *x = malloc((size_t)ne0 * 2 * sizeof *x); /* [2][ne0] */
    uint8_t *q = malloc(lb_type_row_bytes(LB_TYPE_LBQ2, ne0));
    double kl = -1;
    if (!save || !x || !q)
        goto out;
    memcpy(save, data, nbytes);
    const float *imp = c->im ? lb_imatrix_find(c->im, name, NULL) : NULL;
    const lb_quant_traits *src = lb_quant_ref(t->type), *l2 = lb_quant_ref(LB_TYPE_LBQ2);
    int64_t hcols = 0;
    const float *hm = c->h ? lb_hessian_find(c->h, name, &hcols) : NULL;
    if (hm && hcols == ne0) {
        /* the whole tensor through the LDLQ quantizer, then back to the source type */
        size_t qrow = lb_type_row_bytes(LB_TYPE_LBQ2, ne0);
        float *wf = malloc((size_t)nrows * (size_t)ne0 * sizeof *wf); /* [nrows][ne0] */
        uint8_t *qa = malloc((size_t)nrows * qrow);                   /* [nrows][qrow] */
        bool ok = wf && qa;
        for (int64_t r = 0; ok && r < nrows; r++)
            src->dequant(data + (size_t)r * src_row, wf + r * ne0, ne0);
        ok = ok && lb_quantize_hessian(LB_TYPE_LBQ2, wf, nrows, ne0, hm, imp, qa, c->n_threads, NULL) == LB_OK;
        for (int64_t r = 0; ok && r < nrows; r++) {
            l2->dequant(qa + (size_t)r * qrow, x + ne0, ne0);
            lb_quantize_row(t->type, x + ne0, data + (size_t)r * src_row, ne0, NULL);
        }
        free(wf);
        free(qa);
        if (!ok) {
            memcpy(data, save, nbytes);
            goto out;
        }
    } else {
        for (int64_t r = 0; r < nrows; r++) {
            uint8_t *row = data + (size_t)r * src_row;
            src->dequant(row, x, ne0);
            lb_quantize_row(LB_TYPE_LBQ2, x, q, ne0, imp);
            l2->dequant(q, x + ne0, ne0);
            lb_quantize_row(t->type, x + ne0, row, ne0, NULL);
        }
    }
    lb_quality qs = {0};
    size_t per = (size_t)(SENS_CTX / 2) * (size_t)c->n_vocab;
    bool ok = true;
    for (int k = 0; k < c->n_chunks && ok; k++) {
        ok = eval_chunk(c, k, c->cur) == 0;
        for (int j = 0; ok && j < SENS_CTX / 2 - 1; j++)
            lb_quality_add(&qs, c->ref + per * (size_t)k + (size_t)j * (size_t)c->n_vocab,
                           c->cur + (size_t)j * (size_t)c->n_vocab, c->n_vocab,
                           c->toks[(size_t)k * SENS_CTX + SENS_CTX / 2 + (size_t)j + 1]);
    }
    memcpy(data, save, nbytes);
    if (ok)
        kl = lb_quality_summary(&qs).kl_mean;
    if (c->verbose)
        fprintf(stderr, "\rlowbit quantize: sensitivity %3d: %-28s KL %.5f   ", ++c->done, name, kl);
out:
    free(save);
    free(x);
    free(q);
    return kl;
}

void lb__cli_sens_free(lb__cli_sens *c)
{
    if (!c)
        return;
    if (c->verbose && c->done)
        fprintf(stderr, "\n");
    lb_session_free(c->s);
    lb_model_free(c->m);
    lb_gguf_free(c->g);
    free(c->buf);
    free(c->toks);
    free(c->ref);
    free(c->cur);
    free(c);
}

struct lb__cli_sens_table {
    char (*names)[128];   /* [n] */
    double *kl;           /* [n] */
    int n;
};

int lb__cli_sens_table_load(const char *path, lb__cli_sens_table **out)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    lb__cli_sens_table *t = calloc(1, sizeof *t);
    int cap = 0;
    char name[128];
    double v;
    while (t && fscanf(f, "%127s %lf", name, &v) == 2) {
        if (t->n == cap) {
            cap = cap ? 2 * cap : 64;
            char(*nn)[128] = realloc(t->names, (size_t)cap * sizeof *nn);
            double *kk = nn ? realloc(t->kl, (size_t)cap * sizeof *kk) : NULL;
            if (nn)
                t->names = nn;
            if (!nn || !kk) {
                lb__cli_sens_table_free(t);
                t = NULL;
                break;
            }
            t->kl = kk;
        }
        memcpy(t->names[t->n], name, sizeof name);
        t->kl[t->n++] = v;
    }
    fclose(f);
    if (!t) {
        fprintf(stderr, "lowbit quantize: out of memory reading %s\n", path);
        return 1;
    }
    *out = t;
    return 0;
}

double lb__cli_sens_table_get(void *table, const char *name)
{
    lb__cli_sens_table *t = table;
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->names[i], name))
            return t->kl[i];
    return -1;
}

void lb__cli_sens_table_free(lb__cli_sens_table *t)
{
    if (!t)
        return;
    free(t->names);
    free(t->kl);
    free(t);
}

double lb__cli_sens_measure_rec(void *rec, const char *name)
{
    lb__cli_sens_rec *r = rec;
    double v = lb__cli_sens_measure(r->c, name);
    if (r->f && v >= 0)
        fprintf(r->f, "%s %.8g\n", name, v);
    return v;
}
