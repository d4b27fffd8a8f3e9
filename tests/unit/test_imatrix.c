/* Importance matrices and quality metrics: the lb_matmul observer sees every
 * product of a forward pass with the right shapes; collected means equal a
 * direct computation of the first layer's inputs; the file round-trips and
 * hostile files are refused; the quantizer uses the matrix and reports
 * missing entries; lb_quality gives KL = 0 / top-1 = 100% for a model
 * against itself and KL > 0 for f16 against Q4_K_M. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "format/gguf.h"
#include "kernels/matmul.h"
#include "lowbit.h"
#include "quant/imatrix.h"
#include "quant/quality.h"
#include "quant/quant.h"
#include "quant/quantize.h"
#include "quant/quantizer.h"

static const char *TEXT =
    "The scheduler picks the next task to run on each CPU. It keeps a run queue per CPU and balances "
    "the load between them when one queue grows much longer than another.";

/* A model loaded over the bytes of g, so its weight pointers are g's tensor data pointers. */
static lb_model *load_over(const lb_gguf *g)
{
    lb_model_params mp = lb_model_default_params();
    lb_model *m = NULL;
    if (lb_model_load_memory(lb_gguf_bytes(g), lb_gguf_file_size(g), &mp, &m) != LB_OK)
        return NULL;
    return m;
}

static lb_session *session(lb_model *m, int n_ctx)
{
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = n_ctx;
    sp.n_threads = 2;
    lb_session *s = NULL;
    return lb_session_new(m, &sp, &s) == LB_OK ? s : NULL;
}

static int tokenize(const lb_model *m, lb_token *toks, int cap)
{
    size_t n = 0;
    if (lb_tokenize(m, TEXT, strlen(TEXT), true, false, toks, (size_t)cap, &n) != LB_OK)
        return -1;
    return (int)n;
}

/* ---- the observer */

typedef struct call { const void *w; int64_t rows, cols, n; } call;
typedef struct recorder { call c[256]; int n; int null_x; } recorder;

static void record(void *user, const void *w, int64_t rows, int64_t cols, const float *x, int64_t n)
{
    recorder *r = user;
    r->null_x += x == NULL;
    if (r->n < 256)
        r->c[r->n] = (call){w, rows, cols, n};
    r->n++;
}

static void test_observer_sees_every_product(void)
{
    lb_gguf *g = NULL;
    CHECK(lb_gguf_open_file(check_shared("models/techdocs-28M-f16.gguf"), true, &g, NULL) == LB_OK);
    lb_model *m = g ? load_over(g) : NULL;
    lb_session *s = m ? session(m, 64) : NULL;
    CHECK(s != NULL);
    if (!s)
        goto out;
    lb_model_info info;
    lb_model_get_info(m, &info);
    lb_token toks[64];
    int n = tokenize(m, toks, 64);
    CHECK(n > 8);
    float *logits = malloc((size_t)n * info.n_vocab * sizeof *logits);
    recorder rec = {0};
    lb_matmul_set_observer(record, &rec);
    CHECK(lb_session_eval(s, toks, n, logits, false) == LB_OK);
    lb_matmul_set_observer(NULL, NULL);
    /* 7 products per layer (q k v o gate up down) and the output projection. */
    CHECKF(rec.n == 7 * info.n_layer + 1, "%d calls", rec.n);
    CHECK(rec.null_x == 0);
    int seen[256] = {0};
    for (int i = 0; i < rec.n && i < 256; i++) {
        int64_t k = -1;
        for (int64_t t = 0; t < lb_gguf_n_tensors(g); t++)
            if (lb_gguf_tensor_at(g, t)->data == rec.c[i].w)
                k = t;
        CHECKF(k >= 0, "call %d: weight pointer is not a tensor of the file", i);
        if (k < 0 || k >= 256)
            continue;
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, k);
        seen[k]++;
        CHECKF(rec.c[i].cols == t->ne[0] && rec.c[i].rows == t->ne[1] && rec.c[i].n == n,
               "%.*s: %lld x %lld, n %lld", (int)t->name.len, t->name.ptr, (long long)rec.c[i].rows,
               (long long)rec.c[i].cols, (long long)rec.c[i].n);
    }
    /* Every 2-D tensor but the embedding (a row lookup) is multiplied exactly once. */
    for (int64_t k = 0; k < lb_gguf_n_tensors(g) && k < 256; k++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, k);
        bool embd = t->name.len == 17 && !memcmp(t->name.ptr, "token_embd.weight", 17);
        if (t->n_dims == 2)
            CHECKF(seen[k] == (embd ? 0 : 1), "%.*s seen %d times", (int)t->name.len, t->name.ptr, seen[k]);
    }
    /* Decode with only the last row of logits: the output sees one row. */
    rec.n = 0;
    lb_session_reset(s);
    lb_matmul_set_observer(record, &rec);
    CHECK(lb_session_eval(s, toks, n, logits, true) == LB_OK);
    lb_matmul_set_observer(NULL, NULL);
    CHECK(rec.n == 7 * info.n_layer + 1);
    const lb_gguf_tensor *out = lb_gguf_find_tensor(g, "output.weight");
    for (int i = 0; i < rec.n && i < 256; i++)
        if (out && rec.c[i].w == out->data)
            CHECK(rec.c[i].n == 1);
    /* Unset, nothing is called. */
    rec.n = 0;
    lb_session_reset(s);
    CHECK(lb_session_eval(s, toks, 4, NULL, false) == LB_OK);
    CHECK(rec.n == 0);
    free(logits);
