/* OpenAI-compatible request parsing and response JSON for `lowbit serve`. */
#include "openai.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

#define MAX_STOP 4          /* OpenAI's own limit on stop strings */
#define MAX_STOP_LEN 256    /* longer stop strings would only make the held-back text large */

static bool fail(lb_oai_error *e, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool fail(lb_oai_error *e, const char *code, const char *param, const char *fmt, ...)
{
    e->status = 400;
    e->type = "invalid_request_error";
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

/* A number field in [lo, hi]; absent or null leaves *out alone. */
static bool get_num(json_t *root, const char *key, double lo, double hi, double *out, bool *present, lb_oai_error *e)
{
    json_t *v = json_object_get(root, key);
    if (present)
        *present = false;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_number(v))
        return fail(e, "invalid_type", key, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return fail(e, "invalid_value", key, "'%s' must be between %g and %g", key, lo, hi);
    *out = d;
    if (present)
        *present = true;
    return true;
}

static bool get_int(json_t *root, const char *key, double lo, double hi, double *out, bool *present, lb_oai_error *e)
{
    json_t *v = json_object_get(root, key);
    if (v && !json_is_null(v) && !json_is_integer(v) && !(json_is_real(v) && json_real_value(v) == floor(json_real_value(v))))
        return fail(e, "invalid_type", key, "'%s' must be an integer", key);
    return get_num(root, key, lo, hi, out, present, e);
}

/* Message content: a string, or an array of {"type":"text","text":...} parts joined. */
static char *content_text(json_t *c, int i, lb_oai_error *e)
{
    char param[48];
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (!c || json_is_null(c))
        return strdup("");
    if (json_is_string(c))
        return strndup(json_string_value(c), json_string_length(c));
    if (!json_is_array(c)) {
        fail(e, "invalid_type", param, "'%s' must be a string or an array of text parts", param);
        return NULL;
    }
    size_t total = 0, k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *t = json_object_get(part, "text");
        const char *type = json_string_value(json_object_get(part, "type"));
        if (!type || strcmp(type, "text") || !json_is_string(t)) {
            fail(e, "invalid_value", param, "'%s' parts must be {\"type\": \"text\", \"text\": ...}", param);
            return NULL;
        }
        total += json_string_length(t);
    }
    char *s = malloc(total + 1);
    if (!s)
        return NULL;
    size_t n = 0;
    json_array_foreach(c, k, part) {
        json_t *t = json_object_get(part, "text");
        memcpy(s + n, json_string_value(t), json_string_length(t));
        n += json_string_length(t);
    }
    s[n] = '\0';
    return s;
}

static bool parse_messages(json_t *root, const lb_oai_limits *lim, lb_srv_job *job, lb_oai_error *e)
{
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return fail(e, "missing_field", "messages", "'messages' must be a non-empty array");
    size_t n = json_array_size(msgs);
    if (n > 4096)
        return fail(e, "invalid_value", "messages", "too many messages (%zu)", n);
    lb_chat_msg *m = calloc(n, sizeof *m);
    char **owned = calloc(n, sizeof *owned);
    bool ok = m && owned;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *msg = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(msg, "role"));
        if (!json_is_object(msg) || !role) {
            char p[32];
            snprintf(p, sizeof p, "messages[%zu].role", i);
            ok = fail(e, "missing_field", p, "'%s' must be a string", p);
            break;
        }
        if (!strcmp(role, "developer"))
            role = "system";   /* OpenAI's newer name for the system role */
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
            char p[32];
            snprintf(p, sizeof p, "messages[%zu].role", i);
            ok = fail(e, "invalid_value", p, "role '%.40s' is not supported (system, user, assistant)", role);
            break;
        }
        owned[i] = content_text(json_object_get(msg, "content"), (int)i, e);
        if (!owned[i]) {
            if (!e->status) {
                e->status = 500;
                e->type = "server_error";
                e->code = "out_of_memory";
                snprintf(e->message, sizeof e->message, "out of memory");
            }
            ok = false;
            break;
        }
        m[i].role = role;
        m[i].content = owned[i];
    }
    if (ok) {
        job->prompt = lb_chat_render(lim->chat, m, (int)n);
        ok = job->prompt != NULL;
        if (!ok) {
            e->status = 500;
            e->type = "server_error";
            e->code = "out_of_memory";
            snprintf(e->message, sizeof e->message, "out of memory");
        }
    } else if (!m || !owned) {
        e->status = 500;
        e->type = "server_error";
        e->code = "out_of_memory";
        snprintf(e->message, sizeof e->message, "out of memory");
    }
    for (size_t i = 0; owned && i < n; i++)
        free(owned[i]);
    free(owned);
    free(m);
    return ok;
}

