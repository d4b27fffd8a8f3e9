/* `lowbit serve`: civetweb routing, limits, auth, SSE streaming and static files. */
#include "server.h"

#include <civetweb.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "chat_template.h"
#include "metrics.h"
#include "openai.h"
#include "scheduler.h"
#include "ws.h"

#define KEEPALIVE_MS 10000   /* an SSE comment this often while nothing else is sent, so a vanished client is noticed */

typedef struct srv {
    lb_server_params p;
    lb_model *model;
    lb_srv_sched *sched;
    lb_ws *ws;                 /* the WebSocket endpoint /v1/ws (ws.c) */
    lb_srv_metrics *metrics;
    lb_chat_format chat;
    char web_root[PATH_MAX];   /* realpath of --web-root, "" when none */
    long started;              /* Unix time, for "created" in /v1/models */
    atomic_bool stopping;
    atomic_ulong next_id;
} srv;

lb_server_params lb_server_default_params(void)
{
    lb_server_params p;
    memset(&p, 0, sizeof p);
    p.host = "127.0.0.1";
    p.port = 8080;
    p.model_name = "lowbit";
    p.parallel = 1;
    p.queue = 16;
    p.max_tokens = 512;
    p.timeout_s = 300;
    p.max_body = 1 << 20;
    p.io_timeout_s = 30;
    p.prompt_cache = true;
    p.prompt_store = (size_t)128 << 20;
    return p;
}

/* ------------------------------------------------------------ replies */

/* With --cors, every answer names the allowed origin; without it, none does, so browsers keep other sites out. */
static void cors_header(struct mg_connection *c)
{
    const srv *s = mg_get_request_info(c)->user_data;
    if (s && s->p.cors) {
        mg_response_header_add(c, "Access-Control-Allow-Origin", s->p.cors, -1);
        if (strcmp(s->p.cors, "*"))
            mg_response_header_add(c, "Vary", "Origin", -1);
    }
}

static int reply(struct mg_connection *c, int status, const char *ctype, const char *body, size_t n,
                 const char *hname, const char *hval, bool close)
{
    char len[32];
    snprintf(len, sizeof len, "%zu", n);
    mg_response_header_start(c, status);
    mg_response_header_add(c, "Content-Type", ctype, -1);
    mg_response_header_add(c, "Content-Length", len, -1);
    mg_response_header_add(c, "Cache-Control", "no-store", -1);
    mg_response_header_add(c, "X-Content-Type-Options", "nosniff", -1);
    cors_header(c);
    if (hname)
        mg_response_header_add(c, hname, hval, -1);
    if (close)
        mg_response_header_add(c, "Connection", "close", -1);
    mg_response_header_send(c);
    if (n)
        mg_write(c, body, n);
    return status;
}

static int reply_json(struct mg_connection *c, int status, char *json, const char *hname, const char *hval)
{
    if (!json)
        return reply(c, 500, "application/json",
                     "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"code\":\"out_of_memory\"}}",
                     83, NULL, NULL, true);
    int r = reply(c, status, "application/json", json, strlen(json), hname, hval, false);
    free(json);
    return r;
}

static int reply_error(struct mg_connection *c, int status, const char *type, const char *code, const char *msg,
                       const char *hname, const char *hval)
{
    lb_oai_error e;
    memset(&e, 0, sizeof e);
    e.status = status;
    e.type = type;
    e.code = code;
    snprintf(e.message, sizeof e.message, "%s", msg);
    char *j = lb_oai_error_json(&e);
    if (!j)
        return reply_json(c, 500, NULL, NULL, NULL);
    /* A refused body may be left unread: close rather than let civetweb read it for keep-alive. */
    int r = reply(c, status, "application/json", j, strlen(j), hname, hval, status == 413);
    free(j);
    return r;
}

/* -------------------------------------------------------- auth, body */

/* Compares the whole length whatever the contents, so timing does not leak how much of a guess matched. */
static bool same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = la != lb;
    for (size_t i = 0; i < lb; i++)
        diff |= (unsigned char)(a[i < la ? i : 0] ^ b[i]) | (unsigned char)(i >= la);
    return diff == 0;
}

static bool authorized(const srv *s, struct mg_connection *c)
{
    if (!s->p.api_key)
        return true;
    const char *h = mg_get_header(c, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7))
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    return same_secret(h, s->p.api_key);
}