out:
    lb_session_free(s);
    lb_model_free(m);
    lb_gguf_free(g);
}

/* ---- collection equals a direct computation */

static void test_imatrix_matches_direct(void)
{
    lb_gguf *g = NULL;
    CHECK(lb_gguf_open_file(check_shared("models/techdocs-28M-f16.gguf"), true, &g, NULL) == LB_OK);
    lb_model *m = g ? load_over(g) : NULL;
    lb_session *s = m ? session(m, 64) : NULL;
    lb_imatrix *im = lb_imatrix_new();
    CHECK(s != NULL && im != NULL);
    if (!s || !im)
        goto out;
    CHECK(lb_imatrix_track_gguf(im, g, NULL) == LB_OK);
    CHECK(lb_imatrix_n_entries(im) == 58);
    lb_token toks[64];
    int n = tokenize(m, toks, 64);
    /* Two evaluations, so the mean spans calls: n tokens, then the first 5 again. */
    lb_matmul_set_observer(lb_imatrix_observe, im);
    CHECK(lb_session_eval(s, toks, n, NULL, false) == LB_OK);
    lb_session_reset(s);
    CHECK(lb_session_eval(s, toks, 5, NULL, false) == LB_OK);
    lb_matmul_set_observer(NULL, NULL);
    CHECK(lb_imatrix_check(im, NULL) == LB_OK);
    CHECK(lb_imatrix_n_untracked(im) == 0);
    CHECK(lb_imatrix_find(im, "token_embd.weight", NULL) == NULL); /* never multiplied */
    CHECK(lb_imatrix_find(im, "output.weight", NULL) == NULL);     /* no logits asked for */
    CHECK(lb_imatrix_find(im, "no.such.weight", NULL) == NULL);

    /* The input of blk.0.attn_q is RMSNorm(embedding) * attn_norm; computed here in double. */
    int64_t cols = 0;
    const float *got = lb_imatrix_find(im, "blk.0.attn_q.weight", &cols);
    const lb_gguf_tensor *emb = lb_gguf_find_tensor(g, "token_embd.weight");
    const lb_gguf_tensor *nw = lb_gguf_find_tensor(g, "blk.0.attn_norm.weight");
    float eps = 1e-5f;
    lb_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps, NULL);
    CHECK(got && emb && nw && cols == emb->ne[0]);
    if (!got || !emb || !nw || cols != emb->ne[0])
        goto out;
    int E = (int)cols;
    double *want = calloc((size_t)E, sizeof *want);
    float *row = malloc((size_t)E * sizeof *row);
    const float *w = nw->data;
    size_t rb = lb_type_row_bytes(emb->type, E);
    for (int pass = 0; pass < 2; pass++)
        for (int t = 0; t < (pass ? 5 : n); t++) {
            lb_quant_ref(emb->type)->dequant((const char *)emb->data + (size_t)toks[t] * rb, row, E);
            double ss = 0;
            for (int i = 0; i < E; i++)
                ss += (double)row[i] * row[i];
            double sc = 1.0 / sqrt(ss / E + eps);
            for (int i = 0; i < E; i++) {
                double v = row[i] * sc * w[i];
                want[i] += v * v;
            }
        }
    double worst = 0;
    for (int i = 0; i < E; i++) {
        double ref = want[i] / (n + 5), rel = fabs(got[i] - ref) / (ref + 1e-12);
        worst = rel > worst ? rel : worst;
    }
    CHECKF(worst < 1e-4, "worst relative difference %g", worst);
    int64_t rows = 0;
    for (int64_t i = 0; i < lb_imatrix_n_entries(im); i++)
        if (!strcmp(lb_imatrix_name_at(im, i, &rows), "blk.3.ffn_down.weight"))
            CHECK(rows == n + 5);
    free(want);
    free(row);

    /* Round trip through the file. */
    char path[64];
    snprintf(path, sizeof path, "/tmp/lb_test_imatrix_%ld.gguf", (long)getpid());
    lb_imatrix_meta meta = {2, n + 5, "short text"};
    lb_err err = {0};
    CHECKF(lb_imatrix_write(im, path, &meta, &err) == LB_OK, "%s", err.msg);
    lb_imatrix *back = NULL;
    CHECKF(lb_imatrix_load(path, &back, &err) == LB_OK, "%s", err.msg);
    if (back) {
        /* token_embd (a lookup) and output (no logits were asked for) saw nothing and are left out. */
        CHECK(lb_imatrix_n_entries(back) == 56);
        lb_imatrix_meta bm = lb_imatrix_get_meta(back);
        CHECK(bm.chunks == 2 && bm.tokens == n + 5 && !strcmp(bm.dataset, "short text"));
        int same = 0;
        for (int64_t i = 0; i < lb_imatrix_n_entries(im); i++) {
            const char *name = lb_imatrix_name_at(im, i, NULL);
            int64_t c1 = 0, c2 = 0;
            const float *a = lb_imatrix_find(im, name, &c1), *b = lb_imatrix_find(back, name, &c2);
            if (!a)
                continue;
            same += b && c1 == c2 && !memcmp(a, b, (size_t)c1 * sizeof *a);
        }
        CHECK(same == 56);
    }
    lb_imatrix_free(back);
    remove(path);
