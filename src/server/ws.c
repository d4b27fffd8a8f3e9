/* The WebSocket endpoint /v1/ws: message parsing, per-connection sender threads, resumable generations. */
#include "ws.h"

#include <civetweb.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/clock.h"
#include "openai.h"

/* How the pieces fit together.
 *
 * civetweb gives every WebSocket connection one thread that reads frames and calls on_data; that thread
 * parses messages and answers them.  Each connection also has a sender thread that does all the writing
 * except the closing frames, so a client that does not read blocks only its own sender.
 *
 * A generation (gen) is a scheduler job plus a buffer of its tokens.  The decode thread appends tokens
 * through the job's on_event hook; the sender of the connection the gen is attached to renders and
 * writes them in index order from gen->next_send.  A resumable gen stays in the registry for grace_s
 * after its connection drops, keeping its tokens, so `resume` on a new connection can attach it again
 * with next_send = last_index + 1.  The housekeeping thread notices finished jobs (rendering the final
 * message), cancels what nobody will read, and frees gens; it is the only one that frees them.
 *
 * One mutex (lb_ws.mu) guards the registry, every gen's buffer and links and every connection's outbox.
 * Its critical sections are short and never include a socket write or a wait for the scheduler, and it
 * is taken by the decode thread only in on_event, never while the decode thread holds a job's mutex, so
 * taking a job's mutex inside it is safe. */

#define WS_MAX_ID 128                 /* bytes of a client's generation id */
#define WS_MAX_GENS 8                 /* unfinished generations per connection */
#define WS_REPLAY_TOKENS 4096         /* tokens a gen keeps for replay */
#define WS_REPLAY_BYTES (256 << 10)   /* text bytes a gen keeps for replay */
#define WS_HOUSEKEEPING_MS 10         /* how often finished jobs are looked for */
#define WS_BATCH 64                   /* frames one sender round takes per generation */

typedef struct ws_tok {
    char *piece;          /* [len] UTF-8, not NUL-terminated (NULL when len is 0) */
    size_t len;
    double latency_ms;
} ws_tok;

typedef struct ws_frame {
    struct ws_frame *next;
    size_t len;
    char data[];          /* [len] a JSON text */
} ws_frame;

typedef struct ws_conn ws_conn;

typedef struct ws_gen {
    struct lb_ws *ws;
    char id[WS_MAX_ID + 1];
    char resume_token[33];     /* 32 hex digits; "" when not resumable */
    bool resumable;
    lb_srv_job *job;           /* owned; freed with the gen once DONE */
    double t_arrival_ms, t_first_ms, t_done_ms;

    /* Under ws->mu. */
    ws_conn *conn;             /* attached connection, NULL while detached */
    ws_tok *toks;              /* [n] tokens with indexes base .. base+n-1; capacity cap */
    int base, n, cap;
    size_t bytes;              /* sum of toks[].len */
    int next_send;             /* index of the next token to write to conn */
    bool overflow;             /* a token the client never got was dropped: the gen is cancelled */
    bool want_cancel, withdraw_tried;
    bool finished;             /* the job is DONE and final is rendered */
    char *final;               /* the done or error message, sent after the last token */
    bool final_sent;
    double expire_ms;          /* resumable: freed (cancelled first if running) after this; 0 = not set */
    struct ws_gen *next;       /* registry link */
} ws_gen;

struct ws_conn {
    struct lb_ws *ws;
    struct mg_connection *mc;
    pthread_t sender;
    pthread_cond_t cv;         /* with ws->mu: frames queued, tokens added, a gen finished, or closing */
    ws_frame *head, *tail;     /* outbox of [out_bytes] control messages not yet written */
    size_t out_bytes;
    bool closing;              /* the sender must stop */
    bool broken;               /* a write failed */
    bool must_close;           /* the outbox overflowed (or memory ran out): the reader closes with 1008 */

    /* The reader thread's own: a fragmented message being reassembled. */
    char *frag;                /* [n_frag], capacity cap_frag */
    size_t n_frag, cap_frag;
    int frag_op;               /* opcode of its first frame; 0 = none in progress */
};

struct lb_ws {
    lb_ws_params p;
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* wakes the idle housekeeper: a gen was linked, or stopping */
    ws_gen *gens;                  /* registry */
    bool stopping;
    pthread_t housekeeper;
    atomic_int n_conns;
    atomic_ullong conns_total, msgs_in, msgs_out, resumes, errors, closes_1009, closes_1007, overflows;
};

/* -------------------------------------------------------------- small helpers */

static double now_ms(void) { return lb_time_ms(); }

/* Compares whole lengths whatever the contents, so timing does not tell how much of a guess matched. */
static bool same_secret(const char *a, size_t la, const char *b)
{
    size_t lb = strlen(b);
    unsigned char diff = la != lb;
    for (size_t i = 0; i < lb; i++)
        diff |= (unsigned char)(a[i < la ? i : 0] ^ b[i]) | (unsigned char)(i >= la);
    return diff == 0;
}