static bool add_stop(lb_srv_job *job, const char *s, size_t len, lb_oai_error *e)
{
    if (len == 0 || len > MAX_STOP_LEN || memchr(s, '\0', len))
        return fail(e, "invalid_value", "stop", "stop strings must be 1..%d bytes without NUL", MAX_STOP_LEN);
    if (job->gen.n_stop >= (int)(sizeof job->stop_strs / sizeof job->stop_strs[0]))
        return fail(e, "invalid_value", "stop", "too many stop strings");
    if (!(job->stop_strs[job->gen.n_stop] = strndup(s, len)))
        return fail(e, "invalid_value", "stop", "out of memory");
    job->gen.n_stop++;
    return true;
}

bool lb_oai_parse(const char *body, size_t len, bool chat, const lb_oai_limits *lim, lb_srv_job *job,
                  lb_oai_request *req, lb_oai_error *e)
{
    memset(e, 0, sizeof *e);
    memset(req, 0, sizeof *req);
    req->chat = chat;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail(e, "invalid_json", NULL, "the body is not valid JSON: %s (line %d, column %d)", jerr.text,
                    jerr.line, jerr.column);
    bool ok = true;
    if (!json_is_object(root)) {
        ok = fail(e, "invalid_json", NULL, "the body must be a JSON object");
        goto out;
    }
    json_t *v;
    if ((v = json_object_get(root, "stream")) && !json_is_null(v)) {
        if (!json_is_boolean(v)) {
            ok = fail(e, "invalid_type", "stream", "'stream' must be a boolean");
            goto out;
        }
        req->stream = json_is_true(v);
    }
    if ((v = json_object_get(root, "stream_options")) && json_is_object(v))
        req->include_usage = json_is_true(json_object_get(v, "include_usage"));
    double n_choices = 1;
    if (!(ok = get_int(root, "n", 1, 1, &n_choices, NULL, e))) {
        snprintf(e->message, sizeof e->message, "only n = 1 is supported");
        goto out;
    }

    /* Sampling: absent fields keep lowbit's defaults; no seed means a fresh one per request. */
    lb_sampler_params *sp = &job->gen.sampler;
    double d;
    bool has;
    sp->seed = UINT64_MAX;
    d = sp->temperature;
    if (!(ok = get_num(root, "temperature", 0, 2, &d, NULL, e)))
        goto out;
    sp->temperature = (float)d;
    d = sp->top_p;
    if (!(ok = get_num(root, "top_p", 0, 1, &d, NULL, e)))
        goto out;
    sp->top_p = (float)d;
    d = sp->min_p;
    if (!(ok = get_num(root, "min_p", 0, 1, &d, NULL, e)))
        goto out;
    sp->min_p = (float)d;
    d = sp->top_k;
    if (!(ok = get_int(root, "top_k", 0, 1 << 20, &d, NULL, e)))
        goto out;
    sp->top_k = (int)d;
    d = sp->repeat_penalty;
    if (!(ok = get_num(root, "repeat_penalty", 0.01, 100, &d, NULL, e)))
        goto out;
    sp->repeat_penalty = (float)d;
    if (!(ok = get_int(root, "seed", 0, 9007199254740991.0, &d, &has, e)))
        goto out;
    if (has)
        sp->seed = (uint64_t)d;

    /* max_tokens: a positive integer; more than the server allows is clamped, not refused. */
    const char *mt_key = json_object_get(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    d = lim->max_tokens;
    if (!(ok = get_int(root, mt_key, 1, 1e300, &d, &has, e))) {
        snprintf(e->message, sizeof e->message, "'%s' must be a positive integer", mt_key);
        goto out;
    }
    if (d > lim->max_tokens) {
        d = lim->max_tokens;
        req->max_tokens_clamped = true;
    }
    job->gen.max_tokens = (int)d;

    if ((v = json_object_get(root, "stop")) && !json_is_null(v)) {
        if (json_is_string(v)) {
            ok = add_stop(job, json_string_value(v), json_string_length(v), e);
        } else if (json_is_array(v) && json_array_size(v) <= MAX_STOP) {
            size_t k;
            json_t *s;
            json_array_foreach(v, k, s) {
                if (!json_is_string(s)) {
                    ok = fail(e, "invalid_type", "stop", "'stop' must be a string or an array of strings");
                    break;
                }
                if (!(ok = add_stop(job, json_string_value(s), json_string_length(s), e)))
                    break;
            }
        } else {
            ok = fail(e, "invalid_value", "stop", "'stop' must be a string or an array of at most %d strings", MAX_STOP);
        }
        if (!ok)
            goto out;
    }

    if (chat) {
        if (!(ok = parse_messages(root, lim, job, e)))
            goto out;
        const char *extra = lb_chat_stop(lim->chat);
        if (extra && !(ok = add_stop(job, extra, strlen(extra), e)))
            goto out;
    } else {
        v = json_object_get(root, "prompt");
        if (json_is_array(v) && json_array_size(v) == 1)
            v = json_array_get(v, 0);
        if (!json_is_string(v)) {
            ok = fail(e, json_is_null(v) || !v ? "missing_field" : "invalid_type", "prompt",
                      "'prompt' must be a string (or an array of one string)");
            goto out;
        }
        if (memchr(json_string_value(v), '\0', json_string_length(v))) {
            ok = fail(e, "invalid_value", "prompt", "'prompt' must not contain NUL characters");
            goto out;
        }
        job->prompt = strndup(json_string_value(v), json_string_length(v));
        if (!(ok = job->prompt != NULL)) {
            fail(e, "invalid_value", "prompt", "out of memory");
            e->status = 500;
            goto out;
        }
    }
    job->gen.stop = (const char *const *)job->stop_strs;
out:
    json_decref(root);
    return ok;
}

/* Serializes and frees obj. */
static char *dump(json_t *obj)
{
    if (!obj)
        return NULL;
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return s;
}

char *lb_oai_error_json(const lb_oai_error *e)
{
    return dump(json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", e->message, "type",
                          e->type ? e->type : "server_error", "code", e->code, "param",
                          e->param[0] ? e->param : NULL));
}

