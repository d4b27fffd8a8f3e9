/* The OpenAI-compatible JSON of `lowbit serve`: request parsing and response bodies (jansson). */
#ifndef LB_SERVER_OPENAI_H
#define LB_SERVER_OPENAI_H

#include <stdbool.h>
#include <stddef.h>

#include "chat_template.h"
#include "scheduler.h"

typedef struct lb_oai_limits {
    int max_tokens;            /* the server's --max-tokens: the default and the clamp */
    lb_chat_format chat;       /* the format chat messages are rendered in */
} lb_oai_limits;

typedef struct lb_oai_request {
    bool chat, stream, include_usage;
    bool max_tokens_clamped;   /* the client asked for more than the server allows */
} lb_oai_request;

/* An error for the client: HTTP status and the OpenAI error object's fields. */
typedef struct lb_oai_error {
    int status;
    const char *type, *code;   /* static strings */
    char param[64];
    char message[256];
} lb_oai_error;

/* Parses a completions (chat=false) or chat completions body into job (prompt,
 * sampling, max_tokens, stop strings) and req.  On failure returns false and
 * fills e (status 400). */
bool lb_oai_parse(const char *body, size_t len, bool chat, const lb_oai_limits *lim, lb_srv_job *job,
                  lb_oai_request *req, lb_oai_error *e);

/* Everything below returns a malloc'd NUL-terminated compact JSON text, or NULL
 * when out of memory. text must be valid UTF-8 (the token stream guarantees it). */

/* {"error": {"message", "type", "code", "param"}} */
char *lb_oai_error_json(const lb_oai_error *e);

/* One streamed chunk: text (may be empty), finish_reason NULL until the last. first adds the assistant role (chat). */
char *lb_oai_chunk(const lb_oai_request *r, const char *id, long created, const char *model, const char *text,
                   size_t n, const char *finish_reason, bool first);

/* The chunk with empty choices and usage that ends a stream when include_usage was asked; n_cached: prompt
 * tokens taken from the prompt cache (usage.prompt_tokens_details.cached_tokens). */
char *lb_oai_usage_chunk(const lb_oai_request *r, const char *id, long created, const char *model, int n_prompt,
                         int n_cached, int n_gen);

/* The whole non-streamed response. */
char *lb_oai_response(const lb_oai_request *r, const char *id, long created, const char *model, const char *text,
                      size_t n, const char *finish_reason, int n_prompt, int n_cached, int n_gen);

/* GET /v1/models. */
char *lb_oai_models(const char *model, long created, const char *chat_format, int n_ctx);

/* lb_gen_stats.finish_reason mapped to OpenAI's vocabulary ("stop" or "length"). */
const char *lb_oai_finish_reason(const char *lowbit_reason);

#endif
