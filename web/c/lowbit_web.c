/* The C side of the web SDK: a small, pull-style API over lowbit.h that the worker calls through emscripten.
 *
 * Why pull-style: lb_generate runs the whole decode loop inside one call, so a
 * Worker could neither post tokens as they are produced nor notice a cancel
 * message.  Here the worker calls lbw_gen_step() once per token and returns to
 * its event loop in between; the loop mirrors lb_generate (same sampler, same
 * UTF-8 and stop-string filter), so the text is the same.  Answers with
 * several fields are JSON text in a buffer owned by this file (valid until the
 * next call that returns JSON), which keeps the JS side free of struct offsets. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emscripten/emscripten.h>

#include "lowbit.h"
#include "generate/session.h"   /* n_ctx of a session, which lowbit.h does not expose */
#include "generate/utf8_stream.h"
#include "server/chat_template.h"

#define LBW_API EMSCRIPTEN_KEEPALIVE

/* Exported functions are declared here, once, to satisfy -Wmissing-prototypes. */
LBW_API const char *lbw_last_error(void);
LBW_API const char *lbw_plan(const void *hdr, size_t len, double budget, int n_threads, int n_batch, int min_ctx,
                             int max_ctx);
LBW_API lb_model *lbw_model_load(const void *data, size_t size);
LBW_API void lbw_model_free(lb_model *m);
LBW_API const char *lbw_model_info(const lb_model *m);
LBW_API lb_session *lbw_session_new(lb_model *m, int n_ctx, int n_threads, int n_batch, int kv_k, int kv_v);
LBW_API void lbw_session_free(lb_session *s);
LBW_API char *lbw_chat_prompt(const lb_model *m, const char *msgs, int n);
LBW_API const char *lbw_chat_stop(const lb_model *m);
LBW_API int lbw_gen_begin(lb_session *s, lb_model *m, const char *prompt, int max_tokens, double temperature,
                          int top_k, double top_p, double min_p, double repeat_penalty, double seed,
                          const char *stops, int n_stop, int add_special);
LBW_API int lbw_gen_step(void);
LBW_API int lbw_gen_token(void);
LBW_API const char *lbw_gen_piece(void);
LBW_API int lbw_gen_piece_len(void);
LBW_API const char *lbw_gen_stats(void);
LBW_API void lbw_gen_end(void);

static char g_json[16384];   /* the last JSON answer */
static char g_err[512];      /* the last error message */

/* A bounded JSON writer over g_json: on overflow the text is cut, never overrun. */
typedef struct jbuf {
    size_t n;
} jbuf;

static void jraw(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jraw(jbuf *b, const char *fmt, ...)
{
    if (b->n >= sizeof g_json - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(g_json + b->n, sizeof g_json - b->n, fmt, ap);
    va_end(ap);
    if (w > 0)
        b->n += (size_t)w < sizeof g_json - b->n ? (size_t)w : sizeof g_json - 1 - b->n;
}

/* A JSON string literal; control characters are escaped, other bytes pass through (the inputs are UTF-8). */
static void jstr(jbuf *b, const char *s)
{
    jraw(b, "\"");
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            jraw(b, "\\%c", c);
        else if (c < 0x20)
            jraw(b, "\\u%04x", c);
        else
            jraw(b, "%c", c);
    }
    jraw(b, "\"");
}

static void set_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
}

const char *lbw_last_error(void)
{
    return g_err;
}

/* ------------------------------------------------------------ preflight */