enum { BODY_READ = 16 };   /* bytes per mg_read of a request body; see read_body */

/* Reads the body into a malloc'd buffer; 0 on success, else the HTTP status to answer.
 * civetweb bounds each read by --io-timeout; a body dribbled a byte at a time
 * would still hold a thread for ever, so the whole body gets that long too (408). */
static int read_body(const srv *s, struct mg_connection *c, char **out, size_t *n_out)
{
    const struct mg_request_info *ri = mg_get_request_info(c);
    double deadline = lb_time_ms() + (s->p.io_timeout_s > 0 ? s->p.io_timeout_s : 30) * 1000.0;
    if (ri->content_length > 0 && (unsigned long long)ri->content_length > s->p.max_body)
        return 413;
    size_t cap = ri->content_length > 0 ? (size_t)ri->content_length + 1 : 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return 500;
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > s->p.max_body + 1) {
                free(buf);
                return 413;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return 500;
            }
            buf = nb;
            cap *= 2;
        }
        /* Small reads: civetweb's mg_read returns only when all it was asked for
         * has come (each wait bounded by --io-timeout, their sum not), so a read
         * of k bytes can be dribbled for k timeouts past the deadline.  16 bounds
         * that at 16 timeouts and costs ~0.3 s of CPU for a 1 MiB body (1 byte:
         * 5 s); a real prompt takes a few hundred reads. */
        size_t want = cap - n - 1 < BODY_READ ? cap - n - 1 : BODY_READ;
        int r = mg_read(c, buf + n, want);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n > s->p.max_body) {
            free(buf);
            return 413;
        }
        if (lb_time_ms() > deadline) {
            free(buf);
            return 408;
        }
    }
    buf[n] = '\0';
    *out = buf;
    *n_out = n;
    return 0;
}

/* ----------------------------------------------------- generation */

typedef struct sse {
    struct mg_connection *c;
    bool broken;   /* a write failed: the client is gone */
} sse;

/* One HTTP chunk holding the timing comment (stamp, ns bytes, or none) and
 * one SSE event, framed here and written by one mg_write: mg_send_chunk
 * writes the size line, the data and the closing CRLF separately, and with
 * TCP_NODELAY each write is a packet of its own (six send calls a token
 * with the timing comment), which on two cores took CPU from the decoding
 * and gave the client six reads where one does. */
static void sse_send_stamped(sse *o, const char *stamp, size_t ns, const char *data)
{
    if (o->broken || !data)
        return;
    const size_t n = strlen(data), body = ns + n + 8;   /* stamp, "data: ", data, "\n\n" */
    char *ev = malloc(body + 24);
    if (!ev) {
        o->broken = true;
        return;
    }
    size_t k = (size_t)snprintf(ev, 24, "%zx\r\n", body);
    if (ns)
        memcpy(ev + k, stamp, ns);
    k += ns;
    memcpy(ev + k, "data: ", 6);
    memcpy(ev + k + 6, data, n);
    memcpy(ev + k + 6 + n, "\n\n\r\n", 4);
    k += n + 10;
    if (mg_write(o->c, ev, k) != (int)k)
        o->broken = true;
    free(ev);
}

static void sse_send(sse *o, const char *data) { sse_send_stamped(o, NULL, 0, data); }

static void make_id(srv *s, bool chat, char *id, size_t cap)
{
    unsigned long k = atomic_fetch_add(&s->next_id, 1);
    snprintf(id, cap, "%s-%lx%06lx", chat ? "chatcmpl" : "cmpl", (unsigned long)time(NULL), k & 0xffffff);
}

static int status_of(lb_status rc)
{
    return rc == LB_ERR_RANGE || rc == LB_ERR_INVALID_ARG ? 400 : 500;
}

