/* lowbit.h — the public C API of the lowbit inference engine.
 *
 * Conventions (they hold for every function below):
 *  - Every call that can fail returns an lb_status; LB_OK is 0.  On failure no
 *    output pointer is written and nothing is leaked.
 *  - A human-readable message with context (which key, tensor or byte offset)
 *    is kept on the object involved: lb_model_last_error(), lb_session_last_error().
 *    Functions that fail before an object exists (lb_model_load) leave the
 *    message for lb_last_load_error() on the same thread.
 *  - Objects are opaque; create/free pairs; every *_free accepts NULL.
 *  - Params structs are passed by value and obtained from lb_*_default_params().
 *  - The library never exits or aborts the process on bad input.
 */
#ifndef LOWBIT_H
#define LOWBIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LB_VERSION_MAJOR 0
#define LB_VERSION_MINOR 1
#define LB_VERSION_PATCH 0

typedef enum lb_status {
    LB_OK = 0,
    LB_ERR_INVALID_ARG,   /* a caller passed a bad argument */
    LB_ERR_IO,            /* the file could not be opened, read or mapped */
    LB_ERR_FORMAT,        /* the bytes are not a valid GGUF / model file */
    LB_ERR_UNSUPPORTED,   /* valid, but not something lowbit can run (type, architecture) */
    LB_ERR_NOT_FOUND,     /* a required key or tensor is missing */
    LB_ERR_TYPE,          /* a metadata value has the wrong type */
    LB_ERR_NOMEM,         /* an allocation failed or a budget was exceeded */
    LB_ERR_RANGE,         /* a value is out of its allowed range (context full, token id) */
    LB_ERR_CANCELLED,     /* the caller's callback asked to stop */
    LB_ERR_INTERNAL       /* a bug in lowbit; please report */
} lb_status;

/* Returns a static English name for a status ("format error", ...). Never NULL. */
const char *lb_status_str(lb_status s);

/* The message of the last failed lb_model_load / lb_model_load_memory on the
 * calling thread ("" if none).  Valid until the next load on this thread. */
const char *lb_last_load_error(void);

/* ---------------------------------------------------------------- models */

typedef struct lb_model lb_model;
typedef int32_t lb_token;

typedef void (*lb_progress_cb)(float fraction, void *user);

typedef struct lb_model_params {
    bool use_mmap;              /* map the file instead of reading it (native only); default true */
    lb_progress_cb progress;    /* called while loading with 0..1; may be NULL */
    void *progress_user;
} lb_model_params;

lb_model_params lb_model_default_params(void);

/* Loads a GGUF model from a file.  On success *out owns the model; release with lb_model_free. */
lb_status lb_model_load(const char *path, const lb_model_params *p, lb_model **out);

/* Loads a GGUF model from a caller-supplied buffer (the browser feeds bytes).
 * The buffer is NOT copied: it must stay valid and unchanged until lb_model_free. */
lb_status lb_model_load_memory(const void *data, size_t size, const lb_model_params *p, lb_model **out);

void lb_model_free(lb_model *m);

/* The message of the last failure that involved m (e.g. lb_session_new could
 * not allocate its cache); "" if none.  Valid until the next call on m. */
const char *lb_model_last_error(const lb_model *m);

/* Copies the string metadata value under key (e.g. "tokenizer.chat_template")
 * into buf as a NUL-terminated string.  LB_ERR_NOT_FOUND if the key is absent,
 * LB_ERR_TYPE if its value is not a string, LB_ERR_RANGE if it needs more than
 * cap bytes (buf is then left untouched). */
lb_status lb_model_meta_str(const lb_model *m, const char *key, char *buf, size_t cap);

/* Model facts for display and planning. Strings are owned by the model. */
typedef struct lb_model_info {
    const char *arch;          /* "llama", "qwen2", ... */
    const char *name;          /* general.name or "" */
    int n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, n_ff;
    int64_t n_params;          /* elements in all tensors */
    uint64_t weight_bytes;     /* bytes of all tensor data */
    double bits_per_weight;    /* weight_bytes * 8 / n_params */
    lb_token bos, eos;         /* -1 when absent */
    bool add_bos;
} lb_model_info;

