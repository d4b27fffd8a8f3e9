/* The WebSocket endpoint /v1/ws of `lowbit serve`: the message protocol of docs/protocol.md over civetweb. */
#ifndef LB_SERVER_WS_H
#define LB_SERVER_WS_H

#include <stddef.h>

#include "chat_template.h"
#include "lowbit.h"
#include "scheduler.h"

struct mg_context;

typedef struct lb_ws_params {
    lb_model *model;           /* for the prompt-length check; borrowed */
    lb_srv_sched *sched;       /* generations run as its jobs; borrowed, must outlive lb_ws_free */
    lb_chat_format chat;       /* how "messages" are rendered */
    int max_tokens;            /* the server's --max-tokens: default and clamp */
    int n_ctx;                 /* context per slot */
    const char *api_key;       /* NULL = no auth; else the upgrade needs it (header or ?api_key=) */
    const char *cors;          /* an allowed cross-site Origin ("*" = any); NULL = same-origin pages only */
    size_t max_message;        /* largest message after reassembling fragments; larger closes with 1009 */
    int max_connections;       /* WebSocket connections at once; more get HTTP 503 on the upgrade */
    int grace_s;               /* how long a resumable generation outlives its dropped connection */
} lb_ws_params;

typedef struct lb_ws lb_ws;

/* Starts the endpoint's housekeeping thread.  NULL on allocation failure. */
lb_ws *lb_ws_new(const lb_ws_params *p);

/* Registers /v1/ws on ctx (call once, after mg_start). */
void lb_ws_register(lb_ws *w, struct mg_context *ctx);

/* Appends the endpoint's Prometheus lines to text (malloc'd, consumed) and
 * returns the new malloc'd text; NULL when out of memory (text is freed). */
char *lb_ws_metrics_append(const lb_ws *w, char *text);

/* Cancels every generation still known, waits until the scheduler has let go
 * of them and frees everything.  Call after mg_stop (no connection is left)
 * and before lb_srv_sched_free.  Accepts NULL. */
void lb_ws_free(lb_ws *w);

#endif