static int handle_generate(srv *s, struct mg_connection *c, bool chat)
{
    double t_arrival = lb_time_ms();
    char *body = NULL;
    size_t n_body = 0;
    int st = read_body(s, c, &body, &n_body);
    if (st == 413) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes", s->p.max_body);
        return reply_error(c, 413, "invalid_request_error", "request_too_large", msg, NULL, NULL);
    }
    if (st == 408) {
        /* civetweb's own error page is the one reply after which it closes the
         * connection instead of draining the rest of the body (which the dribbling
         * client would feed for ever): on_http_error lets 408 through to it. */
        mg_send_http_error(c, 408, "the request body did not arrive within the I/O timeout\n");
        return 408;
    }
    if (st)
        return reply_error(c, 500, "server_error", "out_of_memory", "out of memory", NULL, NULL);
    /* Only JSON: a form or text/plain POST is one a foreign web page may send without a CORS preflight. */
    const char *ct = mg_get_header(c, "Content-Type");
    if (!ct || strncasecmp(ct, "application/json", 16) || (ct[16] && ct[16] != ';' && ct[16] != ' ')) {
        free(body);
        return reply_error(c, 415, "invalid_request_error", "unsupported_media_type",
                           "the body must be JSON, sent with Content-Type: application/json", NULL, NULL);
    }
    lb_srv_job *j = lb_srv_job_new();
    if (!j) {
        free(body);
        return reply_error(c, 500, "server_error", "out_of_memory", "out of memory", NULL, NULL);
    }
    lb_oai_limits lim = {s->p.max_tokens, s->chat};
    lb_oai_request req;
    lb_oai_error e;
    bool ok = lb_oai_parse(body, n_body, chat, &lim, j, &req, &e);
    free(body);
    if (!ok) {
        lb_srv_job_free(j);
        return reply_json(c, e.status, lb_oai_error_json(&e), NULL, NULL);
    }

    /* The prompt must leave room for at least one generated token; a clear 400 beats a failed generation. */
    lb_status ts = lb_srv_job_tokenize(j, s->model);
    size_t n_prompt = (size_t)j->n_tokens_prompt;
    if (ts == LB_ERR_NOMEM) {
        lb_srv_job_free(j);
        return reply_error(c, 500, "server_error", "out_of_memory", "out of memory", NULL, NULL);
    }
    if (ts || (int)n_prompt + 1 > s->p.n_ctx) {
        char msg[160];
        snprintf(msg, sizeof msg, "the prompt has %zu tokens; the context holds %d (prompt plus generated tokens)",
                 n_prompt, s->p.n_ctx);
        lb_srv_job_free(j);
        return reply_error(c, 400, "invalid_request_error", "context_length_exceeded", msg, NULL, NULL);
    }
    if (j->gen.max_tokens > s->p.n_ctx - (int)n_prompt)
        j->gen.max_tokens = s->p.n_ctx - (int)n_prompt;
    j->t_arrival_ms = t_arrival;
    if (!lb_srv_sched_submit(s->sched, j)) {
        lb_srv_job_free(j);
        return reply_error(c, 429, "rate_limit_error", "queue_full", "the server is busy: every slot and queue place is taken; retry later",
                           "Retry-After", "1");
    }
    lb_srv_metrics_active(s->metrics, 1);

    char id[48];
    make_id(s, chat, id, sizeof id);
    long created = (long)time(NULL);
    const char *model = s->p.model_name;
    double deadline = t_arrival + s->p.timeout_s * 1000.0;
    bool timed_out = false;
    int status = 200;

    if (req.stream) {
        mg_response_header_start(c, 200);
        mg_response_header_add(c, "Content-Type", "text/event-stream", -1);
        mg_response_header_add(c, "Cache-Control", "no-cache", -1);
        mg_response_header_add(c, "Transfer-Encoding", "chunked", -1);
        mg_response_header_add(c, "X-Accel-Buffering", "no", -1);
        cors_header(c);
        if (chat)
            mg_response_header_add(c, "X-Chat-Template", lb_chat_format_name(s->chat), -1);
        mg_response_header_send(c);
        sse o = {c, false};
        const bool timing = mg_get_header(c, "X-Lowbit-Timing") != NULL;   /* docs/server.md, "Load test" */
        char *buf = NULL;
        size_t n = 0, cap = 0;
        bool first = true;
        double last_write = lb_time_ms();
        lb_job_state state = LB_JOB_QUEUED;
        while (state != LB_JOB_DONE) {
            state = lb_srv_job_take(j, 200, &buf, &n, &cap);
            double now = lb_time_ms();
            /* An SSE comment (clients ignore it) stamping when the engine released this text, so
             * bench/load can measure the delivery overhead on the same monotonic clock. */
            char stamp[64];
            int ns = n && timing ? snprintf(stamp, sizeof stamp, ": lb-t %.3f %d\n\n", j->taken_ms, j->taken_tokens) : 0;
            if (n || (first && chat && state != LB_JOB_QUEUED)) {
                char *chunk = lb_oai_chunk(&req, id, created, model, buf, n, NULL, first && chat);
                sse_send_stamped(&o, stamp, (size_t)ns, chunk);
                free(chunk);
                first = false;
                last_write = now;
            } else if (now - last_write > KEEPALIVE_MS) {
                if (mg_send_chunk(c, ": keep-alive\n\n", 14) < 0)
                    o.broken = true;
                last_write = now;
            }
            if (state == LB_JOB_DONE)
                break;
            if (now > deadline)
                timed_out = true;
            if (o.broken || timed_out || atomic_load(&s->stopping)) {
                lb_srv_job_abandon(s->sched, j);
                if (j->state != LB_JOB_DONE)
                    break;   /* withdrawn from the queue: it never ran */
                state = lb_srv_job_take(j, 0, &buf, &n, &cap);
                if (n && !o.broken) {
                    char *chunk = lb_oai_chunk(&req, id, created, model, buf, n, NULL, first && chat);
                    sse_send(&o, chunk);
                    free(chunk);
                }
            }
        }
        free(buf);
        if (j->state != LB_JOB_DONE) {
            lb_oai_error err = {503, "server_error", "timeout", "", ""};
            snprintf(err.message, sizeof err.message, "no slot became free within the request timeout");
            char *ej = lb_oai_error_json(&err);
            sse_send(&o, ej);
            free(ej);
            status = 503;
        } else if (j->rc && !(j->rc == LB_ERR_CANCELLED && (timed_out || o.broken))) {
            lb_oai_error err = {status_of(j->rc), "server_error", "generation_failed", "", ""};
            snprintf(err.message, sizeof err.message, "generation failed: %s: %.200s", lb_status_str(j->rc), j->err);
            char *ej = lb_oai_error_json(&err);
            sse_send(&o, ej);
            free(ej);
            status = 500;
        } else {
            const char *fin = lb_oai_finish_reason(timed_out ? "length" : j->stats.finish_reason);
            char *chunk = lb_oai_chunk(&req, id, created, model, "", 0, fin, first && chat);
            sse_send(&o, chunk);
            free(chunk);
            if (req.include_usage) {
                chunk = lb_oai_usage_chunk(&req, id, created, model, j->stats.n_prompt, j->n_cached, j->stats.n_gen);
                sse_send(&o, chunk);
                free(chunk);
            }
        }
        sse_send(&o, "[DONE]");
        if (!o.broken)
            mg_send_chunk(c, "", 0);
        if (o.broken)
            status = 499;   /* nginx's "client closed request", for the metrics only */
    } else {
        /* Text accumulates in the job until it is done: nothing is written before then. */
        while (lb_srv_job_wait(j, 200) != LB_JOB_DONE && !atomic_load(&s->stopping))
            if (lb_time_ms() > deadline) {
                timed_out = true;
                break;
            }
        if (j->state != LB_JOB_DONE)
            lb_srv_job_abandon(s->sched, j);
        if (j->state != LB_JOB_DONE) {
            status = reply_error(c, 503, "server_error", "timeout", "no slot became free within the request timeout",
                                 NULL, NULL);
        } else if (j->rc && !(j->rc == LB_ERR_CANCELLED && timed_out)) {
            char msg[256];
            snprintf(msg, sizeof msg, "generation failed: %s: %.200s", lb_status_str(j->rc), j->err);
            status = reply_error(c, status_of(j->rc), status_of(j->rc) == 400 ? "invalid_request_error" : "server_error",
                                 "generation_failed", msg, NULL, NULL);
        } else {
            const char *fin = lb_oai_finish_reason(timed_out ? "length" : j->stats.finish_reason);
            char *json = lb_oai_response(&req, id, created, model, j->text, j->n_text, fin, j->stats.n_prompt,
                                         j->n_cached, j->stats.n_gen);
            status = reply_json(c, 200, json, chat ? "X-Chat-Template" : NULL, lb_chat_format_name(s->chat));
        }
    }
    lb_srv_metrics_active(s->metrics, -1);
    lb_srv_job_free(j);
    return status;
}