void lb_model_get_info(const lb_model *m, lb_model_info *out);

/* ------------------------------------------------------------ tokenizer */

/* Tokenizes text.  add_special: add BOS/EOS as the model's metadata asks.
 * parse_special: treat special-token text such as "<s>" as the special token.
 * Writes at most cap ids; *n_out receives the full count (so a too-small cap can
 * be detected: LB_ERR_RANGE is returned when *n_out > cap). */
lb_status lb_tokenize(const lb_model *m, const char *text, size_t len, bool add_special,
                      bool parse_special, lb_token *out, size_t cap, size_t *n_out);

/* The bytes a token stands for when printed (byte tokens give one raw byte;
 * control tokens give "").  *len receives the length; not NUL-terminated.
 * Returns NULL for an invalid id. */
const char *lb_token_piece(const lb_model *m, lb_token t, size_t *len);

/* True when the token ends a generation (EOS, EOT and similar). */
bool lb_token_is_eog(const lb_model *m, lb_token t);

/* -------------------------------------------------------------- sessions */

typedef struct lb_session lb_session;

/* How the KV cache stores keys or values (docs/kv-cache.md has the layouts).
 * F16 is exact (and bit-compatible with llama.cpp's default cache); the
 * others are lowbit's own: each head vector is rotated by a fixed randomized
 * Hadamard transform, then keys are quantized per channel over groups of 128
 * tokens and values per token over groups of 64 channels, with an f16 scale
 * and minimum per group; the newest tokens stay in F16 until their group of
 * 128 is full.  Bytes per token and head (head_dim 64, scales included),
 * keys / values: F16 128/128, Q8 66/68, Q4 34/36, Q3 26/28, Q2 18/20. */
typedef enum lb_kv_type {
    LB_KV_F16 = 0,
    LB_KV_Q8,
    LB_KV_Q4,
    LB_KV_Q3,
    LB_KV_Q2,
    LB_KV_TYPE_COUNT
} lb_kv_type;

/* "f16", "q8", "q4", "q3", "q2"; "?" for a value outside the enum. */
const char *lb_kv_type_name(lb_kv_type t);
/* Parses one of the names above (exact, lower case).  Returns
 * LB_ERR_INVALID_ARG and leaves *out alone for anything else. */
lb_status lb_kv_type_parse(const char *name, lb_kv_type *out);

/* A memory budget shared by the KV caches of several sessions
 * (docs/kv-cache.md, "Sessions sharing a pool").  A session created with
 * lb_session_params.kv_pool reserves its cache's bytes (exactly what
 * lb_plan / the estimator count) from the pool.  When they do not fit, the
 * caches of the pool's idle sessions are reclaimed, least recently used
 * first; if even that is not enough, lb_session_new (or the evaluation that
 * needs the cache back) fails with LB_ERR_NOMEM and nothing is reclaimed.
 * A reclaimed session stays valid but forgets its context:
 * lb_session_n_past() returns 0 and its next evaluation starts at position
 * 0 (lb_generate starts there anyway).  A session is never reclaimed while
 * lb_session_eval / lb_generate runs on it; the pool is locked, so
 * lb_kv_pool_reclaim may run on another thread.  Free the sessions before
 * the pool. */
typedef struct lb_kv_pool lb_kv_pool;
/* LB_ERR_INVALID_ARG for a zero budget, LB_ERR_NOMEM. */
lb_status lb_kv_pool_new(size_t budget_bytes, lb_kv_pool **out);
void lb_kv_pool_free(lb_kv_pool *p);
/* Bytes currently reserved by the pool's sessions. */
size_t lb_kv_pool_used(const lb_kv_pool *p);
/* Reclaims the caches of sessions idle for at least idle_ms (0: every idle
 * one); returns the bytes freed. */
size_t lb_kv_pool_reclaim(lb_kv_pool *p, double idle_ms);

