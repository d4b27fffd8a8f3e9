/* `lowbit serve`: an OpenAI-compatible HTTP server (civetweb) over one model. */
#ifndef LB_SERVER_SERVER_H
#define LB_SERVER_SERVER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "lowbit.h"

typedef struct lb_server_params {
    const char *host;        /* default "127.0.0.1": loopback unless asked */
    int port;                /* default 8080; 0 = any free port (the one chosen is printed) */
    const char *api_key;     /* bearer token required on everything but /health; NULL = none */
    const char *web_root;    /* static files; NULL = none */
    const char *model_name;  /* the id reported to clients */
    int n_ctx, n_threads;    /* n_ctx per slot; n_threads for the batched decode (and each session's prefill scratch) */
    int parallel;            /* slots: sessions decoded together in one batched step */
    int queue;               /* requests that may wait for a slot before 429 */
    int max_tokens;          /* default and upper bound of a request's max_tokens */
    int timeout_s;           /* a generation request's whole time, queue included */
    size_t max_body;         /* request body bytes */
    const char *cors;        /* Access-Control-Allow-Origin value ("*" or one origin); NULL = no CORS headers at all */
    int io_timeout_s;        /* request headers must arrive, and each socket read/write complete, within this (default 30) */
    lb_kv_type kv_k, kv_v;   /* KV cache types of every slot's session (default F16) */
    int n_window, n_sinks;   /* sliding window and sinks of every slot's session (lb_session_params; default 0 = none) */
    bool prompt_cache;       /* a prompt starts from the longest prefix of it a cache holds (default true) */
    size_t prompt_store;     /* bytes of keys and values kept after their slots moved on (default 128 MiB; 0 = none) */
} lb_server_params;

lb_server_params lb_server_default_params(void);

/* Serves until *stop becomes non-zero, then shuts down cleanly.  Prints
 * "lowbit serve: listening on http://HOST:PORT" on stderr once ready.
 * Returns 0, or 1 after printing why the server could not start. */
int lb_server_run(lb_model *m, const lb_server_params *p, volatile sig_atomic_t *stop);

#endif
