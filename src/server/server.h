/* `lowbit serve`: an OpenAI-compatible HTTP server (civetweb) over one model. */
#ifndef LB_SERVER_SERVER_H
#define LB_SERVER_SERVER_H

#include <signal.h>
#include <stddef.h>

#include "lowbit.h"

typedef struct lb_server_params {
    const char *host;        /* default "127.0.0.1": loopback unless asked */
    int port;                /* default 8080; 0 = any free port (the one chosen is printed) */
    const char *api_key;     /* bearer token required on everything but /health; NULL = none */
    const char *web_root;    /* static files; NULL = none */
    const char *model_name;  /* the id reported to clients */
    int n_ctx, n_threads;    /* per slot; n_threads is split between slots */
    int parallel;            /* slots (sessions generating at the same time) */
    int queue;               /* requests that may wait for a slot before 429 */
    int max_tokens;          /* default and upper bound of a request's max_tokens */
    int timeout_s;           /* a generation request's whole time, queue included */
    size_t max_body;         /* request body bytes */
} lb_server_params;

lb_server_params lb_server_default_params(void);

/* Serves until *stop becomes non-zero, then shuts down cleanly.  Prints
 * "lowbit serve: listening on http://HOST:PORT" on stderr once ready.
 * Returns 0, or 1 after printing why the server could not start. */
int lb_server_run(lb_model *m, const lb_server_params *p, volatile sig_atomic_t *stop);

#endif