typedef struct lb_session_params {
    int n_ctx;        /* context length in tokens; 0 = the model's trained context */
    int n_threads;    /* 0 = number of online CPUs */
    int n_batch;      /* max tokens evaluated in one forward pass; 0 = n_ctx */
    lb_kv_type kv_type_k;   /* storage of cached keys; default LB_KV_F16 */
    lb_kv_type kv_type_v;   /* storage of cached values; default LB_KV_F16 */
    /* Sliding window with attention sinks (docs/kv-cache.md): when n_window
     * > 0 the cache keeps the first n_sinks positions and the newest
     * n_window (a quantized pair: n_window rounded up to 128-token groups,
     * plus up to 128 newest), so evaluation continues past n_ctx and the
     * trained context, up to 2^24 positions, in constant memory; n_ctx then
     * only sets the default n_batch.  0 (default): no window, at most n_ctx
     * positions.  n_sinks without a window keeps those first positions in
     * F16 in a quantized cache. */
    int n_window;
    int n_sinks;      /* default 0 */
    lb_kv_pool *kv_pool;   /* reserve the KV cache from this shared budget; NULL (default) = none */
} lb_session_params;

lb_session_params lb_session_default_params(void);

/* ------------------------------------------------------------- planning
 * How much context fits in a memory budget, for every KV type pair, before
 * anything is allocated (docs/kv-cache.md, "Planner").  The total counted
 * for a context n is
 *   file_bytes (the weights are in memory in the browser, mmap'd natively)
 *   + model_bytes (tokenizer and model structures, estimated from the header)
 *   + overhead_bytes (LB_PLAN_OVERHEAD: code, stacks, allocator slack, the
 *     session, its thread pool and one row of logits)
 *   + the KV cache (exactly what lb_session_new allocates for it)
 *   + the forward scratch for the session's batch size. */

#define LB_PLAN_MAX_CTX (1 << 20)          /* no context beyond this is considered */
#define LB_PLAN_OVERHEAD (4u << 20)        /* fixed bytes for code, stacks and allocator slack */
#define LB_PLAN_N_PAIRS (LB_KV_TYPE_COUNT * LB_KV_TYPE_COUNT)

typedef struct lb_plan_params {
    int min_ctx;     /* the context the recommendation should reach; 0 = the trained context */
    int max_ctx;     /* the largest context considered; 0 = LB_PLAN_MAX_CTX (larger is clamped to it) */
    int n_threads;   /* as lb_session_params.n_threads (the cache keeps scratch per thread); 0 = online CPUs */
    int n_batch;     /* as lb_session_params.n_batch; 0 = the session default, min(n_ctx, 512) */
} lb_plan_params;

lb_plan_params lb_plan_default_params(void);

typedef struct lb_plan_entry {
    lb_kv_type kv_k, kv_v;
    bool supported;            /* false when the model cannot use this pair (head_dim not 64/128/256) */
    uint64_t bytes_per_token;  /* KV bytes per token, scales included, F16 residual window excluded */
    int n_ctx;                 /* the largest context that fits the budget; 0 when none does */
    uint64_t kv_bytes;         /* the KV cache at n_ctx (residual window and scratch included) */
    uint64_t scratch_bytes;    /* the forward scratch at n_ctx's batch size */
    uint64_t total_bytes;      /* fixed_bytes + kv_bytes + scratch_bytes */
} lb_plan_entry;

typedef struct lb_plan_result {
    uint64_t bytes_needed;     /* after LB_ERR_RANGE: call again with at least this many bytes of the file */
    uint64_t file_bytes;       /* size of the whole file (as its header implies) */
    uint64_t weight_bytes;     /* of which tensor data */
    uint64_t model_bytes;      /* estimated heap of the loaded model's structures (tokenizer, ...) */
    uint64_t overhead_bytes;   /* LB_PLAN_OVERHEAD + session, pool and logits */
    uint64_t fixed_bytes;      /* file_bytes + model_bytes + overhead_bytes: the cost of any context */
    int n_ctx_train, n_threads, n_batch, min_ctx, max_ctx;
    /* All 25 pairs, keys-major in enum order: pairs[k * LB_KV_TYPE_COUNT + v]. */
    lb_plan_entry pairs[LB_PLAN_N_PAIRS];
    /* Index into pairs: the most precise pair whose context reaches min_ctx,
     * else the pair with the largest context; -1 when nothing fits.  Pairs
     * rank by the bits of the lower-precision side, then of the keys, then of
     * the values (so q8/q8 ranks above f16/q4). */
    int recommended;
    char error[256];           /* why a call failed ("" on success) */
} lb_plan_result;