out:
    lb_imatrix_free(im);
    lb_session_free(s);
    lb_model_free(m);
    lb_gguf_free(g);
}

/* ---- hostile or wrong files */

static void test_imatrix_load_rejects(void)
{
    lb_imatrix *im = NULL;
    lb_err err = {0};
    /* A model is not an importance matrix. */
    CHECK(lb_imatrix_load(check_shared("models/llama-2-tiny-random.gguf"), &im, &err) == LB_ERR_FORMAT);
    CHECK(im == NULL && strstr(err.msg, "not an importance matrix"));
    CHECK(lb_imatrix_load("/nonexistent/x.imatrix", &im, &err) == LB_ERR_IO);

    char path[64];
    snprintf(path, sizeof path, "/tmp/lb_test_imatrix_bad_%ld.gguf", (long)getpid());
    float v[32];
    for (int i = 0; i < 32; i++)
        v[i] = 1.0f;
    int64_t ne1[1] = {32}, ne2[2] = {16, 2};
    for (int kind = 0; kind < 3; kind++) {
        lb_gguf_writer *w = lb_gguf_writer_new();
        lb_gguf_writer_set_u32(w, LB_IMATRIX_KEY_CHUNKS, 1);
        v[7] = kind == 0 ? -1.0f : kind == 1 ? NAN : 1.0f;
        lb_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", LB_TYPE_F32, kind == 2 ? 2 : 1, kind == 2 ? ne2 : ne1, v);
        CHECK(lb_gguf_writer_write(w, path, NULL) == LB_OK);
        lb_gguf_writer_free(w);
        err.msg[0] = 0;
        CHECKF(lb_imatrix_load(path, &im, &err) == LB_ERR_FORMAT, "kind %d", kind);
        CHECKF(im == NULL && strstr(err.msg, "blk.0.attn_q.weight"), "kind %d: %s", kind, err.msg);
    }
    remove(path);

    /* Tracking rejects duplicates; shape mismatches are reported, not counted. */
    lb_imatrix *c = lb_imatrix_new();
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int a, b;
    CHECK(lb_imatrix_track(c, "a", &a, 4, NULL) == LB_OK);
    CHECK(lb_imatrix_track(c, "a", &b, 4, NULL) == LB_ERR_INVALID_ARG);
    CHECK(lb_imatrix_track(c, "b", &a, 4, NULL) == LB_ERR_INVALID_ARG);
    CHECK(lb_imatrix_track(c, "b", &b, 2, NULL) == LB_OK);
    lb_imatrix_observe(c, &a, 3, 4, x, 2);        /* rows (1,2,3,4) and (5,6,7,8) */
    lb_imatrix_observe(c, &b, 3, 4, x, 1);        /* wrong cols for b */
    lb_imatrix_observe(c, x, 3, 4, x, 1);         /* untracked */
    int64_t cols = 0;
    const float *ma = lb_imatrix_find(c, "a", &cols);
    CHECK(ma && cols == 4 && ma[0] == 13.0f && ma[3] == 40.0f);   /* (1+25)/2, (16+64)/2 */
    CHECK(lb_imatrix_find(c, "b", NULL) == NULL);
    CHECK(lb_imatrix_n_untracked(c) == 1);
    CHECK(lb_imatrix_check(c, &err) == LB_ERR_INVALID_ARG && strstr(err.msg, "b was multiplied"));
    lb_imatrix_free(c);
    lb_imatrix_free(NULL);
}