/* OpenAI's usage object; cached_tokens: prompt tokens the prompt cache supplied (docs/server.md). */
static json_t *usage(int n_prompt, int n_cached, int n_gen)
{
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", n_prompt, "completion_tokens", n_gen, "total_tokens",
                     n_prompt + n_gen, "prompt_tokens_details", "cached_tokens", n_cached);
}

/* The streamed chunks' fast path builds its text here; failed also marks text that is not valid UTF-8. */
typedef lb_strbuf sbuf;

/* A string literal, its length counted by the compiler. */
#define SB_LIT(b, lit) lb_strbuf_add((b), (lit), sizeof(lit) - 1)

/* Bytes of the valid UTF-8 character starting at s[0..n), 0 if there is none (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        lo = s[0] == 0xE0 ? 0xA0 : 0x80;
        hi = s[0] == 0xED ? 0x9F : 0xBF;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        lo = s[0] == 0xF0 ? 0x90 : 0x80;
        hi = s[0] == 0xF4 ? 0x8F : 0xBF;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* s as a JSON string, quotes included, escaped as jansson's JSON_COMPACT output escapes it. */
static void sb_json_string(sbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    lb_strbuf_add(b, "\"", 1);
    size_t i = 0, run = 0;   /* bytes s[i - run .. i) need no escape */
    while (i < n && !b->failed) {
        const unsigned char c = u[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            const size_t k = utf8_char(u + i, n - i);
            if (!k) {
                b->failed = true;
                break;
            }
            i += k;
            run += k;
            continue;
        }
        lb_strbuf_add(b, s + i - run, run);
        run = 0;
        char esc[8];
        const char *e = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                        : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
        if (!e) {
            snprintf(esc, sizeof esc, "\\u%04X", c);
            e = esc;
        }
        lb_strbuf_add(b, e, strlen(e));
        i++;
    }
    lb_strbuf_add(b, s + i - run, run);
    lb_strbuf_add(b, "\"", 1);
}

/* A streamed chunk that only carries text (no role, no finish reason), written directly: building it with
 * jansson (an object per level, a string, then the dump) was a sixth of the connection thread's time per token
 * under 8-stream load, most of it in malloc.  NULL when the text is not valid UTF-8 (the caller then takes
 * jansson's path, which refuses it the same way) or on allocation failure. */