/* Plans from the start of a GGUF file: header_bytes holds its first len
 * bytes (at least the metadata and tensor infos; the whole file is fine too).
 * The tensor data need not be present.  Returns LB_OK and fills *out; or
 * LB_ERR_RANGE when the prefix ends inside the header, with
 * out->bytes_needed > len (fetch that many bytes and call again: it is at
 * least 1 MiB and at least twice len, so a long header takes few rounds; if
 * len was already the whole file, the file is truncated);
 * LB_ERR_FORMAT / LB_ERR_UNSUPPORTED / LB_ERR_NOT_FOUND for a file lowbit
 * cannot plan (message in out->error); LB_ERR_INVALID_ARG for bad params.
 * memory_budget is in bytes; a budget below fixed_bytes gives LB_OK with
 * every n_ctx 0 and recommended -1. */
lb_status lb_plan_from_gguf(const void *header_bytes, size_t len, size_t memory_budget, const lb_plan_params *p,
                            lb_plan_result *out);

/* The same for a loaded model (file_bytes is the size of the loaded image). */
lb_status lb_plan_model(const lb_model *m, size_t memory_budget, const lb_plan_params *p, lb_plan_result *out);

/* Creates a session: the KV cache and scratch buffers are sized and allocated
 * here, once.  The model must outlive the session. */
lb_status lb_session_new(lb_model *m, const lb_session_params *p, lb_session **out);
void lb_session_free(lb_session *s);
const char *lb_session_last_error(const lb_session *s);

/* Forgets all cached positions (the next eval starts at position 0). */
void lb_session_reset(lb_session *s);

/* Number of positions currently in the cache. */
int lb_session_n_past(const lb_session *s);

/* Evaluates n tokens at positions n_past .. n_past+n-1 (in batches of n_batch)
 * and appends them to the cache.  If logits is non-NULL it receives n rows of
 * n_vocab floats (row i = distribution after token i); when logits_last_only is
 * true only the last row is computed and written (logits must hold n_vocab). */
lb_status lb_session_eval(lb_session *s, const lb_token *tokens, int n,
                          float *logits, bool logits_last_only);

/* ------------------------------------------------------------- sampling */

typedef struct lb_sampler_params {
    float temperature;     /* <= 0: greedy (argmax) */
    int top_k;             /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off */
    int repeat_last_n;     /* how many recent tokens the penalty looks at */
    uint64_t seed;         /* default 42 (reproducible); UINT64_MAX = seed from the clock */
} lb_sampler_params;

lb_sampler_params lb_sampler_default_params(void);

typedef struct lb_sampler lb_sampler;
lb_status lb_sampler_new(const lb_sampler_params *p, int n_vocab, lb_sampler **out);
void lb_sampler_free(lb_sampler *s);
/* Picks a token from one row of logits (which it may modify); remembers it for the repetition penalty.
 * NaN and -inf logits are never picked; +inf ones share all the probability.  Returns -1 when no
 * logit is usable (all NaN/-inf) or s/logits is NULL. */
lb_token lb_sampler_sample(lb_sampler *s, float *logits);
/* Tells the sampler about a token it did not pick (prompt tokens), for the repetition penalty. */
void lb_sampler_accept(lb_sampler *s, lb_token t);

/* ------------------------------------------------------------ generation */

/* Text delivered to the callback is always whole, valid UTF-8: bytes that may
 * be the start of a character completed by a later token, or the start of a
 * stop string, are held back and delivered with a later event; bytes that can
 * never form a valid character are delivered as U+FFFD (EF BF BD).  So a
 * piece may be empty (held back, or a control token) or carry the text of
 * several tokens.  When the generation ends with text still held back, cb is
 * called once more with token = -1 and that text (index = the number of
 * tokens generated). */
