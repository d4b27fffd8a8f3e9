/* The sliding window with attention sinks: both stores against a
 * StreamingLLM reference computed in double from the raw (pre-RoPE) vectors,
 * batches against one token at a time across ring wraps, rewind refusals,
 * the estimator against the allocation, and sessions running past their
 * context on a real model. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "check.h"
#include "kv/kv_cache.h"
#include "kv/kv_window.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static float gauss(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    float u = (float)((rng >> 40) + 1) / 16777217.0f;
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    float v = (float)(rng >> 40) / 16777216.0f;
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

enum { D = 64, NH = 4, NKV = 2, GRP = NH / NKV, QW = NH * D, KVW = NKV * D };

static lb_hparams test_hp(void)
{
    lb_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_layer = 2;
    hp.n_head = NH;
    hp.n_head_kv = NKV;
    hp.head_dim = D;
    hp.n_embd = NH * D;
    hp.n_rot = D;
    hp.rope_base = 10000.0f;
    hp.rope_scale = 1.0f;
    hp.rope = LB_ROPE_NORM;
    return hp;
}

/* cos, sin of every pair's angle at positions below 1024 (the reference
 * rotates each key many times) */
static double rope_cs[1024][D / 2][2];
static int rope_cs_ready;

/* Adjacent-pair RoPE of n_heads vectors at pos, in double. */
static void rope(double *x, int n_heads, int pos)
{
    if (!rope_cs_ready) {
        for (int p = 0; p < 1024; p++)
            for (int i = 0; i < D / 2; i++) {
                double th = p * pow(10000.0, -2.0 * i / D);
                rope_cs[p][i][0] = cos(th);
                rope_cs[p][i][1] = sin(th);
            }
        rope_cs_ready = 1;
    }
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < D / 2; i++) {
            const bool tab = pos >= 0 && pos < 1024;
            const double th = tab ? 0 : pos * pow(10000.0, -2.0 * i / D);
            const double c = tab ? rope_cs[pos][i][0] : cos(th), s = tab ? rope_cs[pos][i][1] : sin(th);
            double a = x[h * D + 2 * i], b = x[h * D + 2 * i + 1];
            x[h * D + 2 * i] = a * c - b * s;
            x[h * D + 2 * i + 1] = a * s + b * c;
        }
}

/* The stream: raw keys, values and queries per position, and what the
 * forward pass hands the cache (keys and queries rotated at their absolute
 * positions, rounded to float). */
typedef struct stream {
    int n;
    float *k, *v, *q;        /* [n][KVW], [n][KVW], [n][QW] raw */
    float *kr, *qr;          /* [n][KVW], [n][QW] rotated at the absolute position */
} stream;

static void stream_make(stream *s, int n)
{
    s->n = n;
    s->k = malloc(sizeof(float) * KVW * n);
    s->v = malloc(sizeof(float) * KVW * n);
    s->q = malloc(sizeof(float) * QW * n);
    s->kr = malloc(sizeof(float) * KVW * n);
    s->qr = malloc(sizeof(float) * QW * n);
    double tmp[QW];
    for (int p = 0; p < n; p++) {
        for (int i = 0; i < KVW; i++) {
            /* a per-channel offset, as real keys have; values unit Gaussian */
            s->k[p * KVW + i] = 0.5f * gauss() + 0.2f * (float)(i % 3);
            s->v[p * KVW + i] = gauss();
        }
        for (int i = 0; i < QW; i++)
            s->q[p * QW + i] = 0.5f * gauss();
        for (int i = 0; i < KVW; i++)
            tmp[i] = s->k[p * KVW + i];
        rope(tmp, NKV, p);
        for (int i = 0; i < KVW; i++)
            s->kr[p * KVW + i] = (float)tmp[i];
        for (int i = 0; i < QW; i++)
            tmp[i] = s->q[p * QW + i];
        rope(tmp, NH, p);
        for (int i = 0; i < QW; i++)
            s->qr[p * QW + i] = (float)tmp[i];
    }
}

static void stream_free(stream *s)
{
    free(s->k);
    free(s->v);
    free(s->q);
    free(s->kr);
    free(s->qr);
}

/* StreamingLLM's attention for the query at position p over the sinks
 * 0..n_sink-1 and the window w0..p, every vector rotated at its slot
 * position (sink j at j, window position x at S + x - w0), in double. */