/* RFC 3629 UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;   /* truncated */
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (s[i + j] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

/* A 128-bit random token in hex; /dev/urandom, else a clock-seeded mix (still unguessable enough for a
 * loopback default, and the file is always there on Linux). */
static void random_token(char out[33])
{
    unsigned char b[16];
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(b, 1, sizeof b, f) : 0;
    if (f)
        fclose(f);
    if (got != sizeof b) {
        uint64_t x = (uint64_t)(now_ms() * 1e6) ^ (uint64_t)(uintptr_t)out;
        for (int i = 0; i < 16; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            b[i] = (unsigned char)x;
        }
    }
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Serializes and frees obj; NULL when out of memory. */
static char *dump(json_t *obj)
{
    if (!obj)
        return NULL;
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return s;
}

static char *error_json(const char *id, const char *code, const char *msg)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", msg);
    if (o && id)
        json_object_set_new(o, "id", json_string(id));
    return dump(o);
}

/* ------------------------------------------------------------------ outbox */

/* Queues a control message for the sender (takes text, a malloc'd JSON string).  False when the outbox
 * is over its limit or memory ran out: the caller closes the connection.  Under ws->mu. */
static bool enqueue_locked(ws_conn *c, char *text)
{
    if (!text || c->broken || c->must_close) {
        c->must_close = true;
        free(text);
        return false;
    }
    size_t n = strlen(text);
    size_t limit = 2 * c->ws->p.max_message + (64 << 10);
    ws_frame *f = c->out_bytes + n > limit ? NULL : malloc(sizeof *f + n);
    if (!f) {
        if (c->out_bytes + n > limit)
            atomic_fetch_add(&c->ws->overflows, 1);
        c->must_close = true;
        free(text);
        return false;
    }
    f->next = NULL;
    f->len = n;
    memcpy(f->data, text, n);
    free(text);
    if (c->tail)
        c->tail->next = f;
    else
        c->head = f;
    c->tail = f;
    c->out_bytes += n;
    pthread_cond_signal(&c->cv);
    return true;
}

static bool enqueue(ws_conn *c, char *text)
{
    pthread_mutex_lock(&c->ws->mu);
    bool ok = enqueue_locked(c, text);
    pthread_mutex_unlock(&c->ws->mu);
    return ok;
}

static bool send_error(ws_conn *c, const char *id, const char *code, const char *msg)
{
    atomic_fetch_add(&c->ws->errors, 1);
    return enqueue(c, error_json(id, code, msg));
}

/* ------------------------------------------------------------ token buffer */

/* Drops the k oldest tokens.  Under ws->mu. */
static void drop_front(ws_gen *g, int k)
{
    if (k <= 0)
        return;
    for (int i = 0; i < k; i++) {
        g->bytes -= g->toks[i].len;
        free(g->toks[i].piece);
    }
    memmove(g->toks, g->toks + k, (size_t)(g->n - k) * sizeof *g->toks);
    g->n -= k;
    g->base += k;
}

/* The job's hook, on the decode thread: every event becomes the token with the next index. */
static bool on_event(void *user, const lb_token_event *ev)
{
    ws_gen *g = user;
    lb_ws *w = g->ws;
    if (ev->token < 0 && ev->piece_len == 0)
        return true;
    char *piece = NULL;
    if (ev->piece_len) {
        piece = malloc(ev->piece_len);
        if (piece)
            memcpy(piece, ev->piece, ev->piece_len);
    }
    pthread_mutex_lock(&w->mu);
    bool ok = !ev->piece_len || piece;
    if (ok && g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        ws_tok *t = realloc(g->toks, (size_t)cap * sizeof *t);
        if (t) {
            g->toks = t;
            g->cap = cap;
        } else {
            ok = false;
        }
    }
    if (ok) {
        if (g->base + g->n == 0)
            g->t_first_ms = now_ms();
        g->toks[g->n++] = (ws_tok){piece, ev->piece_len, ev->latency_ms};
        g->bytes += ev->piece_len;
        piece = NULL;
        /* Past the replay limits the oldest tokens go; if one of them never reached the client the
         * stream can no longer be complete, so the generation ends (overloaded) instead. */
        while (g->n > 1 && (g->n > WS_REPLAY_TOKENS || g->bytes > WS_REPLAY_BYTES)) {
            if (g->base >= g->next_send) {
                g->overflow = true;
                break;
            }
            drop_front(g, 1);
        }
        if (g->conn)
            pthread_cond_signal(&g->conn->cv);
    } else {
        g->overflow = true;
    }
    bool go_on = !g->overflow;
    pthread_mutex_unlock(&w->mu);
    free(piece);
    return go_on;
}

/* ------------------------------------------------------------------ sender */

typedef struct out_item {
    char *text;     /* malloc'd */
    size_t len;
} out_item;

/* Renders token i of g (under ws->mu). */
static char *token_json(const ws_gen *g, int i)
{
    const ws_tok *t = &g->toks[i - g->base];
    json_t *piece = json_stringn(t->piece ? t->piece : "", t->len);
    if (!piece)
        piece = json_string("\xef\xbf\xbd");   /* cannot happen: the token stream only releases valid UTF-8 */
    double lat = round(t->latency_ms * 1000.0) / 1000.0;
    return dump(json_pack("{s:s, s:s, s:o, s:i, s:f}", "type", "token", "id", g->id, "piece", piece, "index", i,
                          "latency_ms", lat));
}

/* Collects what c can send now, in order: queued control messages, then for every attached gen its
 * unsent tokens and, once they are all out, its final message.  Under ws->mu. */
static int collect_locked(ws_conn *c, out_item **items, int *cap)
{
    int n = 0;
    lb_ws *w = c->ws;
#define PUSH(t, l)                                                                       \
    do {                                                                                 \
        if (n == *cap) {                                                                 \
            int nc = *cap ? *cap * 2 : 64;                                               \
            out_item *ni = realloc(*items, (size_t)nc * sizeof *ni);                     \
            if (!ni) {                                                                   \
                free(t);                                                                 \
                goto full;                                                               \
            }                                                                            \
            *items = ni;                                                                 \
            *cap = nc;                                                                   \
        }                                                                                \
        (*items)[n++] = (out_item){(t), (l)};                                            \
    } while (0)
    while (c->head) {
        ws_frame *f = c->head;
        char *t = malloc(f->len);
        if (!t)
            goto full;
        memcpy(t, f->data, f->len);
        c->head = f->next;
        if (!c->head)
            c->tail = NULL;
        c->out_bytes -= f->len;
        size_t len = f->len;
        free(f);
        PUSH(t, len);
    }
    for (ws_gen *g = w->gens; g; g = g->next) {
        if (g->conn != c || g->final_sent)
            continue;
        int end = g->base + g->n, k = 0;
        while (g->next_send < end && k < WS_BATCH) {
            char *t = token_json(g, g->next_send);
            if (!t)
                goto full;
            PUSH(t, strlen(t));
            g->next_send++;
            k++;
        }
        if (!g->resumable)
            drop_front(g, g->next_send - g->base);   /* nobody can ask for them again */
        if (g->finished && g->next_send == end && g->final) {
            char *t = strdup(g->final);
            if (!t)
                goto full;
            PUSH(t, strlen(t));
            g->final_sent = true;
            if (g->resumable)
                g->expire_ms = now_ms() + w->p.grace_s * 1000.0;   /* a last resume may still want the done */
        }
    }
full:
    return n;
#undef PUSH
}

/* A dropped connection: resumable gens wait for a resume, the others are cancelled.  Under ws->mu. */
static void detach_all_locked(ws_conn *c)
{
    lb_ws *w = c->ws;
    for (ws_gen *g = w->gens; g; g = g->next) {
        if (g->conn != c)
            continue;
        g->conn = NULL;
        if (g->resumable) {
            if (!g->expire_ms || !g->final_sent)
                g->expire_ms = now_ms() + w->p.grace_s * 1000.0;
        } else if (!g->finished) {
            g->want_cancel = true;
            atomic_store(&g->job->cancel, true);
        }
    }
}

static void *sender_main(void *arg)
{
    ws_conn *c = arg;
    lb_ws *w = c->ws;
    out_item *items = NULL;
    int cap = 0;
    pthread_mutex_lock(&w->mu);
    while (!c->closing) {
        int n = collect_locked(c, &items, &cap);
        if (!n) {
            pthread_cond_wait(&c->cv, &w->mu);
            continue;
        }
        pthread_mutex_unlock(&w->mu);
        bool ok = true;
        for (int i = 0; i < n; i++) {
            if (ok && mg_websocket_write(c->mc, MG_WEBSOCKET_OPCODE_TEXT, items[i].text, items[i].len) <= 0)
                ok = false;
            free(items[i].text);
        }
        atomic_fetch_add(&w->msgs_out, (unsigned long long)n);
        pthread_mutex_lock(&w->mu);
        if (!ok) {
            /* The client is gone (or stopped reading for the whole I/O timeout): the same as a drop. */
            c->broken = true;
            detach_all_locked(c);
            break;
        }
    }
    pthread_mutex_unlock(&w->mu);
    free(items);
    return NULL;
}

/* --------------------------------------------------------- generation end */

static const char *finish_reason(const char *r)
{
    if (!r)
        return "length";
    if (!strcmp(r, "stop") || !strcmp(r, "cancelled"))
        return r;
    return "length";   /* max_tokens or a full context */
}

/* The done or error message of a finished job.  Under ws->mu (reads the job, which is DONE). */
static char *final_json(ws_gen *g)
{
    lb_srv_job *j = g->job;
    if (g->overflow)
        return error_json(g->id, "overloaded",
                          "the generation was stopped: its tokens outgrew the replay buffer before the client read them");
    if (j->rc && j->rc != LB_ERR_CANCELLED) {
        char msg[320];
        snprintf(msg, sizeof msg, "generation failed: %s: %.200s", lb_status_str(j->rc), j->err);
        return error_json(g->id, j->rc == LB_ERR_RANGE || j->rc == LB_ERR_INVALID_ARG ? "invalid_request" : "internal",
                          msg);
    }
    const lb_gen_stats *st = &j->stats;
    double total = g->t_done_ms - g->t_arrival_ms;
    double ttft = g->t_first_ms > 0 ? g->t_first_ms - g->t_arrival_ms : total;
    double tps = st->gen_ms > 0 ? st->n_gen * 1000.0 / st->gen_ms : 0;
    return dump(json_pack("{s:s, s:s, s:s, s:{s:i, s:i, s:i, s:i}, s:{s:f, s:f, s:f}}", "type", "done", "id", g->id,
                          "finish_reason", finish_reason(j->rc == LB_ERR_CANCELLED ? "cancelled" : st->finish_reason),
                          "usage", "prompt_tokens", st->n_prompt, "cached_tokens", j->n_cached, "completion_tokens",
                          st->n_gen, "total_tokens", st->n_prompt + st->n_gen, "timings", "ttft_ms", round(ttft * 1000) / 1000,
                          "tokens_per_second", round(tps * 1000) / 1000, "total_ms", round(total * 1000) / 1000));
}

static void gen_free(ws_gen *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n; i++)
        free(g->toks[i].piece);
    free(g->toks);
    free(g->final);
    lb_srv_job_free(g->job);
    free(g);
}