/* ------------------------------------------------------- static files */

/* Serves a file under --web-root.  The decoded path may not contain "." or ".." segments or
 * backslashes, and its real path (symlinks resolved) must still lie under the root. */
static int handle_static(srv *s, struct mg_connection *c, const char *uri)
{
    if (!s->web_root[0])
        return reply_error(c, 404, "invalid_request_error", "not_found", "no such route", NULL, NULL);
    if (strchr(uri, '\\') || strstr(uri, "//") || strlen(uri) > 1024)
        return reply_error(c, 404, "invalid_request_error", "not_found", "no such file", NULL, NULL);
    /* No segment may start with '.': this refuses "." and ".." and also keeps dotfiles (.git, .env) private. */
    for (const char *p = uri; (p = strchr(p, '/')); p++)
        if (p[1] == '.')
            return reply_error(c, 404, "invalid_request_error", "not_found", "no such file", NULL, NULL);
    char path[PATH_MAX + 1100], real[PATH_MAX];
    snprintf(path, sizeof path, "%s%s%s", s->web_root, uri, uri[strlen(uri) - 1] == '/' ? "index.html" : "");
    size_t lr = strlen(s->web_root);
    if (!realpath(path, real) || strncmp(real, s->web_root, lr) || (real[lr] != '/' && real[lr] != '\0'))
        return reply_error(c, 404, "invalid_request_error", "not_found", "no such file", NULL, NULL);
    char idx[PATH_MAX + 16];
    snprintf(idx, sizeof idx, "%s/index.html", real);
    const char *file = real;
    FILE *probe = fopen(real, "rb");
    if (!probe)
        return reply_error(c, 404, "invalid_request_error", "not_found", "no such file", NULL, NULL);
    fclose(probe);
    if (!access(idx, R_OK))
        file = idx;   /* a directory: its index.html */
    mg_send_mime_file(c, file, NULL);
    return 200;
}