static void reference(const stream *s, int p, int n_sink, int w0, float *out)
{
    const int S = p + 1 < n_sink ? p + 1 : n_sink, nv = S + (p >= w0 ? p - w0 + 1 : 0);
    double *ks = malloc(sizeof(double) * KVW * nv), q[QW], sc[4096];
    for (int i = 0; i < nv; i++) {
        const int x = i < S ? i : w0 + i - S;
        for (int e = 0; e < KVW; e++)
            ks[i * KVW + e] = s->k[x * KVW + e];
        rope(ks + i * KVW, NKV, i < S ? i : n_sink + x - w0);
    }
    for (int e = 0; e < QW; e++)
        q[e] = s->q[p * QW + e];
    rope(q, NH, p >= w0 ? n_sink + p - w0 : p);
    for (int h = 0; h < NH; h++) {
        const int kvh = h / GRP;
        double mx = -1e300, sum = 0;
        for (int i = 0; i < nv; i++) {
            double d = 0;
            for (int e = 0; e < D; e++)
                d += q[h * D + e] * ks[i * KVW + kvh * D + e];
            sc[i] = d / sqrt((double)D);
            mx = fmax(mx, sc[i]);
        }
        for (int i = 0; i < nv; i++)
            sum += sc[i] = exp(sc[i] - mx);
        for (int e = 0; e < D; e++) {
            double a = 0;
            for (int i = 0; i < nv; i++) {
                const int x = i < S ? i : w0 + i - S;
                a += sc[i] / sum * s->v[x * KVW + kvh * D + e];
            }
            out[h * D + e] = (float)a;
        }
    }
    free(ks);
}

/* The first window position a query at p sees. */
static int window_start(lb_kv_type k, lb_kv_type v, int W, int S, int p)
{
    if (p < S)
        return S;
    if (k == LB_KV_F16 && v == LB_KV_F16)
        return p - W + 1 > S ? p - W + 1 : S;
    /* whole groups: ceil(W / G) quantized slots behind the residual group of p */
    const int wg = (W + LB_KV_GROUP - 1) / LB_KV_GROUP, g = (p - S) / LB_KV_GROUP;
    return S + (g > wg ? g - wg : 0) * LB_KV_GROUP;
}

/* One configuration: cache A fed in batches, cache B one token at a time;
 * B's rows against the reference, A's against B's. */
static void run_window(lb_kv_type tk, lb_kv_type tv, int W, int S, const int *batches, int n_batches, double tol)
{
    lb_hparams hp = test_hp();
    lb_pool *pool = lb_pool_new(2);
    lb_kv_cache *ca = NULL, *cb = NULL;
    lb_err err = {0};
    CHECK(lb_kv_cache_new_window(&hp, W, S, lb_pool_size(pool), tk, tv, &ca, &err) == LB_OK);
    CHECK(lb_kv_cache_new_window(&hp, W, S, lb_pool_size(pool), tk, tv, &cb, &err) == LB_OK);
    int total = 0;
    for (int i = 0; i < n_batches; i++)
        total += batches[i];
    stream s;
    stream_make(&s, total);
    if (!ca || !cb) {
        lb_kv_cache_free(ca);
        lb_kv_cache_free(cb);
        lb_pool_free(pool);
        stream_free(&s);
        return;
    }
    CHECK(lb_kv_cache_n_ctx(ca) == LB_KV_MAX_POS);
    lb_kv_ops A = lb_kv_cache_ops(ca), B = lb_kv_cache_ops(cb);
    float *out = malloc(sizeof(float) * QW * total), one[QW], ref[QW];
    double worst_ref = 0, worst_ab = 0;
    int pos = 0, worst_p = -1;
    for (int bi = 0; bi < n_batches; bi++) {
        const int n = batches[bi];
        for (int il = 0; il < hp.n_layer; il++) {
            CHECK(A.store(A.ctx, il, pos, n, s.kr + (size_t)pos * KVW, s.v + (size_t)pos * KVW) == LB_OK);
            A.attend(A.ctx, il, pos, n, s.qr + (size_t)pos * QW, out, pool);
        }
        for (int t = 0; t < n; t++) {
            const int p = pos + t;
            for (int il = 0; il < hp.n_layer; il++) {
                CHECK(B.store(B.ctx, il, p, 1, s.kr + (size_t)p * KVW, s.v + (size_t)p * KVW) == LB_OK);
                B.attend(B.ctx, il, p, 1, s.qr + (size_t)p * QW, one, pool);
            }
            reference(&s, p, S, window_start(tk, tv, W, S, p), ref);
            for (int i = 0; i < QW; i++) {
                double e = fabs(one[i] - ref[i]);
                if (e > worst_ref) {
                    worst_ref = e;
                    worst_p = p;
                }
                worst_ab = fmax(worst_ab, fabs(one[i] - out[(size_t)t * QW + i]));
            }
        }
        pos += n;
    }
    CHECKF(worst_ref < tol, "%s/%s W %d S %d: against StreamingLLM: %g at position %d", lb_kv_type_name(tk),
           lb_kv_type_name(tv), W, S, worst_ref, worst_p);
    CHECKF(worst_ab < 1e-4, "%s/%s W %d S %d: batched vs one at a time: %g", lb_kv_type_name(tk),
           lb_kv_type_name(tv), W, S, worst_ab);
    printf("  %s/%s window %d sinks %d, %d positions: max |out - reference| %.2e, batch vs single %.2e\n",
           lb_kv_type_name(tk), lb_kv_type_name(tv), W, S, total, worst_ref, worst_ab);
    /* the window has slid: going back into it is refused, a reset is not */
    if (total > S + W + LB_KV_GROUP + LB_KV_RING_SLACK) {
        CHECK(B.store(B.ctx, 0, total - W, 1, s.kr, s.v) == LB_ERR_RANGE);
        CHECK(B.store(B.ctx, 0, total + 1, 1, s.kr, s.v) == LB_ERR_RANGE);
        CHECK(B.store(B.ctx, 0, 0, 1, s.kr, s.v) == LB_OK);
        B.attend(B.ctx, 0, 0, 1, s.qr, one, pool);
        reference(&s, 0, S, S, ref);
        double e0 = 0;
        for (int i = 0; i < QW; i++)
            e0 = fmax(e0, fabs(one[i] - ref[i]));
        CHECKF(e0 < tol, "after a reset: %g", e0);
    }
    free(out);
    lb_kv_cache_free(ca);
    lb_kv_cache_free(cb);
    lb_pool_free(pool);
    stream_free(&s);
}