static char *text_chunk(const lb_oai_request *r, const char *id, long created, const char *model, const char *text,
                        size_t n)
{
    /* one allocation in the usual case: the fixed text, id, model and the piece with room for some escapes */
    sbuf b = {NULL, 0, 0, false};
    const size_t guess = 160 + strlen(id) + strlen(model) + 2 * n;
    if (!(b.p = malloc(guess)))
        return NULL;
    b.cap = guess;
    char num[32];
    SB_LIT(&b, "{\"id\":");
    sb_json_string(&b, id, strlen(id));
    if (r->chat)
        SB_LIT(&b, ",\"object\":\"chat.completion.chunk\",\"created\":");
    else
        SB_LIT(&b, ",\"object\":\"text_completion\",\"created\":");
    lb_strbuf_add(&b, num, (size_t)snprintf(num, sizeof num, "%ld", created));
    SB_LIT(&b, ",\"model\":");
    sb_json_string(&b, model, strlen(model));
    if (r->chat) {
        SB_LIT(&b, ",\"choices\":[{\"index\":0,\"delta\":{\"content\":");
        sb_json_string(&b, text ? text : "", n);
        SB_LIT(&b, "},");
    } else {
        SB_LIT(&b, ",\"choices\":[{\"index\":0,\"text\":");
        sb_json_string(&b, text ? text : "", n);
        SB_LIT(&b, ",");
    }
    SB_LIT(&b, "\"logprobs\":null,\"finish_reason\":null}]}");
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

char *lb_oai_chunk(const lb_oai_request *r, const char *id, long created, const char *model, const char *text,
                   size_t n, const char *finish_reason, bool first)
{
    if (!finish_reason && !first && (n || !r->chat)) {
        char *fast = text_chunk(r, id, created, model, text, n);
        if (fast)
            return fast;
    }
    json_t *choice;
    if (r->chat) {
        json_t *delta = json_object();
        if (first)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (n || first)
            json_object_set_new(delta, "content", json_stringn(text ? text : "", n));
        choice = json_pack("{s:i, s:o, s:n, s:s?}", "index", 0, "delta", delta, "logprobs", "finish_reason",
                           finish_reason);
    } else {
        choice = json_pack("{s:i, s:s%, s:n, s:s?}", "index", 0, "text", text ? text : "", n, "logprobs",
                           "finish_reason", finish_reason);
    }
    if (choice && !finish_reason)
        json_object_set_new(choice, "finish_reason", json_null());
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object",
                          r->chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)created,
                          "model", model, "choices", choice));
}

char *lb_oai_usage_chunk(const lb_oai_request *r, const char *id, long created, const char *model, int n_prompt,
                         int n_cached, int n_gen)
{
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", id, "object",
                          r->chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)created,
                          "model", model, "choices", "usage", usage(n_prompt, n_cached, n_gen)));
}

char *lb_oai_response(const lb_oai_request *r, const char *id, long created, const char *model, const char *text,
                      size_t n, const char *finish_reason, int n_prompt, int n_cached, int n_gen)
{
    json_t *choice;
    if (r->chat)
        choice = json_pack("{s:i, s:{s:s, s:s%}, s:n, s:s}", "index", 0, "message", "role", "assistant", "content",
                           text ? text : "", n, "logprobs", "finish_reason", finish_reason);
    else
        choice = json_pack("{s:i, s:s%, s:n, s:s}", "index", 0, "text", text ? text : "", n, "logprobs",
                           "finish_reason", finish_reason);
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", id, "object",
                          r->chat ? "chat.completion" : "text_completion", "created", (json_int_t)created, "model",
                          model, "choices", choice, "usage", usage(n_prompt, n_cached, n_gen)));
}

char *lb_oai_models(const char *model, long created, const char *chat_format, int n_ctx)
{
    return dump(json_pack("{s:s, s:[{s:s, s:s, s:I, s:s, s:s, s:i}]}", "object", "list", "data", "id", model,
                          "object", "model", "created", (json_int_t)created, "owned_by", "lowbit", "chat_template",
                          chat_format, "context_length", n_ctx));
}

const char *lb_oai_finish_reason(const char *r)
{
    /* A full context and a request that ran out of time both mean "cut short" to an OpenAI client. */
    return r && !strcmp(r, "stop") ? "stop" : "length";
}