/* ---- the quantizer uses the vectors */

static double weighted_err(const float *x, const float *y, int n, const float *imp)
{
    double e = 0;
    for (int i = 0; i < n; i++)
        e += imp[i] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

static void test_quantize_with_imatrix(void)
{
    enum { COLS = 256, ROWS = 16 };
    static float wq[ROWS * COLS], wk[ROWS * COLS], imp[COLS], y[COLS]; /* [ROWS][COLS] weights, [COLS] importance */
    uint64_t st = 12345;
    for (int i = 0; i < ROWS * COLS; i++) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        wq[i] = (float)((double)(st >> 11) / 9007199254740992.0 - 0.5);
        wk[i] = -wq[i];
    }
    /* A few columns matter a hundred times more than the rest. */
    for (int i = 0; i < COLS; i++)
        imp[i] = i % 16 == 3 ? 100.0f : 1.0f;
    char src[64], im_path[64], out_a[64], out_b[64];
    long pid = (long)getpid();
    snprintf(src, sizeof src, "/tmp/lb_test_imq_src_%ld.gguf", pid);
    snprintf(im_path, sizeof im_path, "/tmp/lb_test_imq_im_%ld.gguf", pid);
    snprintf(out_a, sizeof out_a, "/tmp/lb_test_imq_a_%ld.gguf", pid);
    snprintf(out_b, sizeof out_b, "/tmp/lb_test_imq_b_%ld.gguf", pid);
    lb_gguf_writer *w = lb_gguf_writer_new();
    int64_t ne[2] = {COLS, ROWS};
    lb_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", LB_TYPE_F32, 2, ne, wq);
    lb_gguf_writer_add_tensor(w, "blk.0.attn_k.weight", LB_TYPE_F32, 2, ne, wk);
    CHECK(lb_gguf_writer_write(w, src, NULL) == LB_OK);
    lb_gguf_writer_free(w);
    w = lb_gguf_writer_new();
    int64_t ne1[1] = {COLS};
    lb_gguf_writer_set_u32(w, LB_IMATRIX_KEY_CHUNKS, 1);
    lb_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", LB_TYPE_F32, 1, ne1, imp);
    CHECK(lb_gguf_writer_write(w, im_path, NULL) == LB_OK);
    lb_gguf_writer_free(w);

    lb_imatrix *im = NULL;
    lb_err err = {0};
    CHECK(lb_imatrix_load(im_path, &im, &err) == LB_OK);
    lb_quantize_params p = lb_quantize_default_params();
    p.type = "q3_K";
    p.n_threads = 1;
    lb_quantize_report ra, rb;
    CHECKF(lb_quantize_file(src, out_a, &p, &ra, &err) == LB_OK, "%s", err.msg);
    p.imatrix = im;
    CHECKF(lb_quantize_file(src, out_b, &p, &rb, &err) == LB_OK, "%s", err.msg);
    CHECK(rb.n_imatrix_missing == 1 && ra.n_imatrix_missing == 0);
    for (int i = 0; i < rb.n_tensors; i++) {
        bool q = !strcmp(rb.tensors[i].name, "blk.0.attn_q.weight");
        CHECK(rb.tensors[i].imatrix_used == q && rb.tensors[i].imatrix_missing == !q);
        CHECK(!ra.tensors[i].imatrix_used && !ra.tensors[i].imatrix_missing);
    }
    lb_quantize_report_free(&ra);
    lb_quantize_report_free(&rb);

    /* The importance-weighted error of attn_q falls; attn_k (no entry) is unchanged. */
    lb_gguf *ga = NULL, *gb = NULL;
    CHECK(lb_gguf_open_file(out_a, false, &ga, NULL) == LB_OK);
    CHECK(lb_gguf_open_file(out_b, false, &gb, NULL) == LB_OK);
    if (ga && gb) {
        const lb_gguf_tensor *qa = lb_gguf_find_tensor(ga, "blk.0.attn_q.weight"),
                             *qb = lb_gguf_find_tensor(gb, "blk.0.attn_q.weight"),
                             *ka = lb_gguf_find_tensor(ga, "blk.0.attn_k.weight"),
                             *kb = lb_gguf_find_tensor(gb, "blk.0.attn_k.weight");
        CHECK(qa && qb && ka && kb && qa->type == LB_TYPE_Q3_K);
        if (qa && qb && ka && kb) {
            double ea = 0, eb = 0;
            size_t rbytes = lb_type_row_bytes(LB_TYPE_Q3_K, COLS);
            for (int r = 0; r < ROWS; r++) {
                lb_quant_ref(LB_TYPE_Q3_K)->dequant((const char *)qa->data + r * rbytes, y, COLS);
                ea += weighted_err(wq + r * COLS, y, COLS, imp);
                lb_quant_ref(LB_TYPE_Q3_K)->dequant((const char *)qb->data + r * rbytes, y, COLS);
                eb += weighted_err(wq + r * COLS, y, COLS, imp);
            }
            CHECKF(eb < 0.8 * ea, "weighted error with imatrix %g, without %g", eb, ea);
            CHECK(ka->nbytes == kb->nbytes && !memcmp(ka->data, kb->data, ka->nbytes));
        }
    }
    lb_gguf_free(ga);
    lb_gguf_free(gb);

    /* An importance vector of the wrong length is an error naming the tensor. */
    lb_imatrix_free(im);
    w = lb_gguf_writer_new();
    ne1[0] = 32;
    lb_gguf_writer_set_u32(w, LB_IMATRIX_KEY_CHUNKS, 1);
    lb_gguf_writer_add_tensor(w, "blk.0.attn_k.weight", LB_TYPE_F32, 1, ne1, imp);
    CHECK(lb_gguf_writer_write(w, im_path, NULL) == LB_OK);
    lb_gguf_writer_free(w);
    im = NULL;
    CHECK(lb_imatrix_load(im_path, &im, NULL) == LB_OK);
    p.imatrix = im;
    CHECK(lb_quantize_file(src, out_b, &p, NULL, &err) == LB_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "blk.0.attn_k.weight") != NULL);
    lb_imatrix_free(im);
    remove(src);
    remove(im_path);
    remove(out_a);
    remove(out_b);
}

