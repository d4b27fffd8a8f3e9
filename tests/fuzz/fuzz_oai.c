/* libFuzzer target: arbitrary bytes as the JSON body of POST /v1/completions and
 * /v1/chat/completions (lb_oai_parse, the same parser the WebSocket `generate`
 * message goes through), rendered in every chat format; every accepted
 * request must respect the server's limits and every answer must be JSON. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/openai.h"

/* The server's own jobs come from lb_srv_job_new (scheduler.c), which needs the
 * whole engine; the parser only touches the request fields, so a zeroed job with
 * the generation defaults the parser reads is the same input for it. */
static void job_init(lb_srv_job *j)
{
    memset(j, 0, sizeof *j);
    j->gen.max_tokens = 128;
    j->gen.add_special = true;
    j->gen.stop_at_eog = true;
    j->gen.sampler.temperature = 0.8f;
    j->gen.sampler.top_p = 0.95f;
    j->gen.sampler.min_p = 0.05f;
    j->gen.sampler.top_k = 40;
}

static void job_clear(lb_srv_job *j)
{
    for (int i = 0; i < 8; i++)
        free(j->stop_strs[i]);
    free(j->prompt);
}

/* An answer the client gets must be one JSON object; abort() is how a fuzz target reports. */
static void must_be_json(char *text)
{
    if (!text)
        return;   /* out of memory is allowed to fail */
    json_error_t err;
    json_t *v = json_loads(text, 0, &err);
    if (!json_is_object(v)) {
        fprintf(stderr, "fuzz_oai: not a JSON object: %s\n", text);
        abort();
    }
    json_decref(v);
    free(text);
}

/* The streamed text chunk, written without jansson (openai.c, text_chunk), for the raw bytes as the text: when
 * jansson takes them as a string (valid UTF-8) it must be a JSON object carrying exactly those bytes; otherwise,
 * if there is one at all, still JSON (the bytes left out). */
static void check_text_chunk(bool chat, const char *text, size_t n)
{
    if (!n && chat)
        return;   /* no text: the chunk with an empty delta, jansson's */
    lb_oai_request r = {.chat = chat};
    char *c = lb_oai_chunk(&r, "id-\"1\"", 7, "m\\\n", text, n, NULL, false);
    json_t *ref = json_stringn(text, n);
    const bool valid = ref != NULL;
    json_decref(ref);
    if (!c) {
        if (valid) {
            fprintf(stderr, "fuzz_oai: no text chunk for valid UTF-8\n");
            abort();
        }
        return;
    }
    json_error_t err;
    json_t *v = json_loads(c, JSON_ALLOW_NUL, &err);   /* the text may hold NUL, as \\u0000 */
    json_t *ch = json_array_get(json_object_get(v, "choices"), 0);
    json_t *t = chat ? json_object_get(json_object_get(ch, "delta"), "content") : json_object_get(ch, "text");
    const bool same = json_is_string(t) && json_string_length(t) == n && !memcmp(json_string_value(t), text, n) &&
                      !strcmp(json_string_value(json_object_get(v, "id")), "id-\"1\"") &&
                      !strcmp(json_string_value(json_object_get(v, "model")), "m\\\n") &&
                      json_integer_value(json_object_get(v, "created")) == 7 &&
                      json_is_null(json_object_get(ch, "finish_reason"));
    if (!json_is_object(v) || (valid && !same)) {
        fprintf(stderr, "fuzz_oai: the text chunk does not carry the text: %s\n", c);
        abort();
    }
    json_decref(v);
    free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* first byte: bit 0 chat or completions, bits 1..3 the chat format, bits 4..7 the server's max_tokens */
    bool chat = data[0] & 1;
    lb_oai_limits lim = {.max_tokens = 1 + (data[0] >> 4) * 100, .chat = (lb_chat_format)((data[0] >> 1) % 6)};
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    lb_srv_job job;
    job_init(&job);
    lb_oai_request req;
    lb_oai_error e;
    bool ok = lb_oai_parse(body, len, chat, &lim, &job, &req, &e);
    if (!ok) {
        if ((e.status != 400 && e.status != 500) || !e.message[0] || !e.type || !e.code) {
            fprintf(stderr, "fuzz_oai: a refusal without status %d or message\n", e.status);
            abort();
        }
        must_be_json(lb_oai_error_json(&e));
    } else {
        if (!job.prompt || job.gen.max_tokens < 1 || job.gen.max_tokens > lim.max_tokens || job.gen.n_stop < 0 ||
            job.gen.n_stop > 8 || req.chat != chat) {
            fprintf(stderr, "fuzz_oai: accepted a request outside the limits (max_tokens %d, n_stop %d)\n",
                    job.gen.max_tokens, job.gen.n_stop);
            abort();
        }
        for (int i = 0; i < job.gen.n_stop; i++)
            if (!job.gen.stop[i] || !job.gen.stop[i][0])
                abort();
        /* The prompt stands in for generated text: it is UTF-8 by construction (jansson checks strings). */
        size_t n = strlen(job.prompt);
        must_be_json(lb_oai_chunk(&req, "id-1", 1, "m", job.prompt, n, NULL, true));
        must_be_json(lb_oai_chunk(&req, "id-1", 1, "m", "", 0, "stop", false));
        must_be_json(lb_oai_usage_chunk(&req, "id-1", 1, "m", 3, 2, 4));
        must_be_json(lb_oai_response(&req, "id-1", 1, "m", job.prompt, n, "length", 3, 2, 4));
    }
    job_clear(&job);
    check_text_chunk(chat, body, len);
    return 0;
}
