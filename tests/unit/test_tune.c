/* `lowbit tune`'s machinery: the float matrix product against a plain sum,
 * the analytic gradients of the block log-scales and norm weights against
 * central finite differences on a tiny random model with a mix of block
 * types, the training forward's cross-entropy against the engine's on
 * techdocs-28M-Q4_K_M, and the written file's scales. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lowbit.h"
#include "model/model.h"
#include "quant/quant.h"
#include "tune/tune.h"

static uint64_t rng = 12345;
static float frand(void)   /* uniform in [-1, 1) */
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}
static float gauss(void)
{
    float s = 0;
    for (int i = 0; i < 4; i++)
        s += frand();
    return s * 0.866f;
}

static void test_sgemm(void)
{
    /* Shapes with remainders in every dimension, A plain and transposed, with and without accumulation. */
    static const int shapes[][3] = {{7, 37, 300}, {64, 48, 256}, {5, 16, 3}, {130, 70, 513}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N);
        for (int i = 0; i < M * K; i++) A[i] = frand();
        for (int i = 0; i < K * N; i++) B[i] = frand();
        lb_pool *pool = lb_pool_new(2);
        for (int tr = 0; tr < 2; tr++)
            for (int acc = 0; acc < 2; acc++) {
                for (int i = 0; i < M * N; i++) C[i] = acc ? 1.0f : 99.0f;
                /* tr: A stored as [K][M] */
                lb__sgemm(pool, M, N, K, A, tr ? 1 : K, tr ? M : 1, B, N, C, N, acc);
                double worst = 0;
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) {
                        double ref = acc ? 1.0 : 0.0;
                        for (int k = 0; k < K; k++)
                            ref += (double)(tr ? A[k * M + m] : A[m * K + k]) * B[k * N + n];
                        double e = fabs(ref - C[m * N + n]);
                        worst = e > worst ? e : worst;
                    }
                CHECKF(worst < 1e-4 * sqrt((double)K), "shape %dx%dx%d tr %d acc %d: error %g", M, N, K, tr, acc,
                       worst);
            }
        lb_pool_free(pool);
        free(A), free(B), free(C);
    }
}

/* ---- a tiny llama in memory, every weight in another block type */

enum { TV = 64, TE = 256, TL = 2, TH = 4, THK = 2, TD = 64, TF = 512, TN = 24 };

typedef struct tiny {
    lb_model m;
    lb_layer layers[TL];
    void *bufs[TL * 7 + 2];
    float norms[2 * TL + 1][TE];
} tiny;

static void make_weight(lb_weight *w, void **buf, uint32_t type, int64_t rows, int64_t cols, float sd)
{
    const lb_quant_traits *qt = lb_quant_ref(type);
    size_t rb = lb_type_row_bytes(type, cols);
    float *x = malloc(sizeof(float) * cols);
    *buf = malloc(rb * rows);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++)
            x[c] = sd * gauss();
        qt->quantize(x, (char *)*buf + r * rb, cols);
    }
    free(x);
    *w = (lb_weight){*buf, type, cols, rows, rb};
}