const char *lbw_plan(const void *hdr, size_t len, double budget, int n_threads, int n_batch, int min_ctx, int max_ctx)
{
    lb_plan_params p = lb_plan_default_params();
    p.n_threads = n_threads;
    p.n_batch = n_batch;
    p.min_ctx = min_ctx;
    p.max_ctx = max_ctx;
    /* ~6 KB: static rather than on the wasm stack, which pthreads in the mt build keep small. */
    static lb_plan_result r;
    size_t bud = budget <= 0 ? 0 : budget >= (double)SIZE_MAX ? SIZE_MAX : (size_t)budget;
    lb_status st = lb_plan_from_gguf(hdr, len, bud, &p, &r);
    jbuf b = {0};
    jraw(&b, "{\"status\":%d,\"status_str\":", (int)st);
    jstr(&b, lb_status_str(st));
    jraw(&b, ",\"error\":");
    jstr(&b, r.error);
    jraw(&b, ",\"bytes_needed\":%llu", (unsigned long long)r.bytes_needed);
    if (st == LB_OK) {
        jraw(&b,
             ",\"file_bytes\":%llu,\"weight_bytes\":%llu,\"model_bytes\":%llu,\"overhead_bytes\":%llu,"
             "\"fixed_bytes\":%llu,\"n_ctx_train\":%d,\"n_threads\":%d,\"n_batch\":%d,\"min_ctx\":%d,"
             "\"max_ctx\":%d,\"recommended\":%d,\"pairs\":[",
             (unsigned long long)r.file_bytes, (unsigned long long)r.weight_bytes,
             (unsigned long long)r.model_bytes, (unsigned long long)r.overhead_bytes,
             (unsigned long long)r.fixed_bytes, r.n_ctx_train, r.n_threads, r.n_batch, r.min_ctx, r.max_ctx,
             r.recommended);
        for (int i = 0; i < LB_PLAN_N_PAIRS; i++) {
            const lb_plan_entry *e = &r.pairs[i];
            jraw(&b,
                 "%s{\"kv_k\":\"%s\",\"kv_v\":\"%s\",\"supported\":%s,\"bytes_per_token\":%llu,\"n_ctx\":%d,"
                 "\"kv_bytes\":%llu,\"scratch_bytes\":%llu,\"total_bytes\":%llu}",
                 i ? "," : "", lb_kv_type_name(e->kv_k), lb_kv_type_name(e->kv_v), e->supported ? "true" : "false",
                 (unsigned long long)e->bytes_per_token, e->n_ctx, (unsigned long long)e->kv_bytes,
                 (unsigned long long)e->scratch_bytes, (unsigned long long)e->total_bytes);
        }
        jraw(&b, "]");
    }
    jraw(&b, "}");
    return g_json;
}

/* --------------------------------------------------------------- models */

lb_model *lbw_model_load(const void *data, size_t size)
{
    lb_model_params p = lb_model_default_params();
    p.use_mmap = false;
    lb_model *m = NULL;
    lb_status st = lb_model_load_memory(data, size, &p, &m);
    if (st) {
        set_err("%s: %s", lb_status_str(st), lb_last_load_error());
        return NULL;
    }
    return m;
}

void lbw_model_free(lb_model *m)
{
    lb_model_free(m);
}

static lb_chat_format chat_format(const lb_model *m)
{
    /* Templates are a few KB; one that does not fit is not one of the formats we recognize anyway. */
    static char tmpl[32768];
    if (lb_model_meta_str(m, "tokenizer.chat_template", tmpl, sizeof tmpl) != LB_OK)
        return LB_CHAT_PLAIN;
    return lb_chat_detect(tmpl);
}

const char *lbw_model_info(const lb_model *m)
{
    lb_model_info in;
    lb_model_get_info(m, &in);
    jbuf b = {0};
    jraw(&b, "{\"arch\":");
    jstr(&b, in.arch);
    jraw(&b, ",\"name\":");
    jstr(&b, in.name);
    jraw(&b,
         ",\"n_vocab\":%d,\"n_ctx_train\":%d,\"n_embd\":%d,\"n_layer\":%d,\"n_head\":%d,\"n_head_kv\":%d,"
         "\"n_ff\":%d,\"n_params\":%lld,\"weight_bytes\":%llu,\"bits_per_weight\":%.4f,\"bos\":%d,\"eos\":%d,"
         "\"chat_format\":\"%s\"}",
         in.n_vocab, in.n_ctx_train, in.n_embd, in.n_layer, in.n_head, in.n_head_kv, in.n_ff,
         (long long)in.n_params, (unsigned long long)in.weight_bytes, in.bits_per_weight, in.bos, in.eos,
         lb_chat_format_name(chat_format(m)));
    return g_json;
}

lb_session *lbw_session_new(lb_model *m, int n_ctx, int n_threads, int n_batch, int kv_k, int kv_v)
{
    if (kv_k < 0 || kv_k >= LB_KV_TYPE_COUNT || kv_v < 0 || kv_v >= LB_KV_TYPE_COUNT) {
        set_err("invalid KV types %d/%d", kv_k, kv_v);
        return NULL;
    }
    lb_session_params p = lb_session_default_params();
    p.n_ctx = n_ctx;
    p.n_threads = n_threads;
    p.n_batch = n_batch;
    p.kv_type_k = (lb_kv_type)kv_k;
    p.kv_type_v = (lb_kv_type)kv_v;
    lb_session *s = NULL;
    lb_status st = lb_session_new(m, &p, &s);
    if (st) {
        set_err("%s: %s", lb_status_str(st), lb_model_last_error(m));
        return NULL;
    }
    return s;
}

void lbw_session_free(lb_session *s)
{
    lb_session_free(s);
}

/* msgs holds n (role, content) pairs as 2n consecutive NUL-terminated strings.
 * Returns a malloc'd prompt (free with _free) or NULL. */