/* A withdrawn job never reaches the scheduler's completion: publish its end here. */
static void withdraw(lb_ws *w, lb_srv_job *j)
{
    if (!lb_srv_sched_withdraw(w->p.sched, j))
        return;
    pthread_mutex_lock(&j->mu);
    j->rc = LB_ERR_CANCELLED;
    j->stats.finish_reason = "cancelled";
    j->state = LB_JOB_DONE;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* One housekeeping round: finished jobs get their final message; gens nobody will read are cancelled;
 * gens that are over and expired are unlinked into *dead.  Returns jobs to withdraw in wd. Under ws->mu. */
static int housekeep_locked(lb_ws *w, ws_gen **dead, lb_srv_job **wd, int wd_cap)
{
    int n_wd = 0;
    double now = now_ms();
    for (ws_gen **pp = &w->gens; *pp;) {
        ws_gen *g = *pp;
        if (!g->finished) {
            pthread_mutex_lock(&g->job->mu);
            bool done = g->job->state == LB_JOB_DONE;
            pthread_mutex_unlock(&g->job->mu);
            if (done) {
                g->t_done_ms = now;
                g->final = final_json(g);
                if (!g->final)
                    g->final = error_json(NULL, "internal", "out of memory");
                g->finished = true;
                if (g->conn)
                    pthread_cond_signal(&g->conn->cv);
            } else {
                if (g->resumable && !g->conn && g->expire_ms && now > g->expire_ms && !g->want_cancel) {
                    g->want_cancel = true;   /* nobody came back for it */
                    atomic_store(&g->job->cancel, true);
                }
                if (w->stopping && !g->want_cancel) {
                    g->want_cancel = true;
                    atomic_store(&g->job->cancel, true);
                }
                if (g->want_cancel && !g->withdraw_tried && n_wd < wd_cap) {
                    g->withdraw_tried = true;
                    wd[n_wd++] = g->job;
                }
            }
        }
        /* A plain gen is over once its final message is out or nobody is attached; a resumable one stays
         * for grace_s after that, so a client that missed the end can still resume and get it. */
        bool freeable = g->finished &&
                        (w->stopping || (g->resumable ? g->expire_ms && now > g->expire_ms && (!g->conn || g->final_sent)
                                                      : g->final_sent || !g->conn));
        if (freeable) {
            *pp = g->next;
            g->next = *dead;
            *dead = g;
        } else {
            pp = &g->next;
        }
    }
    return n_wd;
}

static void *housekeeper_main(void *arg)
{
    lb_ws *w = arg;
    lb_srv_job *wd[64];
    pthread_mutex_lock(&w->mu);
    for (;;) {
        ws_gen *dead = NULL;
        int n_wd = housekeep_locked(w, &dead, wd, 64);
        bool stop = w->stopping && !w->gens;
        pthread_mutex_unlock(&w->mu);
        /* Gens are only ever freed here, so the withdrawn jobs are still alive. */
        for (int i = 0; i < n_wd; i++)
            withdraw(w, wd[i]);
        while (dead) {
            ws_gen *g = dead;
            dead = g->next;
            gen_free(g);
        }
        if (stop)
            return NULL;
        struct timespec ts = {0, WS_HOUSEKEEPING_MS * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&w->mu);
        /* Polling is only needed while there are generations; an idle server sleeps. */
        while (!w->gens && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
    }
}

/* ---------------------------------------------------------------- messages */

static int count_active_locked(lb_ws *w, ws_conn *c, const char *id, bool *dup)
{
    int k = 0;
    *dup = false;
    for (ws_gen *g = w->gens; g; g = g->next)
        if (g->conn == c && !g->final_sent) {
            k++;
            if (id && !strcmp(g->id, id))
                *dup = true;
        }
    return k;
}

static void handle_generate(ws_conn *c, json_t *root, const char *data, size_t len, const char *id)
{
    lb_ws *w = c->ws;
    double t_arrival = now_ms();
    json_t *v = json_object_get(root, "resumable");
    if (v && !json_is_boolean(v) && !json_is_null(v)) {
        send_error(c, id, "invalid_request", "'resumable' must be a boolean");
        return;
    }
    bool resumable = json_is_true(v);
    bool chat = json_object_get(root, "messages") != NULL;
    if (chat && json_object_get(root, "prompt")) {
        send_error(c, id, "invalid_request", "give either 'prompt' or 'messages', not both");
        return;
    }
    lb_srv_job *j = lb_srv_job_new();
    ws_gen *g = calloc(1, sizeof *g);
    if (!j || !g) {
        lb_srv_job_free(j);
        free(g);
        send_error(c, id, "internal", "out of memory");
        return;
    }
    lb_oai_limits lim = {w->p.max_tokens, w->p.chat};
    lb_oai_request req;
    lb_oai_error e;
    if (!lb_oai_parse(data, len, chat, &lim, j, &req, &e)) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s%s%s", e.message, e.param[0] ? " (field " : "", e.param[0] ? e.param : "");
        if (e.param[0])
            strncat(msg, ")", sizeof msg - strlen(msg) - 1);
        lb_srv_job_free(j);
        free(g);
        send_error(c, id, e.status >= 500 ? "internal" : "invalid_request", msg);
        return;
    }
    /* The prompt must leave room for one generated token; a clear error beats a failed generation. */
    lb_status ts = lb_srv_job_tokenize(j, w->p.model);
    size_t n_prompt = (size_t)j->n_tokens_prompt;
    if (ts == LB_ERR_NOMEM) {
        lb_srv_job_free(j);
        free(g);
        send_error(c, id, "internal", "out of memory");
        return;
    }
    if (ts || (int)n_prompt + 1 > w->p.n_ctx) {
        char msg[160];
        snprintf(msg, sizeof msg, "the prompt has %zu tokens; the context holds %d (prompt plus generated tokens)",
                 n_prompt, w->p.n_ctx);
        lb_srv_job_free(j);
        free(g);
        send_error(c, id, "invalid_request", msg);
        return;
    }
    if (j->gen.max_tokens > w->p.n_ctx - (int)n_prompt)
        j->gen.max_tokens = w->p.n_ctx - (int)n_prompt;
    j->t_arrival_ms = t_arrival;
    j->on_event = on_event;
    j->on_event_user = g;
    g->ws = w;
    g->job = j;
    g->resumable = resumable;
    g->t_arrival_ms = t_arrival;
    snprintf(g->id, sizeof g->id, "%s", id);
    if (resumable)
        random_token(g->resume_token);

    pthread_mutex_lock(&w->mu);
    bool dup;
    int active = count_active_locked(w, c, id, &dup);
    const char *refuse = dup ? "a generation with this id is still running on this connection"
                         : active >= WS_MAX_GENS ? "too many generations at once on this connection" : NULL;
    if (refuse) {
        pthread_mutex_unlock(&w->mu);
        gen_free(g);
        send_error(c, id, dup ? "invalid_request" : "overloaded", refuse);
        return;
    }
    /* "started" is queued before the gen is linked, so it precedes every token; the gen is linked before
     * the job is submitted, so the hook always finds it. */
    json_t *st = json_pack("{s:s, s:s}", "type", "started", "id", id);
    if (st && resumable)
        json_object_set_new(st, "resume_token", json_string(g->resume_token));
    if (!enqueue_locked(c, dump(st))) {
        pthread_mutex_unlock(&w->mu);
        gen_free(g);
        return;
    }
    g->conn = c;
    g->next = w->gens;
    w->gens = g;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (lb_srv_sched_submit(w->p.sched, j))
        return;
    /* Refused: only this reader thread knows the gen yet (no token, no resume token sent), so it can be
     * unlinked again.  The error after "started" says the generation will not run. */
    pthread_mutex_lock(&w->mu);
    for (ws_gen **pp = &w->gens; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    atomic_fetch_add(&w->errors, 1);
    enqueue_locked(c, error_json(id, "overloaded", "the server is busy: every slot and queue place is taken; retry later"));
    pthread_mutex_unlock(&w->mu);
    gen_free(g);
}

static void handle_cancel(ws_conn *c, const char *id)
{
    lb_ws *w = c->ws;
    bool found = false;
    pthread_mutex_lock(&w->mu);
    for (ws_gen *g = w->gens; g; g = g->next)
        if (g->conn == c && !g->final_sent && !strcmp(g->id, id)) {
            found = true;
            if (!g->finished) {
                g->want_cancel = true;
                atomic_store(&g->job->cancel, true);
            }
        }
    pthread_mutex_unlock(&w->mu);
    if (!found)
        send_error(c, id, "not_found", "no generation with this id is running on this connection");
}

static void handle_resume(ws_conn *c, json_t *root, const char *id)
{
    lb_ws *w = c->ws;
    json_t *tok = json_object_get(root, "resume_token"), *li = json_object_get(root, "last_index");
    if (!json_is_string(tok)) {
        send_error(c, id, "invalid_request", "'resume_token' must be a string");
        return;
    }
    if (!json_is_integer(li) || json_integer_value(li) < -1 || json_integer_value(li) > INT32_MAX) {
        send_error(c, id, "invalid_request", "'last_index' must be an integer >= -1 (-1: no token was received)");
        return;
    }
    int last = (int)json_integer_value(li);
    const char *t = json_string_value(tok);
    size_t tl = json_string_length(tok);
    char msg[200] = "";
    const char *code = NULL;
    pthread_mutex_lock(&w->mu);
    ws_gen *found = NULL;
    for (ws_gen *g = w->gens; g; g = g->next)
        if (g->resumable && same_secret(t, tl, g->resume_token))
            found = g;
    if (!found || strcmp(found->id, id)) {
        code = "not_found";
        snprintf(msg, sizeof msg, "no resumable generation with this id and resume_token (it may have expired)");
    } else if (last >= found->base + found->n) {
        code = "invalid_request";
        snprintf(msg, sizeof msg, "last_index %d is beyond the %d tokens generated so far", last, found->base + found->n);
    } else if (last + 1 < found->base) {
        code = "not_found";
        snprintf(msg, sizeof msg, "the tokens after index %d are no longer buffered (the oldest kept is %d)", last,
                 found->base);
    } else {
        bool dup;
        int active = count_active_locked(w, c, id, &dup);
        if (found->conn != c && (dup || active >= WS_MAX_GENS)) {
            code = dup ? "invalid_request" : "overloaded";
            snprintf(msg, sizeof msg, "%s", dup ? "a generation with this id is already running on this connection"
                                                : "too many generations at once on this connection");
        } else {
            /* Taking it over from a connection that has not noticed its own drop is allowed: the token proves
             * ownership, and the old connection simply stops getting its frames. */
            found->conn = c;
            found->next_send = last + 1;
            found->final_sent = false;
            found->expire_ms = 0;
            atomic_fetch_add(&w->resumes, 1);
            pthread_cond_signal(&c->cv);
        }
    }
    pthread_mutex_unlock(&w->mu);
    if (code)
        send_error(c, id, code, msg);
}

/* One complete text message.  False: close the connection (already answered). */
static bool handle_message(ws_conn *c, const char *data, size_t len)
{
    lb_ws *w = c->ws;
    atomic_fetch_add(&w->msgs_in, 1);
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char msg[256];
        snprintf(msg, sizeof msg, "the message is not valid JSON: %s (column %d)", jerr.text, jerr.column);
        return send_error(c, NULL, "invalid_request", msg);
    }
    bool ok = true;
    const char *type = json_string_value(json_object_get(root, "type"));
    json_t *idv = json_object_get(root, "id");
    const char *id = json_string_value(idv);
    if (!json_is_object(root)) {
        ok = send_error(c, NULL, "invalid_request", "a message must be a JSON object with a 'type'");
    } else if (!type) {
        ok = send_error(c, id, "invalid_request", "'type' must be a string: generate, cancel, resume or ping");
    } else if (!strcmp(type, "ping")) {
        json_t *d = json_object_get(root, "data");
        json_t *o = json_pack("{s:s}", "type", "pong");
        if (o && d)
            json_object_set(o, "data", d);
        ok = enqueue(c, dump(o));
    } else if (strcmp(type, "generate") && strcmp(type, "cancel") && strcmp(type, "resume")) {
        char msg[128];
        snprintf(msg, sizeof msg, "unknown message type '%.40s' (generate, cancel, resume, ping)", type);
        ok = send_error(c, id, "invalid_request", msg);
    } else if (!id || json_string_length(idv) == 0 || json_string_length(idv) > WS_MAX_ID ||
               memchr(id, '\0', json_string_length(idv))) {
        char msg[96];
        snprintf(msg, sizeof msg, "'id' must be a string of 1 to %d bytes", WS_MAX_ID);
        ok = send_error(c, NULL, "invalid_request", msg);
    } else if (!strcmp(type, "generate")) {
        handle_generate(c, root, data, len, id);
    } else if (!strcmp(type, "cancel")) {
        handle_cancel(c, id);
    } else {
        handle_resume(c, root, id);
    }
    json_decref(root);
    return ok;
}

/* --------------------------------------------------------------- civetweb */

/* Answers a refused upgrade.  civetweb hands the connect handler a const connection, though writing the
 * reply is exactly what it is for; the cast goes through uintptr_t to say that on purpose. */
static int refuse(const struct mg_connection *cc, int status, const char *code, const char *msg)
{
    struct mg_connection *c = (struct mg_connection *)(uintptr_t)cc;
    char body[400];
    int n = snprintf(body, sizeof body, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"code\":\"%s\"}}", msg,
                     status == 401 ? "invalid_request_error" : "server_error", code);
    mg_printf(c,
              "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nCache-Control: no-store\r\n"
              "%sConnection: close\r\n\r\n%s",
              status, status == 401 ? "Unauthorized" : status == 403 ? "Forbidden" : "Service Unavailable", n,
              status == 401 ? "WWW-Authenticate: Bearer\r\n" : "", body);
    return 1;
}

/* Browsers send Origin on every WebSocket upgrade and apply no CORS to it, so any page could otherwise
 * drive the local model: only the server's own origin and the --cors one are let in. */
static bool origin_allowed(const lb_ws *w, const struct mg_connection *c)
{
    const char *o = mg_get_header(c, "Origin");
    if (!o)
        return true;   /* not a browser */
    if (w->p.cors && (!strcmp(w->p.cors, "*") || !strcmp(w->p.cors, o)))
        return true;
    const char *host = mg_get_header(c, "Host");
    if (!host)
        return false;
    const char *rest = !strncasecmp(o, "http://", 7) ? o + 7 : !strncasecmp(o, "https://", 8) ? o + 8 : NULL;
    return rest && !strcasecmp(rest, host);
}

static bool key_ok(const lb_ws *w, const struct mg_connection *c)
{
    if (!w->p.api_key)
        return true;
    const char *h = mg_get_header(c, "Authorization");
    if (h && !strncasecmp(h, "Bearer ", 7)) {
        h += 7;
        while (*h == ' ')
            h++;
        if (same_secret(h, strlen(h), w->p.api_key))
            return true;
    }
    const struct mg_request_info *ri = mg_get_request_info(c);
    char key[512];
    if (ri->query_string &&
        mg_get_var(ri->query_string, strlen(ri->query_string), "api_key", key, sizeof key) >= 0)
        return same_secret(key, strlen(key), w->p.api_key);
    return false;
}

static int on_connect(const struct mg_connection *c, void *user)
{
    lb_ws *w = user;
    if (!key_ok(w, c))
        return refuse(c, 401, "invalid_api_key",
                      "a valid API key is required: Authorization: Bearer KEY, or ?api_key=KEY on the URL");
    if (!origin_allowed(w, c))
        return refuse(c, 403, "forbidden_origin", "this Origin may not open the WebSocket (see --cors)");
    if (atomic_load(&w->n_conns) >= w->p.max_connections)
        return refuse(c, 503, "too_many_connections", "too many WebSocket connections; retry later");
    return 0;
}

static void on_ready(struct mg_connection *mc, void *user)
{
    lb_ws *w = user;
    ws_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->ws = w;
    c->mc = mc;
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->sender, NULL, sender_main, c)) {
        pthread_cond_destroy(&c->cv);
        free(c);
        return;
    }
    atomic_fetch_add(&w->n_conns, 1);
    atomic_fetch_add(&w->conns_total, 1);
    mg_set_user_connection_data(mc, c);
}