static void test_window_attention(void)
{
    /* ends at 1, 2, 5, 69, 100, 101, 164, 300, 301, 420, 557, 700 */
    const int mixed[] = {1, 1, 3, 64, 31, 1, 63, 136, 1, 119, 137, 143};
    const int n_mixed = (int)(sizeof mixed / sizeof *mixed);
    /* F16: exact but for f16 rounding of q, k, v and the probabilities */
    run_window(LB_KV_F16, LB_KV_F16, 100, 4, mixed, n_mixed, 4e-3);
    run_window(LB_KV_F16, LB_KV_F16, 100, 0, mixed, n_mixed, 4e-3);
    run_window(LB_KV_F16, LB_KV_F16, 37, 1, mixed, n_mixed, 4e-3);
    /* quantized: the quantization error on top (q8 small, q4 within its read-back error) */
    run_window(LB_KV_Q8, LB_KV_Q8, 128, 4, mixed, n_mixed, 2e-2);
    run_window(LB_KV_Q8, LB_KV_Q8, 200, 3, mixed, n_mixed, 2e-2);
    run_window(LB_KV_Q4, LB_KV_Q4, 128, 4, mixed, n_mixed, 0.15);
    run_window(LB_KV_F16, LB_KV_Q8, 128, 2, mixed, n_mixed, 2e-2);
    run_window(LB_KV_Q8, LB_KV_F16, 256, 0, mixed, n_mixed, 2e-2);
}

/* The sink rebasing itself: shifting a query rotated at one position to
 * another equals rotating it there in the first place. */
static void test_rope_shift(void)
{
    lb_hparams hp = test_hp();
    lb_kv_rope r;
    lb__kv_rope_init(&r, &hp);
    const int cases[][2] = {{5000, 4}, {17, 3}, {100000, 1027}, {3, 3}};
    for (int c = 0; c < 4; c++) {
        double raw[D], a[D];
        float x[D];
        for (int i = 0; i < D; i++)
            raw[i] = a[i] = gauss();
        rope(a, 1, cases[c][0]);
        for (int i = 0; i < D; i++)
            x[i] = (float)a[i];
        lb__kv_rope_shift(&r, x, 1, D, cases[c][0], cases[c][1]);
        memcpy(a, raw, sizeof a);
        rope(a, 1, cases[c][1]);
        double worst = 0;
        for (int i = 0; i < D; i++)
            worst = fmax(worst, fabs(x[i] - a[i]));
        /* the forward's float angles are off the exact ones by ~1e-7 rad per unit of position */
        CHECKF(worst < (cases[c][0] > 1000 ? 3e-7 * cases[c][0] : 1e-4), "shift %d -> %d: %g", cases[c][0],
               cases[c][1], worst);
    }
}