static void tiny_init(tiny *t, bool tied)
{
    memset(t, 0, sizeof *t);
    lb_model *m = &t->m;
    m->arch = LB_ARCH_LLAMA;
    strcpy(m->arch_name, "llama");
    m->hp = (lb_hparams){TV, 128, TE, TL, TH, THK, TD, TF, TD, 1e-5f, 10000.0f, 1.0f, LB_ROPE_NORM};
    m->layers = t->layers;
    static const uint32_t types[2][7] = {
        {LB_TYPE_Q4_K, LB_TYPE_Q2_K, LB_TYPE_LBQ3, LB_TYPE_Q8_0, LB_TYPE_Q4_0, LB_TYPE_Q6_K, LB_TYPE_LBQV},
        {LB_TYPE_Q5_0, LB_TYPE_Q4_1, LB_TYPE_Q5_K, LB_TYPE_LBQ2, LB_TYPE_LBQ4, LB_TYPE_Q5_1, LB_TYPE_Q3_K},
    };
    float sd = 1.0f / 16;   /* 1 / sqrt(E) keeps activations near unit size */
    for (int il = 0; il < TL; il++) {
        lb_layer *L = &t->layers[il];
        lb_weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        const int64_t rows[7] = {TH * TD, THK * TD, THK * TD, TE, TF, TF, TE};
        const int64_t cols[7] = {TE, TE, TE, TH * TD, TE, TE, TF};
        for (int j = 0; j < 7; j++)
            make_weight(ws[j], &t->bufs[il * 7 + j], types[il][j], rows[j], cols[j], j == 6 ? sd * 0.7f : sd * 2);
        for (int i = 0; i < TE; i++) {
            t->norms[2 * il][i] = 1.0f + 0.2f * frand();
            t->norms[2 * il + 1][i] = 1.0f + 0.2f * frand();
        }
        L->attn_norm = (lb_vec){t->norms[2 * il], TE};
        L->ffn_norm = (lb_vec){t->norms[2 * il + 1], TE};
    }
    for (int i = 0; i < TE; i++)
        t->norms[2 * TL][i] = 1.0f + 0.2f * frand();
    m->out_norm = (lb_vec){t->norms[2 * TL], TE};
    make_weight(&m->tok_embd, &t->bufs[TL * 7], LB_TYPE_Q8_0, TV, TE, tied ? sd * 4 : 1.0f);
    if (tied)
        m->output = m->tok_embd;   /* one tensor, two uses: their gradients add */
    else
        make_weight(&m->output, &t->bufs[TL * 7 + 1], LB_TYPE_Q4_K, TV, TE, sd * 4);
}

static void tiny_free(tiny *t)
{
    for (int i = 0; i < TL * 7 + 2; i++)
        free(t->bufs[i]);
}

static double tiny_loss(lb_tune_state *st, lb_tune_model *tm, const int32_t *tok, const float *tlp)
{
    lb__tune_model_apply(tm, NULL);
    lb__tune_forward(st, tm, NULL, tok, TN);
    return lb__tune_kl(st, tm, tlp, TN, 0.0f) / TN;
}