/* ------------------------------------------------------------ routes */

static bool method_is(const struct mg_request_info *ri, const char *m) { return !strcmp(ri->request_method, m); }

static int route(srv *s, struct mg_connection *c, lb_srv_route *r)
{
    const struct mg_request_info *ri = mg_get_request_info(c);
    const char *uri = ri->local_uri ? ri->local_uri : "/";
    struct { const char *path, *method; lb_srv_route id; } api[] = {
        {"/health", "GET", LB_ROUTE_HEALTH},
        {"/metrics", "GET", LB_ROUTE_METRICS},
        {"/v1/models", "GET", LB_ROUTE_MODELS},
        {"/v1/completions", "POST", LB_ROUTE_COMPLETIONS},
        {"/v1/chat/completions", "POST", LB_ROUTE_CHAT},
    };
    *r = LB_ROUTE_OTHER;
    int k = -1;
    for (int i = 0; i < (int)(sizeof api / sizeof api[0]); i++)
        if (!strcmp(uri, api[i].path))
            k = i;
    if (k < 0 && !strncmp(uri, "/v1/", 4))
        return reply_error(c, 404, "invalid_request_error", "not_found", "no such route", NULL, NULL);
    if (k >= 0)
        *r = api[k].id;
    else
        *r = LB_ROUTE_STATIC;
    /* A CORS preflight carries no credentials, so it is answered before the key check. */
    if (method_is(ri, "OPTIONS")) {
        mg_response_header_start(c, 204);
        mg_response_header_add(c, "Allow", "GET, POST, OPTIONS", -1);
        if (s->p.cors) {
            cors_header(c);
            mg_response_header_add(c, "Access-Control-Allow-Methods", "GET, POST, OPTIONS", -1);
            mg_response_header_add(c, "Access-Control-Allow-Headers", "Authorization, Content-Type", -1);
            mg_response_header_add(c, "Access-Control-Max-Age", "600", -1);
        }
        mg_response_header_add(c, "Content-Length", "0", -1);
        mg_response_header_send(c);
        return 204;
    }
    if (*r == LB_ROUTE_HEALTH)
        return method_is(ri, "GET") ? reply(c, 200, "application/json", "{\"status\":\"ok\"}", 15, NULL, NULL, false)
                                    : reply_error(c, 405, "invalid_request_error", "method_not_allowed",
                                                  "use GET", "Allow", "GET");
    if (!authorized(s, c))
        return reply_error(c, 401, "invalid_request_error", "invalid_api_key",
                           "a valid API key is required: Authorization: Bearer KEY", "WWW-Authenticate", "Bearer");
    if (*r == LB_ROUTE_STATIC)
        return method_is(ri, "GET") ? handle_static(s, c, uri)
                                    : reply_error(c, 404, "invalid_request_error", "not_found", "no such route", NULL, NULL);
    if (!method_is(ri, api[k].method)) {
        char msg[64];
        snprintf(msg, sizeof msg, "use %s", api[k].method);
        return reply_error(c, 405, "invalid_request_error", "method_not_allowed", msg, "Allow", api[k].method);
    }
    switch (*r) {
    case LB_ROUTE_METRICS: {
        int q, qc, busy, slots;
        lb_srv_sched_load(s->sched, &q, &qc, &busy, &slots);
        int entries;
        size_t bytes;
        lb_srv_sched_store_usage(s->sched, &entries, &bytes);
        char *text = lb_ws_metrics_append(s->ws, lb_srv_metrics_render(s->metrics, q, qc, busy, slots, entries, bytes));
        if (!text)
            return reply_error(c, 500, "server_error", "out_of_memory", "out of memory", NULL, NULL);
        int st = reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text), NULL, NULL, false);
        free(text);
        return st;
    }
    case LB_ROUTE_MODELS:
        return reply_json(c, 200, lb_oai_models(s->p.model_name, s->started, lb_chat_format_name(s->chat), s->p.n_ctx),
                          "X-Chat-Template", lb_chat_format_name(s->chat));
    case LB_ROUTE_COMPLETIONS:
        return handle_generate(s, c, false);
    default:
        return handle_generate(s, c, true);
    }
}