typedef struct lb_token_event {
    lb_token token;      /* -1 for the final flush event */
    const char *piece;   /* text released with this token (see above); not NUL-terminated */
    size_t piece_len;
    int index;           /* 0 for the first generated token */
    double latency_ms;   /* time since the previous token (or since the start, for the first) */
} lb_token_event;

/* Return false to stop the generation (lb_generate then returns LB_ERR_CANCELLED). */
typedef bool (*lb_token_cb)(const lb_token_event *ev, void *user);

typedef struct lb_gen_params {
    int max_tokens;            /* default 128 */
    bool add_special;          /* add BOS as the model asks; default true */
    bool stop_at_eog;          /* stop at end-of-generation tokens; default true */
    lb_sampler_params sampler;
    const char *const *stop;   /* n_stop strings: the generation ends when the text contains one; */
    int n_stop;                /* the stop string and what follows it are never delivered.  Empty strings are ignored. */
} lb_gen_params;

lb_gen_params lb_gen_default_params(void);

typedef struct lb_gen_stats {
    int n_prompt, n_gen;
    double prompt_ms, gen_ms;   /* wall time of prefill and of the decode loop */
    /* Why the generation ended, a static string: "stop" (end-of-generation
     * token or stop string), "length" (max_tokens), "cancelled" (cb returned
     * false), "context" (the context is full) or "error". */
    const char *finish_reason;
} lb_gen_stats;

/* Resets the session, evaluates the prompt in batches and generates up to
 * max_tokens, calling cb for every token.  stats may be NULL. */
lb_status lb_generate(lb_session *s, const char *prompt, const lb_gen_params *g,
                      lb_token_cb cb, void *user, lb_gen_stats *stats);

/* ------------------------------------------------------ batched decoding
 * One forward pass over several sessions of the same model: the next token
 * of each (decoding), or a chunk of a prompt (prefilling), so every weight
 * matrix is read once per step for all of them (the matrix products see all
 * the rows at once); attention runs per session on its own cache, at its
 * own positions.  A session's logits are bit-identical to what
 * lb_session_eval gives for the same tokens in one call. */

typedef struct lb_batch lb_batch;

typedef struct lb_batch_params {
    int max_sessions;   /* sessions in one lb_batch_eval; default 8 */
    int max_tokens;     /* tokens in one lb_batch_eval, all sessions together; 0 (default) = max_sessions */
    int n_threads;      /* threads of the batch's pool; 0 (default) = online CPUs */
} lb_batch_params;

lb_batch_params lb_batch_default_params(void);

/* A batch with its own scratch (sized once here for max_tokens rows) and
 * thread pool.  Attention uses all the pool's threads only in sessions
 * created with at least as many.  m must outlive the batch. */
lb_status lb_batch_new(lb_model *m, const lb_batch_params *p, lb_batch **out);
void lb_batch_free(lb_batch *b);
/* Why the last lb_batch_eval failed ("" if none). */
const char *lb_batch_last_error(const lb_batch *b);

/* Evaluates n_tokens[i] tokens in sessions[i] (i < n <= max_sessions) at
 * its next positions and appends them to its cache, like
 * lb_session_eval(sessions[i], toks_i, n_tokens[i], row_i, true).  tokens
 * holds sessions[0]'s tokens, then sessions[1]'s, ...; n_tokens NULL means
 * one token each.  logits: if non-NULL, [n][n_vocab], row i the
 * distribution after sessions[i]'s last token.  Errors: LB_ERR_INVALID_ARG
 * (n or a count out of range, more than max_tokens in all, a NULL or
 * repeated session, a session of another model), LB_ERR_RANGE (a token
 * outside the vocabulary, or tokens that do not fit a session's context).
 * On error no session's position advances. */
lb_status lb_batch_eval(lb_batch *b, lb_session *const *sessions, int n, const lb_token *tokens, const int *n_tokens,
                        float *logits);

#ifdef __cplusplus
}
#endif
#endif /* LOWBIT_H */
