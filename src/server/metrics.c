/* Prometheus metrics for `lowbit serve`: one mutex, fixed-size tables, no allocation on the hot path. */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_BUCKETS 12

typedef struct histogram {
    const double *bounds;          /* [N_BUCKETS] upper bounds in seconds; +Inf is implicit */
    uint64_t counts[N_BUCKETS + 1];
    uint64_t n;
    double sum;
} histogram;

static const double ttft_bounds[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double token_bounds[N_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

static const char *const route_names[LB_ROUTE_COUNT] = {
    "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "static", "other"};

struct lb_srv_metrics {
    pthread_mutex_t mu;
    uint64_t requests[LB_ROUTE_COUNT][500];   /* [route][status - 100] */
    uint64_t prompt_tokens, gen_tokens, cached_tokens;
    int active;
    histogram ttft, token;
    /* batched steps, [0] decode rows only, [1] with prompt rows: where the decode loop's time goes */
    uint64_t steps[2], rows[2];   /* rows: [0] decode, [1] prompt */
    double forward_s[2], deliver_s;
};

lb_srv_metrics *lb_srv_metrics_new(void)
{
    lb_srv_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->mu, NULL);
    m->ttft.bounds = ttft_bounds;
    m->token.bounds = token_bounds;
    return m;
}

void lb_srv_metrics_free(lb_srv_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void lb_srv_metrics_request(lb_srv_metrics *m, lb_srv_route route, int status)
{
    if (route < 0 || route >= LB_ROUTE_COUNT || status < 100 || status > 599)
        return;
    pthread_mutex_lock(&m->mu);
    m->requests[route][status - 100]++;
    pthread_mutex_unlock(&m->mu);
}

void lb_srv_metrics_tokens(lb_srv_metrics *m, int n_prompt, int n_cached, int n_gen)
{
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += (uint64_t)(n_prompt > 0 ? n_prompt : 0);
    m->cached_tokens += (uint64_t)(n_cached > 0 ? n_cached : 0);
    m->gen_tokens += (uint64_t)(n_gen > 0 ? n_gen : 0);
    pthread_mutex_unlock(&m->mu);
}

void lb_srv_metrics_active(lb_srv_metrics *m, int delta)
{
    pthread_mutex_lock(&m->mu);
    m->active += delta;
    pthread_mutex_unlock(&m->mu);
}

static void observe(lb_srv_metrics *m, histogram *h, double v)
{
    int b = 0;
    while (b < N_BUCKETS && v > h->bounds[b])
        b++;
    pthread_mutex_lock(&m->mu);
    h->counts[b]++;
    h->n++;
    h->sum += v;
    pthread_mutex_unlock(&m->mu);
}

void lb_srv_metrics_ttft(lb_srv_metrics *m, double seconds) { observe(m, &m->ttft, seconds); }

void lb_srv_metrics_step(lb_srv_metrics *m, int decode_rows, int prompt_rows, double forward_s, double deliver_s)
{
    const int k = prompt_rows > 0;
    pthread_mutex_lock(&m->mu);
    m->steps[k]++;
    m->rows[0] += (uint64_t)(decode_rows > 0 ? decode_rows : 0);
    m->rows[1] += (uint64_t)(prompt_rows > 0 ? prompt_rows : 0);
    m->forward_s[k] += forward_s;
    m->deliver_s += deliver_s;
    pthread_mutex_unlock(&m->mu);
}
void lb_srv_metrics_token_latency(lb_srv_metrics *m, double seconds) { observe(m, &m->token, seconds); }

/* A growing output buffer; on allocation failure it stays failed and render returns NULL. */
typedef struct out_buf {
    char *p;
    size_t n, cap;
    int failed;
} out_buf;

static void outf(out_buf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(out_buf *o, const char *fmt, ...)
{
    if (o->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)k < o->cap - o->n) {
            o->n += (size_t)k;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)k;
        char *np = realloc(o->p, cap);
        if (!np) {
            o->failed = 1;
            return;
        }
        o->p = np;
        o->cap = cap;
    }
}

static void render_hist(out_buf *o, const char *name, const char *help, const histogram *h)
{
    outf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int b = 0; b < N_BUCKETS; b++) {
        cum += h->counts[b];
        outf(o, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[b], (unsigned long long)cum);
    }
    cum += h->counts[N_BUCKETS];
    outf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)cum, name, h->sum,
         name, (unsigned long long)h->n);
}