/* Writes an error message and a close frame with code from the reader thread (the sender is told to stop
 * first, so nothing follows the close frame), then returns 0 so civetweb closes the connection. */
static int close_with(ws_conn *c, int code, const char *err_code, const char *msg)
{
    pthread_mutex_lock(&c->ws->mu);
    c->closing = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->ws->mu);
    if (err_code) {
        atomic_fetch_add(&c->ws->errors, 1);
        char *e = error_json(NULL, err_code, msg);
        if (e)
            mg_websocket_write(c->mc, MG_WEBSOCKET_OPCODE_TEXT, e, strlen(e));
        free(e);
    }
    char frame[125];
    frame[0] = (char)(code >> 8);
    frame[1] = (char)(code & 0xff);
    size_t n = strlen(msg);
    if (n > sizeof frame - 2)
        n = sizeof frame - 2;   /* a close reason must fit a control frame */
    memcpy(frame + 2, msg, n);
    mg_websocket_write(c->mc, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, frame, n + 2);
    return 0;
}

/* civetweb hands over frames one by one (it does not join fragments): this joins them into messages,
 * enforces the size limit and the UTF-8 rule, and answers control frames other than ping/pong
 * (civetweb answers pings itself when enable_websocket_ping_pong is on). */
static int on_data(struct mg_connection *mc, int bits, char *data, size_t len, void *user)
{
    lb_ws *w = user;
    ws_conn *c = mg_get_user_connection_data(mc);
    if (!c)
        return 0;
    int op = bits & 0x0f;
    bool fin = (bits & 0x80) != 0;
    if (op == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE) {
        pthread_mutex_lock(&w->mu);
        c->closing = true;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&w->mu);
        /* Echo the client's code (RFC 6455 5.5.1); civetweb closes the socket when this returns. */
        mg_websocket_write(mc, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, data, len >= 2 ? 2 : 0);
        return 0;
    }
    if (op == MG_WEBSOCKET_OPCODE_PING) {
        mg_websocket_write(mc, MG_WEBSOCKET_OPCODE_PONG, data, len);
        return 1;
    }
    if (op == MG_WEBSOCKET_OPCODE_PONG)
        return 1;
    if (op != MG_WEBSOCKET_OPCODE_CONTINUATION && op != MG_WEBSOCKET_OPCODE_TEXT && op != MG_WEBSOCKET_OPCODE_BINARY)
        return close_with(c, 1002, NULL, "unknown opcode");
    if (op == MG_WEBSOCKET_OPCODE_CONTINUATION ? !c->frag_op : c->frag_op)
        return close_with(c, 1002, NULL, "fragments out of order");

    size_t total = (op == MG_WEBSOCKET_OPCODE_CONTINUATION ? c->n_frag : 0) + len;
    if (total > w->p.max_message) {
        atomic_fetch_add(&w->closes_1009, 1);
        char msg[96];
        snprintf(msg, sizeof msg, "message larger than the limit of %zu bytes", w->p.max_message);
        return close_with(c, 1009, "too_large", msg);
    }
    const char *msg = data;
    size_t n = len;
    int mop = op;
    if (op != MG_WEBSOCKET_OPCODE_CONTINUATION && fin) {
        /* A whole message in one frame: no copy. */
    } else {
        if (op != MG_WEBSOCKET_OPCODE_CONTINUATION) {
            c->frag_op = op;
            c->n_frag = 0;
        }
        if (c->n_frag + len > c->cap_frag) {
            size_t cap = (c->n_frag + len) * 2;
            char *nb = realloc(c->frag, cap);
            if (!nb)
                return close_with(c, 1011, "internal", "out of memory");
            c->frag = nb;
            c->cap_frag = cap;
        }
        memcpy(c->frag + c->n_frag, data, len);
        c->n_frag += len;
        if (!fin)
            return 1;
        msg = c->frag;
        n = c->n_frag;
        mop = c->frag_op;
        c->frag_op = 0;
    }
    bool ok;
    if (mop == MG_WEBSOCKET_OPCODE_BINARY) {
        ok = send_error(c, NULL, "invalid_request", "binary messages are not supported; send JSON text");
    } else if (!utf8_valid((const unsigned char *)msg, n)) {
        atomic_fetch_add(&w->closes_1007, 1);
        return close_with(c, 1007, "invalid_request", "the message is not valid UTF-8");
    } else {
        ok = handle_message(c, msg, n);
    }
    if (c->cap_frag > (64 << 10)) {
        /* Do not keep a large reassembly buffer around between messages. */
        free(c->frag);
        c->frag = NULL;
        c->cap_frag = 0;
    }
    c->n_frag = 0;
    pthread_mutex_lock(&w->mu);
    ok = ok && !c->must_close;
    pthread_mutex_unlock(&w->mu);
    if (!ok)
        return close_with(c, 1008, NULL, "outbox full: the client does not read its messages");
    return 1;
}