static void check_gradients(bool tied)
{
    tiny t;
    tiny_init(&t, tied);
    lb_tune_model tm;
    lb_err err = {0};
    CHECKF(lb__tune_model_init(&tm, &t.m, NULL, &err) == LB_OK, "%s", err.msg);
    lb_tune_state *st = NULL;
    CHECKF(lb__tune_state_new(&tm, 32, 1, &st, &err) == LB_OK, "%s", err.msg);
    if (!st)
        return;
    int32_t tok[TN];
    for (int i = 0; i < TN; i++)
        tok[i] = (int32_t)((frand() + 1) * 0.5f * TV) % TV;
    float *tlp = malloc(sizeof(float) * TN * TV);   /* [TN][TV] a random teacher */
    for (int i = 0; i < TN; i++) {
        double s = 0;
        for (int v = 0; v < TV; v++)
            s += exp(tlp[i * TV + v] = 1.5f * gauss());
        for (int v = 0; v < TV; v++)
            tlp[i * TV + v] -= (float)log(s);
    }
    /* Start away from s = 0 so the gradient is not special there. */
    for (int64_t i = 0; i < tm.n_scales; i++)
        tm.params[i] = 0.05f * frand();
    lb__tune_model_apply(&tm, NULL);
    memset(tm.grads, 0, sizeof(float) * tm.n_params);
    lb__tune_forward(st, &tm, NULL, tok, TN);
    double L0 = lb__tune_kl(st, &tm, tlp, TN, 1.0f / TN) / TN;
    lb__tune_backward(st, &tm, NULL, tok, TN);
    CHECKF(L0 > 0.1 && L0 < 100, "loss %g", L0);
    /* Per weight (and per norm vector): the parameters with the largest
     * gradients, where a finite difference is well above float noise. */
    int checked = 0, bad = 0;
    double worst = 0;
    int n_groups = tm.n_w + 2 * TL + 1;
    for (int gi = 0; gi < n_groups; gi++) {
        int64_t off, cnt;
        if (gi < tm.n_w) {
            if (!tm.w[gi].s)
                continue;
            off = tm.w[gi].s - tm.params;
            cnt = tm.w[gi].nblk;
        } else {
            off = tm.n_scales + (int64_t)(gi - tm.n_w) * TE;
            cnt = TE;
        }
        for (int pick = 0; pick < 3; pick++) {
            int64_t best = -1;
            for (int64_t i = 0; i < cnt; i++) {
                float g = fabsf(tm.grads[off + i]);
                if (g > 0 && (best < 0 || g > fabsf(tm.grads[off + best])) && tm.lr_scale[off + i] > -1.0f)
                    best = i;
            }
            if (best < 0)
                break;
            int64_t p = off + best;
            float keep = tm.params[p], h = 1e-2f;
            tm.params[p] = keep + h;
            double lp = tiny_loss(st, &tm, tok, tlp);
            tm.params[p] = keep - h;
            double lm = tiny_loss(st, &tm, tok, tlp);
            tm.params[p] = keep;
            double fd = (lp - lm) / (2 * h), g = tm.grads[p];
            double rel = fabs(fd - g) / fmax(fabs(fd), fabs(g));
            worst = rel > worst ? rel : worst;
            checked++;
            if (rel >= 1e-2) {
                bad++;
                fprintf(stderr, "group %d param %lld: analytic %.6g, finite difference %.6g\n", gi,
                        (long long)best, g, fd);
            }
            tm.lr_scale[p] = -2.0f;   /* marks it as taken (the test's copy only) */
        }
    }
    CHECKF(bad == 0, "%d of %d gradients off by more than 1%% (worst %.3g)", bad, checked, worst);
    CHECK(checked >= 2 * (TL * 7 + 2 - tied));
    CHECK(tm.n_w == TL * 7 + 2 - tied && (tm.out == tm.emb) == tied);
    printf("    %s output: %d gradients within %.2g relative of finite differences\n", tied ? "tied" : "separate",
           checked, worst);
    free(tlp);
    lb__tune_state_free(st);
    lb__tune_model_free(&tm);
    tiny_free(&t);
}

static void test_gradients(void) { check_gradients(false); }
static void test_gradients_tied(void) { check_gradients(true); }

/* -log p(next token) averaged over a window, from rows of logits. */
static double cross_entropy(const float *logits, const int32_t *tok, int n, int V)
{
    double s = 0;
    for (int t = 0; t + 1 < n; t++) {
        const float *z = logits + (int64_t)t * V;
        float mx = z[0];
        for (int i = 1; i < V; i++)
            mx = z[i] > mx ? z[i] : mx;
        double e = 0;
        for (int i = 0; i < V; i++)
            e += exp((double)z[i] - mx);
        s += log(e) + mx - z[tok[t + 1]];
    }
    return s / (n - 1);
}