/* ---- quality metrics */

static void test_quality_math(void)
{
    /* p_ref = (1/4, 3/4), p_model = (1/2, 1/2): KL = 1/4 ln(1/2) + 3/4 ln(3/2). */
    float ref[2] = {0.0f, logf(3.0f)}, model[2] = {5.0f, 5.0f};
    lb_quality q = {0};
    lb_quality_add(&q, ref, model, 2, 1);
    lb_quality_result r = lb_quality_summary(&q);
    double want = 0.25 * log(0.5) + 0.75 * log(1.5);
    CHECKF(fabs(r.kl_mean - want) < 1e-7, "%.9f vs %.9f", r.kl_mean, want);
    CHECK(r.top1 == 0.0);  /* the model's tie goes to id 0; the reference picks 1 */
    CHECK(fabs(r.ppl - 2.0) < 1e-6 && fabs(r.ppl_ref - 4.0 / 3.0) < 1e-6);
    lb_quality_add(&q, ref, ref, 2, 0);   /* identical rows: KL exactly 0, argmaxes agree */
    r = lb_quality_summary(&q);
    CHECK(r.n == 2 && r.top1 == 50.0 && r.kl_max == q.sum_kl && fabs(r.kl_mean - want / 2) < 1e-7);
    lb_quality_result z = lb_quality_summary(&(lb_quality){0});
    CHECK(z.n == 0 && z.ppl == 0);
}