static void on_close(const struct mg_connection *mc, void *user)
{
    lb_ws *w = user;
    ws_conn *c = mg_get_user_connection_data(mc);
    if (!c)
        return;
    pthread_mutex_lock(&w->mu);
    c->closing = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(c->sender, NULL);
    pthread_mutex_lock(&w->mu);
    detach_all_locked(c);
    while (c->head) {
        ws_frame *f = c->head;
        c->head = f->next;
        free(f);
    }
    pthread_mutex_unlock(&w->mu);
    pthread_cond_destroy(&c->cv);
    free(c->frag);
    free(c);
    atomic_fetch_sub(&w->n_conns, 1);
}

/* ------------------------------------------------------------------- public */

lb_ws *lb_ws_new(const lb_ws_params *p)
{
    lb_ws *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->p = *p;
    if (w->p.max_connections <= 0)
        w->p.max_connections = 32;
    if (w->p.grace_s <= 0)
        w->p.grace_s = 30;
    if (!w->p.max_message)
        w->p.max_message = 1 << 20;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->housekeeper, NULL, housekeeper_main, w)) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return NULL;
    }
    return w;
}

void lb_ws_register(lb_ws *w, struct mg_context *ctx)
{
    mg_set_websocket_handler(ctx, "/v1/ws", on_connect, on_ready, on_data, on_close, w);
}