static int on_request(struct mg_connection *c, void *user)
{
    srv *s = user;
    lb_srv_route r = LB_ROUTE_OTHER;
    int status = route(s, c, &r);
    lb_srv_metrics_request(s->metrics, r, status);
    return status > 0 ? status : 500;
}

/* civetweb's own refusals (headers malformed, too large, or not complete within --io-timeout; a directory)
 * in the API's JSON error shape rather than a text/plain page. */
static int on_http_error(struct mg_connection *c, int status, const char *msg)
{
    if (status == 408)
        return 1;   /* civetweb's plain page, which closes the connection (read_body) */
    lb_oai_error e;
    memset(&e, 0, sizeof e);
    e.status = status;
    e.type = status >= 500 ? "server_error" : "invalid_request_error";
    e.code = status == 400 ? "malformed_request" : status == 403 ? "forbidden" : status == 404 ? "not_found"
           : status == 413 || status == 431 ? "headers_too_large" : "http_error";
    if (status == 400)
        snprintf(e.message, sizeof e.message, "malformed request, or its headers did not arrive within the I/O timeout");
    else
        snprintf(e.message, sizeof e.message, "%s", msg && *msg ? msg : mg_get_response_code_text(c, status));
    char *j = lb_oai_error_json(&e);
    if (!j)
        return 1;
    mg_printf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
                 "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n%s",
              status, mg_get_response_code_text(c, status), strlen(j), j);
    free(j);
    return 0;
}

static int on_log(const struct mg_connection *c, const char *msg)
{
    fprintf(stderr, "lowbit serve: civetweb: %s\n", msg);
    return 1;
}

/* ------------------------------------------------------------ run */

static lb_chat_format detect_chat(const lb_model *m)
{
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    lb_chat_format f = LB_CHAT_PLAIN;
    if (buf && lb_model_meta_str(m, "tokenizer.chat_template", buf, cap) == LB_OK)
        f = lb_chat_detect(buf);
    free(buf);
    return f;
}