char *lbw_chat_prompt(const lb_model *m, const char *msgs, int n)
{
    if (n < 0 || (n > 0 && !msgs)) {
        set_err("invalid messages");
        return NULL;
    }
    lb_chat_msg *v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);   /* [n] */
    if (!v) {
        set_err("out of memory for %d messages", n);
        return NULL;
    }
    const char *p = msgs;
    for (int i = 0; i < n; i++) {
        v[i].role = p;
        p += strlen(p) + 1;
        v[i].content = p;
        p += strlen(p) + 1;
    }
    char *out = lb_chat_render(chat_format(m), v, n);
    free(v);
    if (!out)
        set_err("out of memory rendering the chat prompt");
    return out;
}

const char *lbw_chat_stop(const lb_model *m)
{
    const char *s = lb_chat_stop(chat_format(m));
    return s ? s : "";
}

/* ----------------------------------------------------------- generation */

enum { PHASE_IDLE, PHASE_RUN, PHASE_FLUSH, PHASE_DONE };

static struct gen {
    int phase;
    lb_session *s;
    lb_model *m;
    lb_sampler *smp;
    lb__text_stream ts;
    char *stop_buf;            /* the stop strings, copied: NUL-separated */
    const char **stop;         /* [n_stop] pointers into stop_buf */
    int n_stop;
    float *logits;             /* [n_vocab] the distribution for the next token */
    int n_vocab, i, max_tokens;
    lb_token pending;          /* sampled but not yet evaluated; -1 when none */
    lb_token token;            /* the last event's token (-1 for the flush event) */
    const char *piece;         /* the last event's text (not NUL-terminated) */
    size_t piece_len;
    int n_prompt, n_gen;
    double t0, t1, prev, prompt_ms, gen_ms, last_latency_ms;
    const char *finish;
} G = {.phase = PHASE_IDLE, .pending = -1};

void lbw_gen_end(void)
{
    if (G.phase != PHASE_IDLE)
        lb__text_stream_free(&G.ts);
    lb_sampler_free(G.smp);
    free(G.logits);
    free(G.stop);
    free(G.stop_buf);
    memset(&G, 0, sizeof G);
    G.phase = PHASE_IDLE;
    G.pending = -1;
}

/* stops: n_stop NUL-terminated strings back to back.  Tokenizes and evaluates
 * the prompt (the prefill); returns 0 or an lb_status (message: lbw_last_error). */
int lbw_gen_begin(lb_session *s, lb_model *m, const char *prompt, int max_tokens, double temperature, int top_k,
                  double top_p, double min_p, double repeat_penalty, double seed, const char *stops, int n_stop,
                  int add_special)
{
    lbw_gen_end();
    if (!s || !m || !prompt || n_stop < 0 || (n_stop > 0 && !stops)) {
        set_err("lbw_gen_begin: invalid argument");
        return LB_ERR_INVALID_ARG;
    }
    lb_model_info info;
    lb_model_get_info(m, &info);
    G.s = s;
    G.m = m;
    G.n_vocab = info.n_vocab;
    G.max_tokens = max_tokens;
    G.finish = "error";
    size_t stop_len = 0;
    for (int i = 0; i < n_stop; i++)
        stop_len += strlen(stops + stop_len) + 1;
    G.stop_buf = malloc(stop_len + 1);
    G.stop = calloc((size_t)n_stop + 1, sizeof *G.stop);
    G.logits = malloc((size_t)G.n_vocab * sizeof *G.logits);
    size_t len = strlen(prompt), cap = len + 8, n_tok = 0;
    lb_token *toks = malloc(cap * sizeof *toks);   /* [cap] the prompt's tokens */
    if (!G.stop_buf || !G.stop || !G.logits || !toks) {
        free(toks);
        set_err("out of memory starting a generation (prompt of %zu bytes)", len);
        return LB_ERR_NOMEM;
    }
    if (stop_len)
        memcpy(G.stop_buf, stops, stop_len);
    for (int i = 0, off = 0; i < n_stop; i++) {
        G.stop[i] = G.stop_buf + off;
        off += (int)strlen(G.stop_buf + off) + 1;
    }
    G.n_stop = n_stop;
    lb__text_stream_init(&G.ts, G.stop, G.n_stop);
    G.phase = PHASE_RUN;

    lb_sampler_params sp = lb_sampler_default_params();
    sp.temperature = (float)temperature;
    sp.top_k = top_k;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.repeat_penalty = (float)repeat_penalty;
    if (seed >= 0)
        sp.seed = (uint64_t)seed;
    lb_status rc = lb_tokenize(m, prompt, len, add_special != 0, true, toks, cap, &n_tok);
    if (rc)
        set_err("tokenizing the prompt: %s", lb_status_str(rc));
    if (!rc && n_tok == 0) {
        set_err("the prompt is empty and the model adds no BOS token");
        rc = LB_ERR_INVALID_ARG;
    }
    if (!rc && (int)n_tok + 1 > s->n_ctx) {
        set_err("the prompt has %zu tokens; the context holds %d", n_tok, s->n_ctx);
        rc = LB_ERR_RANGE;
    }
    if (!rc && (rc = lb_sampler_new(&sp, G.n_vocab, &G.smp)))
        set_err("creating the sampler: %s", lb_status_str(rc));
    if (rc) {
        free(toks);
        G.phase = PHASE_DONE;
        return rc;
    }
    for (size_t i = 0; i < n_tok; i++)
        lb_sampler_accept(G.smp, toks[i]);
    lb_session_reset(s);
    G.t0 = emscripten_get_now();
    rc = lb_session_eval(s, toks, (int)n_tok, G.logits, true);
    free(toks);
    G.t1 = emscripten_get_now();
    G.prev = G.t0;
    G.n_prompt = (int)n_tok;
    G.prompt_ms = G.t1 - G.t0;
    if (rc) {
        set_err("evaluating the prompt of %zu tokens: %s: %s", n_tok, lb_status_str(rc), lb_session_last_error(s));
        G.phase = PHASE_DONE;
        return rc;
    }
    G.finish = "length";
    return 0;
}