static void test_engine_agreement(void)
{
    const char *path = check_shared("models/techdocs-28M-Q4_K_M.gguf");
    lb_model_params mp = lb_model_default_params();
    lb_model *m = NULL;
    CHECKF(lb_model_load(path, &mp, &m) == LB_OK, "%s", lb_last_load_error());
    if (!m)
        return;
    FILE *f = fopen(check_shared("text/techdocs-calib.txt"), "rb");
    char text[3000];
    size_t len = f ? fread(text, 1, sizeof text, f) : 0;
    if (f)
        fclose(f);
    CHECK(len == sizeof text);
    enum { N = 128 };
    lb_token tok[2048];
    size_t nt = 0;
    CHECK(lb_tokenize(m, text, len, true, false, tok, 2048, &nt) == LB_OK && nt >= N);
    const int V = m->hp.n_vocab;
    float *ref = malloc(sizeof(float) * N * V);
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = N;
    sp.n_threads = 2;
    lb_session *s = NULL;
    CHECK(lb_session_new(m, &sp, &s) == LB_OK);
    CHECK(s && lb_session_eval(s, tok, N, ref, false) == LB_OK);
    lb_tune_model tm;
    lb_err err = {0};
    lb_pool *pool = lb_pool_new(2);
    CHECKF(lb__tune_model_init(&tm, m, pool, &err) == LB_OK, "%s", err.msg);
    lb_tune_state *st = NULL;
    CHECKF(lb__tune_state_new(&tm, N, lb_pool_size(pool), &st, &err) == LB_OK, "%s", err.msg);
    if (st) {
        const float *z = lb__tune_forward(st, &tm, pool, tok, N);
        double ce_engine = cross_entropy(ref, tok, N, V), ce_train = cross_entropy(z, tok, N, V);
        printf("    cross-entropy over %d tokens: engine %.5f, training forward %.5f\n", N, ce_engine, ce_train);
        CHECKF(fabs(ce_engine - ce_train) < 0.005 * ce_engine, "engine %.5f vs training %.5f", ce_engine, ce_train);
        /* The written file: scales of a few blocks doubled, norms kept; reloaded, those rows dequantize doubled. */
        const lb_tune_weight *wq = &tm.w[0];
        int64_t nb = wq->src->cols / wq->blck;
        for (int64_t b = 0; b < nb; b++)
            wq->s[3 * nb + b] = logf(2.0f);   /* every block of row 3 of blk.0.attn_q */
        const char *out = "/tmp/lowbit-test-tune.gguf";
        const char *keys[] = {"lowbit.tune.steps"};
        double vals[] = {7};
        CHECKF(lb__tune_model_write(&tm, out, keys, vals, 1, &err) == LB_OK, "%s", err.msg);
        lb_model *m2 = NULL;
        CHECKF(lb_model_load(out, &mp, &m2) == LB_OK, "%s", lb_last_load_error());
        if (m2) {
            const lb_quant_traits *qt = lb_quant_ref(m2->layers[0].wq.type);
            int64_t C = wq->src->cols;
            float *row = malloc(sizeof(float) * C);
            double worst = 0;
            for (int r = 2; r <= 4; r++) {
                qt->dequant((const char *)m2->layers[0].wq.data + r * m2->layers[0].wq.row_bytes, row, C);
                for (int64_t c = 0; c < C; c++) {
                    double want = (r == 3 ? 2.0 : 1.0) * wq->w0[r * C + c];
                    worst = fmax(worst, fabs(row[c] - want));
                }
            }
            CHECKF(worst == 0, "rows 2..4 of the written attn_q differ from the expected by %g", worst);
            CHECK(memcmp(m2->layers[5].ffn_norm.data, m->layers[5].ffn_norm.data, sizeof(float) * m->hp.n_embd) == 0);
            char buf[32];
            CHECK(lb_model_meta_str(m2, "general.architecture", buf, sizeof buf) == LB_OK && !strcmp(buf, "llama"));
            free(row);
            lb_model_free(m2);
        }
        remove(out);
    }
    lb__tune_state_free(st);
    lb__tune_model_free(&tm);
    lb_pool_free(pool);
    lb_session_free(s);
    free(ref);
    lb_model_free(m);
}

static void test_rejects_qwen2(void)
{
    lb_model_params mp = lb_model_default_params();
    lb_model *m = NULL;
    if (lb_model_load(check_shared("models/techdocs-qwen-22M-Q4_K_M.gguf"), &mp, &m) != LB_OK)
        return;
    lb_tune_model tm;
    lb_err err = {0};
    CHECK(lb__tune_model_init(&tm, m, NULL, &err) == LB_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "llama") != NULL, "%s", err.msg);
    lb_model_free(m);
}

int main(void)
{
    RUN(test_sgemm);
    RUN(test_gradients);
    RUN(test_gradients_tied);
    RUN(test_engine_agreement);
    RUN(test_rejects_qwen2);
    return check_done();
}