/* Scores the second half of one chunk of the validation text with both models. */
static lb_quality_result compare(const char *ref_path, const char *model_path)
{
    lb_quality_result r = {0};
    lb_model *a = NULL, *b = NULL;
    lb_model_params mp = lb_model_default_params();
    if (lb_model_load(ref_path, &mp, &a) || lb_model_load(model_path, &mp, &b)) {
        lb_model_free(a);
        return r;
    }
    enum { CTX = 64, FIRST = CTX / 2, NS = CTX - FIRST };
    lb_model_info info;
    lb_model_get_info(a, &info);
    FILE *f = fopen(check_shared("text/techdocs-valid.txt"), "rb");
    char text[4096];
    size_t len = f ? fread(text, 1, sizeof text, f) : 0;
    if (f)
        fclose(f);
    lb_token toks[4096];
    size_t n = 0;
    lb_session *sa = session(a, CTX), *sb = session(b, CTX);
    float *la = malloc((size_t)NS * info.n_vocab * sizeof *la), *lm = malloc((size_t)NS * info.n_vocab * sizeof *lm);
    if (sa && sb && len && lb_tokenize(a, text, len, true, false, toks, 4096, &n) == LB_OK && n >= CTX &&
        lb_session_eval(sa, toks, FIRST, NULL, false) == LB_OK &&
        lb_session_eval(sa, toks + FIRST, NS, la, false) == LB_OK &&
        lb_session_eval(sb, toks, FIRST, NULL, false) == LB_OK &&
        lb_session_eval(sb, toks + FIRST, NS, lm, false) == LB_OK) {
        lb_quality q = {0};
        for (int j = 0; j < NS - 1; j++)
            lb_quality_add(&q, la + (size_t)j * info.n_vocab, lm + (size_t)j * info.n_vocab, info.n_vocab,
                           toks[FIRST + j + 1]);
        r = lb_quality_summary(&q);
    }
    free(la);
    free(lm);
    lb_session_free(sa);
    lb_session_free(sb);
    lb_model_free(a);
    lb_model_free(b);
    return r;
}

static void test_eval_self_and_q4(void)
{
    const char *f16 = check_shared("models/techdocs-28M-f16.gguf");
    lb_quality_result self = compare(f16, f16);
    CHECK(self.n == 31);
    CHECKF(self.kl_mean == 0.0 && self.kl_max == 0.0, "KL %g", self.kl_mean);
    CHECK(self.top1 == 100.0);
    CHECK(self.ppl == self.ppl_ref && self.ppl > 1.0);
    lb_quality_result q4 = compare(f16, check_shared("models/techdocs-28M-Q4_K_M.gguf"));
    CHECK(q4.n == 31);
    CHECKF(q4.kl_mean > 1e-4 && q4.kl_mean < 0.5, "KL %g", q4.kl_mean);
    CHECK(q4.ppl_ref == self.ppl_ref);
    CHECK(q4.ppl != self.ppl && q4.top1 > 50.0);
}

int main(void)
{
    RUN(test_observer_sees_every_product);
    RUN(test_imatrix_matches_direct);
    RUN(test_imatrix_load_rejects);
    RUN(test_quantize_with_imatrix);
    RUN(test_quality_math);
    RUN(test_eval_self_and_q4);
    return check_done();
}