char *lb_srv_metrics_render(lb_srv_metrics *m, int queue_depth, int queue_cap, int slots_busy, int slots,
                            int store_entries, size_t store_bytes)
{
    out_buf o = {malloc(4096), 0, 4096, 0};
    if (!o.p)
        return NULL;
    pthread_mutex_lock(&m->mu);
    outf(&o, "# HELP lowbit_requests_total HTTP requests by route and status.\n# TYPE lowbit_requests_total counter\n");
    for (int r = 0; r < LB_ROUTE_COUNT; r++)
        for (int s = 0; s < 500; s++)
            if (m->requests[r][s])
                outf(&o, "lowbit_requests_total{route=\"%s\",status=\"%d\"} %llu\n", route_names[r], s + 100,
                     (unsigned long long)m->requests[r][s]);
    outf(&o, "# HELP lowbit_prompt_tokens_total Prompt tokens of the requests served (cached ones included).\n# TYPE lowbit_prompt_tokens_total counter\n"
             "lowbit_prompt_tokens_total %llu\n", (unsigned long long)m->prompt_tokens);
    outf(&o, "# HELP lowbit_prompt_tokens_cached_total Prompt tokens not evaluated: their keys and values were reused "
             "(the prompt cache).\n# TYPE lowbit_prompt_tokens_cached_total counter\nlowbit_prompt_tokens_cached_total %llu\n",
         (unsigned long long)m->cached_tokens);
    outf(&o, "# HELP lowbit_tokens_generated_total Tokens generated.\n# TYPE lowbit_tokens_generated_total counter\n"
             "lowbit_tokens_generated_total %llu\n", (unsigned long long)m->gen_tokens);
    outf(&o, "# HELP lowbit_active_requests Generation requests being served (queued or running).\n"
             "# TYPE lowbit_active_requests gauge\nlowbit_active_requests %d\n", m->active);
    outf(&o, "# HELP lowbit_queue_depth Requests waiting for a slot.\n# TYPE lowbit_queue_depth gauge\n"
             "lowbit_queue_depth %d\n", queue_depth);
    outf(&o, "# HELP lowbit_queue_capacity Requests that may wait before 429.\n# TYPE lowbit_queue_capacity gauge\n"
             "lowbit_queue_capacity %d\n", queue_cap);
    outf(&o, "# HELP lowbit_slots_busy Slots generating now.\n# TYPE lowbit_slots_busy gauge\nlowbit_slots_busy %d\n",
         slots_busy);
    outf(&o, "# HELP lowbit_slots Inference slots (--parallel).\n# TYPE lowbit_slots gauge\nlowbit_slots %d\n", slots);
    outf(&o, "# HELP lowbit_prompt_store_entries Token sequences the prompt store keeps.\n"
             "# TYPE lowbit_prompt_store_entries gauge\nlowbit_prompt_store_entries %d\n", store_entries);
    outf(&o, "# HELP lowbit_prompt_store_bytes Bytes of keys and values the prompt store keeps (--prompt-store).\n"
             "# TYPE lowbit_prompt_store_bytes gauge\nlowbit_prompt_store_bytes %zu\n", store_bytes);
    static const char *const step_kind[2] = {"decode", "prompt"};
    outf(&o, "# HELP lowbit_batch_steps_total Batched forward passes: decode rows only, or with prompt rows.\n"
             "# TYPE lowbit_batch_steps_total counter\n");
    for (int k = 0; k < 2; k++)
        outf(&o, "lowbit_batch_steps_total{step=\"%s\"} %llu\n", step_kind[k], (unsigned long long)m->steps[k]);
    outf(&o, "# HELP lowbit_batch_rows_total Rows of the batched steps: one per generating stream, or prompt tokens.\n"
             "# TYPE lowbit_batch_rows_total counter\n");
    for (int k = 0; k < 2; k++)
        outf(&o, "lowbit_batch_rows_total{kind=\"%s\"} %llu\n", step_kind[k], (unsigned long long)m->rows[k]);
    outf(&o, "# HELP lowbit_batch_forward_seconds_total Time in the forward passes of the batched steps.\n"
             "# TYPE lowbit_batch_forward_seconds_total counter\n");
    for (int k = 0; k < 2; k++)
        outf(&o, "lowbit_batch_forward_seconds_total{step=\"%s\"} %.6f\n", step_kind[k], m->forward_s[k]);
    outf(&o, "# HELP lowbit_batch_deliver_seconds_total Time sampling the steps' tokens and handing them to the "
             "connections.\n# TYPE lowbit_batch_deliver_seconds_total counter\nlowbit_batch_deliver_seconds_total %.6f\n",
         m->deliver_s);
    render_hist(&o, "lowbit_time_to_first_token_seconds", "From request arrival to the first generated token.", &m->ttft);
    render_hist(&o, "lowbit_token_latency_seconds", "Time between consecutive generated tokens.", &m->token);
    pthread_mutex_unlock(&m->mu);
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    return o.p;
}