/* The same for NeoX-ordered RoPE (pairs (i, i + n_rot/2)), rotating only
 * the first 32 of 64 dimensions, base 1e6 (qwen2's). */
static void test_rope_shift_neox(void)
{
    lb_hparams hp = test_hp();
    hp.rope = LB_ROPE_NEOX;
    hp.n_rot = 32;
    hp.rope_base = 1e6f;
    lb_kv_rope r;
    lb__kv_rope_init(&r, &hp);
    double raw[2 * D];
    for (int i = 0; i < 2 * D; i++)
        raw[i] = gauss();
    const int from = 700, to = 5;
    float x[2 * D];
    double want[2 * D];
    for (int pass = 0; pass < 2; pass++) {
        const int pos = pass ? to : from;
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < D; i++) {
                double v = raw[h * D + i];
                if (i < 32) {
                    const int k = i % 16;
                    const double th = pos * pow(1e6, -2.0 * k / 32), c = cos(th), sn = sin(th);
                    const double a = raw[h * D + k], b = raw[h * D + k + 16];
                    v = i < 16 ? a * c - b * sn : a * sn + b * c;
                }
                if (pass)
                    want[h * D + i] = v;
                else
                    x[h * D + i] = (float)v;
            }
    }
    lb__kv_rope_shift(&r, x, 2, D, from, to);
    double worst = 0;
    for (int i = 0; i < 2 * D; i++)
        worst = fmax(worst, fabs(x[i] - want[i]));
    CHECKF(worst < 1e-4, "neox shift: %g", worst);
}

static void test_window_sizes(void)
{
    lb_hparams hp = test_hp();
    hp.n_layer = 8;
    hp.n_head = 8;
    /* constant in the stream length, and what a cache of the window's size costs */
    const size_t f = lb_kv_estimate_bytes_window(&hp, 1024, 4, LB_KV_F16, LB_KV_F16, 2);
    CHECK(f == lb_kv_cache_bytes_window(&hp, 1024, 4, 2));
    CHECK(f >= lb_kv_estimate_bytes(&hp, 1024 + 4 + LB_KV_RING_SLACK, LB_KV_F16, LB_KV_F16, 2));
    const size_t q = lb_kv_estimate_bytes_window(&hp, 1024, 4, LB_KV_Q4, LB_KV_Q4, 2);
    /* the quantized window holds 1025..1152 positions besides the sinks */
    const size_t q0 = lb_kv_estimate_bytes_sinks(&hp, 4 + 1024, LB_KV_Q4, LB_KV_Q4, 4, 2),
                 q1 = lb_kv_estimate_bytes_sinks(&hp, 4 + 1024 + LB_KV_GROUP, LB_KV_Q4, LB_KV_Q4, 4, 2);
    CHECKF(q >= q0 && q <= q1, "q4 window %zu vs caches of its size %zu .. %zu", q, q0, q1);
    CHECK(q * 2 < f);
    CHECK(lb_kv_estimate_bytes_window(&hp, 0, 4, LB_KV_Q4, LB_KV_Q4, 2) == 0);
    CHECK(lb_kv_estimate_bytes_window(&hp, 64, -1, LB_KV_Q4, LB_KV_Q4, 2) == 0);
    lb_kv_cache *c = NULL;
    lb_err err = {0};
    CHECK(lb_kv_cache_new_window(&hp, 0, 0, 1, LB_KV_F16, LB_KV_F16, &c, &err) == LB_ERR_INVALID_ARG && !c);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    const lb_kv_type pairs[3][2] = {{LB_KV_Q4, LB_KV_Q4}, {LB_KV_F16, LB_KV_Q2}, {LB_KV_F16, LB_KV_F16}};
    for (int i = 0; i < 3; i++) {
        size_t est = lb_kv_estimate_bytes_window(&hp, 1000, 4, pairs[i][0], pairs[i][1], 2);
        size_t before = mallinfo2().uordblks + mallinfo2().hblkhd;
        CHECK(lb_kv_cache_new_window(&hp, 1000, 4, 2, pairs[i][0], pairs[i][1], &c, &err) == LB_OK);
        size_t after = mallinfo2().uordblks + mallinfo2().hblkhd;
        if (after > before)
            CHECKF((double)(after - before) <= est * 1.01 && (double)(after - before) >= est * 0.99,
                   "%s/%s: allocated %zu, estimated %zu", lb_kv_type_name(pairs[i][0]), lb_kv_type_name(pairs[i][1]),
                   after - before, est);
        lb_kv_cache_free(c);
    }
#endif
}