char *lb_ws_metrics_append(const lb_ws *w, char *text)
{
    if (!text)
        return NULL;
    char add[1400];
    snprintf(add, sizeof add,
             "# HELP lowbit_ws_connections Open WebSocket connections.\n# TYPE lowbit_ws_connections gauge\n"
             "lowbit_ws_connections %d\n"
             "# HELP lowbit_ws_connections_total WebSocket connections accepted.\n"
             "# TYPE lowbit_ws_connections_total counter\nlowbit_ws_connections_total %llu\n"
             "# HELP lowbit_ws_messages_received_total WebSocket messages received (after joining fragments).\n"
             "# TYPE lowbit_ws_messages_received_total counter\nlowbit_ws_messages_received_total %llu\n"
             "# HELP lowbit_ws_messages_sent_total WebSocket messages sent.\n"
             "# TYPE lowbit_ws_messages_sent_total counter\nlowbit_ws_messages_sent_total %llu\n"
             "# HELP lowbit_ws_errors_total WebSocket error messages sent.\n"
             "# TYPE lowbit_ws_errors_total counter\nlowbit_ws_errors_total %llu\n"
             "# HELP lowbit_ws_resumes_total Generations resumed after a reconnect.\n"
             "# TYPE lowbit_ws_resumes_total counter\nlowbit_ws_resumes_total %llu\n"
             "# HELP lowbit_ws_closes_total Connections the server closed, by close code.\n"
             "# TYPE lowbit_ws_closes_total counter\nlowbit_ws_closes_total{code=\"1007\"} %llu\n"
             "lowbit_ws_closes_total{code=\"1009\"} %llu\nlowbit_ws_closes_total{code=\"1008\"} %llu\n",
             atomic_load(&w->n_conns), atomic_load(&w->conns_total), atomic_load(&w->msgs_in),
             atomic_load(&w->msgs_out), atomic_load(&w->errors), atomic_load(&w->resumes),
             atomic_load(&w->closes_1007), atomic_load(&w->closes_1009), atomic_load(&w->overflows));
    size_t a = strlen(text), b = strlen(add);
    char *t = realloc(text, a + b + 1);
    if (!t) {
        free(text);
        return NULL;
    }
    memcpy(t + a, add, b + 1);
    return t;
}

void lb_ws_free(lb_ws *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    /* The housekeeper cancels what still runs, waits for the scheduler to finish each job and frees all. */
    pthread_join(w->housekeeper, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}