int lb_server_run(lb_model *m, const lb_server_params *p, volatile sig_atomic_t *stop)
{
    srv *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "lowbit serve: out of memory\n");
        return 1;
    }
    s->p = *p;
    s->model = m;
    s->started = (long)time(NULL);
    atomic_init(&s->stopping, false);
    atomic_init(&s->next_id, 1);
    s->chat = detect_chat(m);
    if (p->web_root && !realpath(p->web_root, s->web_root)) {
        fprintf(stderr, "lowbit serve: --web-root %s: no such directory\n", p->web_root);
        free(s);
        return 1;
    }
    int rc = 1;
    char err[512] = "";
    struct mg_context *ctx = NULL;
    s->metrics = lb_srv_metrics_new();
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = p->n_ctx;
    sp.n_threads = p->n_threads;
    sp.kv_type_k = p->kv_k;
    sp.kv_type_v = p->kv_v;
    sp.n_window = p->n_window;
    sp.n_sinks = p->n_sinks;
    if (!s->metrics || !(s->sched = lb_srv_sched_new(m, &sp, p->parallel, p->queue, p->prompt_cache, p->prompt_store,
                                                             s->metrics, err, sizeof err))) {
        fprintf(stderr, "lowbit serve: %s\n", err[0] ? err : "out of memory");
        goto out;
    }
    lb_ws_params wp = {.model = m, .sched = s->sched, .chat = s->chat, .max_tokens = p->max_tokens, .n_ctx = p->n_ctx,
                       .api_key = p->api_key, .cors = p->cors, .max_message = p->max_body, .max_connections = 32,
                       .grace_s = 30};
    if (!(s->ws = lb_ws_new(&wp))) {
        fprintf(stderr, "lowbit serve: out of memory\n");
        goto out;
    }

    char ports[300], threads[16], timeout[16];
    bool v6 = strchr(p->host, ':') != NULL;
    snprintf(ports, sizeof ports, "%s%s%s:%d", v6 ? "[" : "", p->host, v6 ? "]" : "", p->port);
    /* Every generation request holds a civetweb thread while it waits or streams; a few more serve /health and /metrics. */
    snprintf(threads, sizeof threads, "%d", p->parallel + p->queue + 8 + wp.max_connections);   /* + one per WebSocket */
    snprintf(timeout, sizeof timeout, "%d", (p->io_timeout_s > 0 ? p->io_timeout_s : 30) * 1000);
    const char *options[] = {
        "listening_ports", ports,
        "num_threads", threads,
        "request_timeout_ms", timeout,   /* also bounds a slowloris header and a stalled reader */
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", "5000",
        "enable_directory_listing", "no",
        /* A token is a few bytes: without TCP_NODELAY, Nagle's algorithm holds it until the client's delayed
         * ACK arrives (time to first token 43 ms -> 21 ms on loopback). */
        "tcp_nodelay", "1",
        /* WebSocket: civetweb answers pings and, after 10 s of silence, pings the client; a few unanswered
         * pings end a connection whose peer vanished without closing (docs/protocol.md). */
        "enable_websocket_ping_pong", "yes",
        "websocket_timeout_ms", "10000",
        /* civetweb's own CORS defaults to "*" on static files and answers preflights itself: follow --cors instead. */
        "access_control_allow_origin", p->cors ? p->cors : "",
        "access_control_allow_methods", "",
        /* Browsers refuse ES modules served as text/plain. */
        "extra_mime_types", ".mjs=text/javascript,.js=text/javascript,.wasm=application/wasm,.json=application/json",
        NULL, NULL};
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.log_message = on_log;
    cb.http_error = on_http_error;
    mg_init_library(0);
    ctx = mg_start(&cb, s, options);
    if (!ctx) {
        fprintf(stderr, "lowbit serve: cannot listen on %s (port in use or bad host?)\n", ports);
        goto out;
    }
    mg_set_request_handler(ctx, "**", on_request, s);
    lb_ws_register(s->ws, ctx);
    struct mg_server_port sport[4];
    int np = mg_get_server_ports(ctx, 4, sport);
    int port = np > 0 ? sport[0].port : p->port;
    fprintf(stderr,
            "lowbit serve: listening on http://%s%s%s:%d (model %s, chat template %s, %d slot%s, context %d, prompt "
            "cache %s)\n",
            v6 ? "[" : "", p->host, v6 ? "]" : "", port, p->model_name, lb_chat_format_name(s->chat), p->parallel,
            p->parallel == 1 ? "" : "s", p->n_ctx,
            lb_srv_sched_prompt_cache(s->sched) ? "on" : p->prompt_cache ? "off (needs an F16 cache without a window)"
                                                                           : "off");
    while (!*stop) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "lowbit serve: stopping\n");
    rc = 0;
out:
    atomic_store(&s->stopping, true);
    if (ctx)
        mg_stop(ctx);   /* waits for the handlers, which give up their jobs once stopping is set */
    mg_exit_library();
    lb_ws_free(s->ws);   /* after the connections are gone, before the scheduler its jobs run on */
    lb_srv_sched_free(s->sched);
    lb_srv_metrics_free(s->metrics);
    free(s);
    return rc;
}