/* Ends the run phase with reason why; the next step flushes held-back text. */
static void finish_run(const char *why)
{
    G.finish = why;
    G.phase = PHASE_FLUSH;
}

/* Advances by one event.  Returns 1 when an event is ready (lbw_gen_token /
 * lbw_gen_piece), 0 when the generation is over (lbw_gen_stats), or minus an
 * lb_status on error (message: lbw_last_error). */
int lbw_gen_step(void)
{
    for (;;) {
        if (G.phase == PHASE_IDLE || G.phase == PHASE_DONE)
            return 0;
        if (G.phase == PHASE_FLUSH) {
            G.phase = PHASE_DONE;
            G.gen_ms = emscripten_get_now() - G.t1;
            lb_status rc = lb__text_stream_finish(&G.ts);
            if (rc) {
                set_err("out of memory in the text stream");
                G.finish = "error";
                return -(int)rc;
            }
            if (G.ts.n_out == 0)
                return 0;
            G.token = -1;
            G.piece = G.ts.out;
            G.piece_len = G.ts.n_out;
            return 1;
        }
        if (G.pending >= 0) {
            lb_token t = G.pending;
            G.pending = -1;
            lb_status rc = lb_session_eval(G.s, &t, 1, G.logits, true);
            if (rc) {
                set_err("evaluating generated token %d: %s: %s", G.i, lb_status_str(rc),
                        lb_session_last_error(G.s));
                G.finish = "error";
                G.phase = PHASE_DONE;
                return -(int)rc;
            }
        }
        if (G.i >= G.max_tokens) {
            finish_run("length");
            continue;
        }
        lb_token t = lb_sampler_sample(G.smp, G.logits);
        if (t < 0) {
            set_err("no finite logits to sample from at generated token %d", G.i);
            G.finish = "error";
            G.phase = PHASE_DONE;
            return -(int)LB_ERR_INTERNAL;
        }
        if (lb_token_is_eog(G.m, t)) {
            finish_run("stop");
            continue;
        }
        double now = emscripten_get_now();
        G.last_latency_ms = now - G.prev;
        G.prev = now;
        size_t plen = 0;
        const char *piece = lb_token_piece(G.m, t, &plen);
        lb_status rc = lb__text_stream_push(&G.ts, piece, piece ? plen : 0);
        if (rc) {
            set_err("out of memory in the text stream");
            G.finish = "error";
            G.phase = PHASE_DONE;
            return -(int)rc;
        }
        G.token = t;
        G.piece = G.ts.out;
        G.piece_len = G.ts.n_out;
        G.n_gen = ++G.i;
        if (G.ts.stopped)
            finish_run("stop");
        else if (G.i >= G.max_tokens)
            finish_run("length");
        else if (G.s->n_past >= G.s->n_ctx)
            finish_run("context");
        else
            G.pending = t;
        return 1;
    }
}

int lbw_gen_token(void)
{
    return G.token;
}

const char *lbw_gen_piece(void)
{
    return G.piece;
}

int lbw_gen_piece_len(void)
{
    return (int)G.piece_len;
}

const char *lbw_gen_stats(void)
{
    jbuf b = {0};
    double gen_ms = G.phase == PHASE_DONE ? G.gen_ms : emscripten_get_now() - G.t1;
    jraw(&b,
         "{\"n_prompt\":%d,\"n_gen\":%d,\"prompt_ms\":%.3f,\"gen_ms\":%.3f,\"n_past\":%d,\"finish_reason\":",
         G.n_prompt, G.n_gen, G.prompt_ms, gen_ms, G.s ? lb_session_n_past(G.s) : 0);
    jstr(&b, G.finish ? G.finish : "");
    jraw(&b, "}");
    return g_json;
}