/* A real model: a window wider than the stream changes nothing; a narrow
 * one lets a session of context 256 run 900 tokens; sinks are accepted
 * through the public parameters. */
static void test_session_window(void)
{
    lb_model *m = NULL;
    if (lb_model_load(check_shared("models/techdocs-28M-Q4_K_M.gguf"), NULL, &m) != LB_OK) {
        CHECKF(0, "cannot load the model: %s", lb_last_load_error());
        return;
    }
    lb_model_info info;
    lb_model_get_info(m, &info);
    static char text[4001];
    FILE *f = fopen(check_shared("text/techdocs-valid.txt"), "rb");
    size_t len = f ? fread(text, 1, 4000, f) : 0;
    if (f)
        fclose(f);
    CHECK(len == 4000);
    static lb_token toks[4100];
    size_t n = 0;
    CHECK(lb_tokenize(m, text, len, true, false, toks, 4100, &n) == LB_OK);
    CHECKF(n > 900, "%zu tokens", n);
    n = 900;
    const int V = info.n_vocab;
    float *a = malloc(sizeof(float) * V), *b = malloc(sizeof(float) * V);
    const lb_kv_type types[2] = {LB_KV_F16, LB_KV_Q4};
    for (int ti = 0; ti < 2; ti++) {
        /* 300 tokens: no window vs a window of 512 (nothing evicted) */
        lb_session_params sp = lb_session_default_params();
        sp.n_ctx = 512;
        sp.n_threads = 2;
        sp.kv_type_k = sp.kv_type_v = types[ti];
        lb_session *s = NULL, *w = NULL;
        CHECK(lb_session_new(m, &sp, &s) == LB_OK);
        sp.n_window = 512;
        CHECK(lb_session_new(m, &sp, &w) == LB_OK);
        if (s && w) {
            CHECK(lb_session_eval(s, toks, 300, a, true) == LB_OK);
            CHECK(lb_session_eval(w, toks, 300, b, true) == LB_OK);
            double worst = 0;
            for (int k = 0; k < V; k++)
                worst = fmax(worst, fabs(a[k] - b[k]));
            /* the same arithmetic in the same order (a batch uses the dot16 order either way) */
            CHECKF(worst == 0, "%s: window 512 vs none: %g", lb_kv_type_name(types[ti]), worst);
        }
        lb_session_free(s);
        lb_session_free(w);
        /* context 256, window 128 + 4 sinks: 900 tokens, the last 200 one at a time */
        sp.n_ctx = 256;
        sp.n_window = 128;
        sp.n_sinks = 4;
        s = NULL;
        CHECK(lb_session_new(m, &sp, &s) == LB_OK);
        if (s) {
            CHECK(lb_session_eval(s, toks, 700, NULL, false) == LB_OK);
            int hits = 0;
            for (int t = 700; t < 900; t++) {
                CHECK(lb_session_eval(s, toks + t, 1, a, true) == LB_OK);
                int am = 0;
                for (int k = 1; k < V; k++)
                    am = a[k] > a[am] ? k : am;
                hits += t + 1 < (int)n && am == toks[t + 1];
            }
            CHECK(lb_session_n_past(s) == 900);
            /* still predicting text, not noise (about half of greedy guesses hit on this model) */
            CHECKF(hits > 50, "%s: %d of 199 next tokens guessed", lb_kv_type_name(types[ti]), hits);
            printf("  %s window 128 + 4 sinks, context 256: 900 tokens, %d/199 greedy hits\n",
                   lb_kv_type_name(types[ti]), hits);
        }
        lb_session_free(s);
    }
    lb_session_params bad = lb_session_default_params();
    bad.n_window = -1;
    lb_session *s = NULL;
    CHECK(lb_session_new(m, &bad, &s) == LB_ERR_INVALID_ARG && !s);
    bad.n_window = 0;
    bad.n_ctx = 64;
    bad.n_sinks = 65;
    CHECK(lb_session_new(m, &bad, &s) == LB_ERR_INVALID_ARG && !s);
    free(a);
    free(b);
    lb_model_free(m);
}

int main(void)
{
    RUN(test_rope_shift);
    RUN(test_rope_shift_neox);
    RUN(test_window_attention);
    RUN(test_window_sizes);
    RUN(test_session_window);
    return check_done();
}
