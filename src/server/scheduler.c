/* The decode loop: every running generation stepped together in one batched
 * forward pass, fed from a bounded FIFO of jobs (see scheduler.h). */
#include "scheduler.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "generate/batch.h"
#include "generate/gen_step.h"
#include "generate/session.h"
#include "prompt_store.h"

/* One generation's place in the batch: its session (KV cache) is reused by
 * every job that runs in the slot. */
typedef struct slot {
    lb_srv_sched *sched;
    lb_session *session;
    lb_srv_job *job;           /* NULL when the slot is free */
    lb__gen gen;               /* the job's generation state, valid while job != NULL */
    uint64_t admitted;         /* admission order: older prompts are prefilled first */
    int n_step;                /* tokens this slot has in the current step */
    lb_token *hist;            /* [session n_ctx] the tokens at positions 0..n_hist-1 of the session's cache, */
    int n_hist;                /* kept across jobs for the prompt cache (NULL when it is off) */
    const char *fail_msg;      /* why the job failed when its session does not say (a batch step failed) */
} slot;

struct lb_srv_sched {
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* a job was queued, or stopping */
    lb_srv_job *head, *tail;       /* FIFO of [n_queued] waiting jobs */
    int n_queued, queue_cap, n_busy, n_slots;
    atomic_bool stopping;          /* read by the decode loop's callbacks without the lock */
    slot *slots;                   /* [n_slots] */
    lb_batch *batch;               /* steps up to n_slots sessions together */
    int n_vocab, max_step;         /* max_step: tokens in one step (decode rows plus prompt chunks) */
    uint64_t n_admitted;
    float *logits;                 /* [n_slots][n_vocab] one row per session of the current step */
    lb_session **step_sessions;    /* [n_slots] the sessions of the current step */
    int *step_counts;              /* [n_slots] their numbers of tokens */
    lb_token *step_tokens;         /* [max_step] their tokens, session after session */
    slot **step_slots;             /* [n_slots] whose they are */
    pthread_t thread;              /* the decode loop */
    bool started;
    bool prompt_cache;             /* a new prompt starts from the longest prefix any slot's cache holds */
    lb_prompt_store *store;        /* what slots' caches held before other requests took them, or NULL */
    atomic_int store_entries;      /* its usage, published by the decode thread for /metrics */
    atomic_size_t store_bytes;
    lb_srv_metrics *metrics;
};

lb_srv_job *lb_srv_job_new(void)
{
    lb_srv_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    atomic_init(&j->cancel, false);
    j->gen = lb_gen_default_params();
    return j;
}

void lb_srv_job_free(lb_srv_job *j)
{
    if (!j)
        return;
    for (int i = 0; i < 8; i++)
        free(j->stop_strs[i]);
    free(j->prompt);
    free(j->tokens);
    free(j->text);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

lb_status lb_srv_job_tokenize(lb_srv_job *j, const lb_model *m)
{
    const size_t len = strlen(j->prompt);
    size_t n = 0;
    free(j->tokens);
    j->n_tokens_prompt = 0;
    /* a token per byte at most, and the special ones added around them */
    if (!(j->tokens = malloc((len + 8) * sizeof *j->tokens)))
        return LB_ERR_NOMEM;
    lb_status st = lb_tokenize(m, j->prompt, len, j->gen.add_special, true, j->tokens, len + 8, &n);
    if (!st)
        j->n_tokens_prompt = (int)n;
    return st;
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

lb_job_state lb_srv_job_take(lb_srv_job *j, int timeout_ms, char **buf, size_t *n, size_t *cap)
{
    struct timespec until;
    deadline_in(&until, timeout_ms);
    pthread_mutex_lock(&j->mu);
    while (j->n_text == 0 && j->state != LB_JOB_DONE)
        if (pthread_cond_timedwait(&j->cv, &j->mu, &until) == ETIMEDOUT)
            break;
    *n = 0;
    if (j->n_text) {
        /* Swap buffers rather than copy: the decode loop appends to the one it gets back. */
        char *t = *buf;
        size_t c = *cap;
        *buf = j->text;
        *cap = j->cap_text;
        *n = j->n_text;
        j->text = t;
        j->cap_text = c;
        j->n_text = 0;
        j->taken_ms = j->t_text_ms;
        j->taken_tokens = j->n_tokens;
    }
    lb_job_state st = j->state;
    pthread_mutex_unlock(&j->mu);
    return st;
}

lb_job_state lb_srv_job_wait(lb_srv_job *j, int timeout_ms)
{
    struct timespec until;
    deadline_in(&until, timeout_ms);
    pthread_mutex_lock(&j->mu);
    while (j->state != LB_JOB_DONE)
        if (pthread_cond_timedwait(&j->cv, &j->mu, &until) == ETIMEDOUT)
            break;
    lb_job_state st = j->state;
    pthread_mutex_unlock(&j->mu);
    return st;
}

static bool on_token(const lb_token_event *ev, void *user)
{
    slot *sl = user;
    lb_srv_job *j = sl->job;
    bool ok = true;
    pthread_mutex_lock(&j->mu);
    if (ev->piece_len) {
        size_t need = j->n_text + ev->piece_len;
        if (need > j->cap_text) {
            size_t cap = need * 2 < 256 ? 256 : need * 2;
            char *nt = realloc(j->text, cap);
            if (nt) {
                j->text = nt;
                j->cap_text = cap;
            } else {
                ok = false;   /* out of memory: end this generation rather than lose text silently */
            }
        }
        if (ok) {
            if (!j->n_text)
                j->t_text_ms = lb_time_ms();
            memcpy(j->text + j->n_text, ev->piece, ev->piece_len);
            j->n_text += ev->piece_len;
        }
    }
    if (ev->token >= 0)
        j->n_tokens++;
    pthread_mutex_unlock(&j->mu);
    /* After the unlock: woken under the lock, the HTTP thread at once blocked again on the mutex and
     * had to be woken a second time.  The job outlives this call (only DONE lets the HTTP thread free it). */
    pthread_cond_broadcast(&j->cv);
    if (ev->token >= 0) {
        if (ev->index == 0)
            lb_srv_metrics_ttft(sl->sched->metrics, (lb_time_ms() - j->t_arrival_ms) / 1000.0);
        else
            lb_srv_metrics_token_latency(sl->sched->metrics, ev->latency_ms / 1000.0);
    }
    if (j->on_event && !j->on_event(j->on_event_user, ev))
        ok = false;
    return ok && !atomic_load(&j->cancel) && !sl->sched->stopping;
}

/* Publishes the end of the slot's job and frees the slot. */
static void complete(lb_srv_sched *s, slot *sl)
{
    lb_srv_job *j = sl->job;
    lb_gen_stats stats = {0};
    lb_status rc = lb__gen_end(&sl->gen, &stats);
    if (!stats.finish_reason)
        stats.finish_reason = rc == LB_ERR_CANCELLED ? "cancelled" : "error";
    lb_srv_metrics_tokens(s->metrics, stats.n_prompt, j->n_cached, stats.n_gen);
    sl->job = NULL;

    pthread_mutex_lock(&s->mu);
    s->n_busy--;
    pthread_mutex_unlock(&s->mu);
    /* After DONE is published the HTTP thread may free the job: touch nothing of it past the unlock. */
    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->stats = stats;
    if (rc && rc != LB_ERR_CANCELLED)
        snprintf(j->err, sizeof j->err, "%s", sl->fail_msg ? sl->fail_msg : lb_session_last_error(sl->session));
    j->state = LB_JOB_DONE;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Tokens of prompts evaluated in one step, over all slots: a long prompt is
 * cut into chunks so the running streams wait at most one such step. */
#define PREFILL_PER_STEP 128

/* The prompt cache: the new prompt of sl (its generation just begun, its
 * session emptied; held: the positions its cache had before) starts from the
 * longest prefix of it that a slot's cache holds, its own or another's (a
 * running one's first positions never change while it appends), or the
 * prompt store, copied over.  What sl's cache held and would lose goes to
 * the store first.  The keys and values of a position depend only on the
 * tokens up to it, and a row's computation does not depend on the batch
 * around it, so the copy is what evaluating those tokens again would store. */
static void reuse_prefix(lb_srv_sched *s, slot *sl, int held)
{
    const lb__gen *g = &sl->gen;
    const int want = g->n_prompt - 1;   /* the last prompt token is evaluated: its row gives the first sample */
    const int mine = held < sl->n_hist ? held : sl->n_hist;
    sl->n_hist = mine;
    sl->session->n_past = mine;   /* lb__gen_begin emptied it; the positions are still there */
    slot *best = NULL;
    int n_best = 0;
    for (int i = 0; i < s->n_slots && want > 0; i++) {
        slot *c = &s->slots[i];
        const int k = lb_tokens_common(c->hist, c->n_hist, g->prompt, want);
        if (k > n_best || (k == n_best && k && c == sl)) {   /* no copy when this slot's own cache does as well */
            best = c;
            n_best = k;
        }
    }
    lb_prompt_entry *e = NULL;
    int n_store = want > 0 ? lb_prompt_store_match(s->store, g->prompt, want, &e) : 0;
    bool from_store = n_store > n_best;
    /* sl keeps its own positions only when it is the source and they are all in the prefix */
    if (s->store && mine > 0 && !(best == sl && !from_store && n_best == mine)) {
        lb_prompt_store_put(s->store, sl->session, sl->hist, mine);
        int entries;
        size_t bytes;
        lb_prompt_store_usage(s->store, &entries, &bytes);
        atomic_store(&s->store_entries, entries);
        atomic_store(&s->store_bytes, bytes);
        /* the put may have dropped e (superseded by sl's tokens, or the least recently used): match again */
        if (from_store) {
            n_store = lb_prompt_store_match(s->store, g->prompt, want, &e);
            from_store = n_store > n_best;
        }
    }
    const int n = from_store ? n_store : n_best;
    int got = 0;
    if (from_store)
        got = lb_prompt_store_load(s->store, e, sl->session, n);
    else if (best)
        got = lb__session_share_prefix(sl->session, best->session, n);
    else
        sl->session->n_past = 0;
    sl->n_hist = got;
    if (!got)
        return;
    if (from_store)
        memcpy(sl->hist, g->prompt, (size_t)got * sizeof *sl->hist);
    else if (best != sl)
        memcpy(sl->hist, best->hist, (size_t)got * sizeof *sl->hist);
    lb__gen_prompt_cached(&sl->gen, got);
    sl->job->n_cached = got;
}

/* Sets up a job that has just been given a slot; its prompt is evaluated by
 * the next steps. */
static void start(lb_srv_sched *s, slot *sl)
{
    lb_srv_job *j = sl->job;
    pthread_mutex_lock(&j->mu);
    j->state = LB_JOB_RUNNING;
    pthread_mutex_unlock(&j->mu);
    sl->fail_msg = NULL;
    sl->admitted = s->n_admitted++;
    const int held = lb_session_n_past(sl->session);
    if (j->tokens)
        lb__gen_begin_tokens(&sl->gen, sl->session, j->tokens, j->n_tokens_prompt, &j->gen, on_token, sl);
    else
        lb__gen_begin(&sl->gen, sl->session, j->prompt, &j->gen, on_token, sl);
    if (!sl->gen.done && s->prompt_cache)
        reuse_prefix(s, sl, held);
    else
        sl->n_hist = 0;
    if (sl->gen.done)
        complete(s, sl);
}

static bool prefilling(const slot *sl) { return sl->gen.n_fed < sl->gen.n_prompt; }

/* Adds n tokens of sl's to the step being assembled. */
static void add_to_step(lb_srv_sched *s, slot *sl, const lb_token *toks, int n, int *n_seq, int *n_tok)
{
    memcpy(s->step_tokens + *n_tok, toks, (size_t)n * sizeof *toks);
    s->step_sessions[*n_seq] = sl->session;
    s->step_counts[*n_seq] = n;
    s->step_slots[(*n_seq)++] = sl;
    sl->n_step = n;
    *n_tok += n;
}

/* The end of a step: each generation samples its token from its row of
 * logits and delivers it.  The generations are shared out over the
 * batch's threads: a delivery wakes the HTTP thread that writes the token,
 * and on two cores that wake took about 30 us of the decode thread's time
 * (8 streams: a tenth of the step), with the other thread idle. */
typedef struct deliver_job {
    lb_srv_sched *s;
    int n_seq;
    lb_status st;      /* the step's lb_batch_eval */
    atomic_int next;   /* the next step_slots index to take */
} deliver_job;

static void deliver_part(void *ctx, int ith, int nth)
{
    deliver_job *d = ctx;
    lb_srv_sched *s = d->s;
    (void)ith;
    (void)nth;
    for (int k; (k = atomic_fetch_add_explicit(&d->next, 1, memory_order_relaxed)) < d->n_seq;) {
        slot *sl = s->step_slots[k];
        float *row = s->logits + (size_t)k * s->n_vocab;
        if (d->st)
            sl->fail_msg = lb_batch_last_error(s->batch);
        if (prefilling(sl))
            lb__gen_prompt_fed(&sl->gen, sl->n_step, d->st, row);
        else
            lb__gen_step(&sl->gen, d->st, row);
        if (sl->gen.done)
            complete(s, sl);
    }
}

/* One step: the next token of every decoding generation and chunks of the
 * prompts still being prefilled go through one batched forward pass; then
 * each generation samples and delivers its token. */
static void step(lb_srv_sched *s)
{
    int n_seq = 0, n_tok = 0, n_pre = 0, n_decode = 0;
    slot *pre[64];   /* prefilling slots; n_slots <= 64 is checked in lb_srv_sched_new */
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (!sl->job)
            continue;
        /* A client that left stops costing rows now rather than at its next token. */
        if (atomic_load(&sl->job->cancel) || atomic_load(&s->stopping)) {
            lb__gen_step(&sl->gen, LB_ERR_CANCELLED, NULL);
            complete(s, sl);
            continue;
        }
        if (!prefilling(sl)) {
            add_to_step(s, sl, &sl->gen.next, 1, &n_seq, &n_tok);
            n_decode++;
            continue;
        }
        int k = n_pre++;   /* insertion by admission order */
        for (; k > 0 && pre[k - 1]->admitted > sl->admitted; k--)
            pre[k] = pre[k - 1];
        pre[k] = sl;
    }
    int budget = PREFILL_PER_STEP;
    for (int k = 0; k < n_pre && budget > 0; k++) {
        lb__gen *g = &pre[k]->gen;
        int n = g->n_prompt - g->n_fed < budget ? g->n_prompt - g->n_fed : budget;
        add_to_step(s, pre[k], g->prompt + g->n_fed, n, &n_seq, &n_tok);
        budget -= n;
    }
    if (!n_seq)
        return;
    deliver_job d = {.s = s, .n_seq = n_seq};
    const double t0 = lb_time_ms();
    d.st = lb_batch_eval(s->batch, s->step_sessions, n_seq, s->step_tokens, s->step_counts, s->logits);
    const double t1 = lb_time_ms();
    if (s->prompt_cache)
        for (int k = 0, t = 0; k < n_seq; t += s->step_counts[k++]) {
            slot *sl = s->step_slots[k];
            /* a failed step leaves the caches' contents unknown */
            if (d.st || sl->n_hist + sl->n_step != lb_session_n_past(sl->session)) {
                sl->n_hist = 0;
                continue;
            }
            memcpy(sl->hist + sl->n_hist, s->step_tokens + t, (size_t)sl->n_step * sizeof *sl->hist);
            sl->n_hist += sl->n_step;
        }
    atomic_init(&d.next, 0);
    lb__batch_run(s->batch, deliver_part, &d);
    lb_srv_metrics_step(s->metrics, n_decode, n_tok - n_decode, (t1 - t0) / 1000.0, (lb_time_ms() - t1) / 1000.0);
    lb__batch_nap(s->batch);
}

/* Tokens at the start of j's prompt that sl's cache holds (0 without the prompt cache). */
static int common_prefix(const lb_srv_sched *s, const slot *sl, const lb_srv_job *j)
{
    return s->prompt_cache && j->tokens ? lb_tokens_common(sl->hist, sl->n_hist, j->tokens, j->n_tokens_prompt) : 0;
}

/* A shared prefix worth a slot: half the prompt, or a long one (a system
 * prompt).  A few tokens (BOS, a common first word) are not: the slot idle
 * longest is the better choice then. */
static int worth(int k, int n_prompt) { return 2 * k >= n_prompt || k >= 64 ? k : 0; }

/* The free slot for j: with match, the one whose cache holds the longest
 * prefix of j's prompt worth it (NULL if none does); without, the one idle
 * longest, so that every cache is overwritten as late as possible. */
static slot *free_slot_for(lb_srv_sched *s, const lb_srv_job *j, bool match)
{
    slot *best = NULL;
    int n_best = 0;
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->job)
            continue;
        if (match) {
            const int k = worth(common_prefix(s, sl, j), j->n_tokens_prompt);
            if (k > n_best) {
                best = sl;
                n_best = k;
            }
        } else if (!best || sl->admitted < best->admitted) {
            best = sl;
        }
    }
    return best;
}

/* New requests join between steps: the oldest queued jobs take the free
 * slots, first those whose prompts begin with what a free slot's cache
 * holds, then the others the slots idle longest (taking the LRU slot first
 * could overwrite the prefix a later job of the same round wanted).  Called
 * with s->mu held; returns the number of jobs started in step_slots. */
static int admit(lb_srv_sched *s)
{
    int n_free = 0, n_new = 0;
    for (int i = 0; i < s->n_slots; i++)
        n_free += !s->slots[i].job;
    lb_srv_job *jobs[64];   /* n_slots <= 64 */
    for (; s->head && n_new < n_free; n_new++) {
        lb_srv_job *j = s->head;
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        s->n_queued--;
        s->n_busy++;
        jobs[n_new] = j;
        s->step_slots[n_new] = NULL;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < n_new; k++) {
            slot *sl = s->step_slots[k] ? NULL : free_slot_for(s, jobs[k], pass == 0);
            if (sl) {
                sl->job = jobs[k];
                s->step_slots[k] = sl;
            }
        }
    return n_new;
}

static void *decode_loop(void *arg)
{
    lb_srv_sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->n_busy && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        const int n_new = admit(s);
        pthread_mutex_unlock(&s->mu);
        for (int k = 0; k < n_new; k++)
            start(s, s->step_slots[k]);
        step(s);
    }
    /* Stopping: whatever still runs ends as cancelled. */
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].job) {
            lb__gen_step(&s->slots[i].gen, LB_ERR_CANCELLED, NULL);
            complete(s, &s->slots[i]);
        }
    return NULL;
}

lb_srv_sched *lb_srv_sched_new(lb_model *m, const lb_session_params *sp, int n_slots, int queue_cap,
                               bool prompt_cache, size_t store_bytes, lb_srv_metrics *metrics, char *err,
                               size_t err_cap)
{
    if (n_slots < 1)
        n_slots = 1;
    if (n_slots > 64) {
        snprintf(err, err_cap, "at most 64 slots (got %d)", n_slots);
        return NULL;
    }
    lb_model_info info;
    lb_model_get_info(m, &info);
    lb_srv_sched *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_cap, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    atomic_init(&s->stopping, false);
    s->queue_cap = queue_cap;
    s->n_slots = n_slots;
    s->metrics = metrics;
    s->n_vocab = info.n_vocab;
    s->slots = calloc((size_t)n_slots, sizeof *s->slots);
    s->logits = malloc((size_t)n_slots * (size_t)info.n_vocab * sizeof *s->logits);
    s->step_sessions = calloc((size_t)n_slots, sizeof *s->step_sessions);
    s->max_step = n_slots + PREFILL_PER_STEP;
    s->step_counts = calloc((size_t)n_slots, sizeof *s->step_counts);
    s->step_tokens = calloc((size_t)s->max_step, sizeof *s->step_tokens);
    s->step_slots = calloc((size_t)n_slots, sizeof *s->step_slots);
    if (!s->slots || !s->logits || !s->step_sessions || !s->step_tokens || !s->step_slots || !s->step_counts) {
        snprintf(err, err_cap, "out of memory");
        lb_srv_sched_free(s);
        return NULL;
    }
    /* Every session gets all the threads: the batch's attention can use them
     * only in sessions made with as many. */
    lb_batch_params bp = lb_batch_default_params();
    bp.max_sessions = n_slots;
    bp.max_tokens = s->max_step;
    bp.n_threads = sp->n_threads;
    lb_status st = lb_batch_new(m, &bp, &s->batch);
    if (st) {
        snprintf(err, err_cap, "cannot create the batch of %d slots: %s: %s", n_slots, lb_status_str(st),
                 lb_model_last_error(m));
        lb_srv_sched_free(s);
        return NULL;
    }
    for (int i = 0; i < n_slots; i++) {
        s->slots[i].sched = s;
        st = lb_session_new(m, sp, &s->slots[i].session);
        if (st) {
            snprintf(err, err_cap, "cannot create the session of slot %d: %s: %s", i, lb_status_str(st),
                     lb_model_last_error(m));
            lb_srv_sched_free(s);
            return NULL;
        }
    }
    /* Only caches whose positions are plain rows can share a prefix (lb_kv_cache_prefix_shareable). */
    s->prompt_cache = prompt_cache && lb_kv_cache_prefix_shareable(s->slots[0].session->kv);
    for (int i = 0; i < n_slots && s->prompt_cache; i++)
        if (!(s->slots[i].hist = malloc((size_t)s->slots[i].session->n_ctx * sizeof *s->slots[i].hist))) {
            snprintf(err, err_cap, "out of memory");
            lb_srv_sched_free(s);
            return NULL;
        }
    if (s->prompt_cache && store_bytes && !(s->store = lb_prompt_store_new(store_bytes))) {
        snprintf(err, err_cap, "out of memory");
        lb_srv_sched_free(s);
        return NULL;
    }
    if (pthread_create(&s->thread, NULL, decode_loop, s)) {
        snprintf(err, err_cap, "cannot start the decode thread");
        lb_srv_sched_free(s);
        return NULL;
    }
    s->started = true;
    return s;
}

void lb_srv_sched_free(lb_srv_sched *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->started)
        pthread_join(s->thread, NULL);
    for (int i = 0; s->slots && i < s->n_slots; i++) {
        lb_session_free(s->slots[i].session);
        free(s->slots[i].hist);
    }
    /* Jobs still queued belong to HTTP threads, which see them never start and time out; none should be left
     * because the HTTP server is stopped first. */
    lb_batch_free(s->batch);
    lb_prompt_store_free(s->store);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->slots);
    free(s->logits);
    free(s->step_sessions);
    free(s->step_tokens);
    free(s->step_counts);
    free(s->step_slots);
    free(s);
}

bool lb_srv_sched_submit(lb_srv_sched *s, lb_srv_job *j)
{
    pthread_mutex_lock(&s->mu);
    /* queue_cap counts waiting jobs only: a free slot takes a job before the next step, so it does not use up a place. */
    bool ok = !s->stopping && s->n_queued + s->n_busy < s->queue_cap + s->n_slots;
    if (ok) {
        j->state = LB_JOB_QUEUED;
        j->next = NULL;
        if (s->tail)
            s->tail->next = j;
        else
            s->head = j;
        s->tail = j;
        s->n_queued++;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

bool lb_srv_sched_withdraw(lb_srv_sched *s, lb_srv_job *j)
{
    bool found = false;
    pthread_mutex_lock(&s->mu);
    for (lb_srv_job **pp = &s->head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            if (s->tail == j)
                s->tail = prev;
            s->n_queued--;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

void lb_srv_job_abandon(lb_srv_sched *s, lb_srv_job *j)
{
    atomic_store(&j->cancel, true);
    if (lb_srv_sched_withdraw(s, j))
        return;
    pthread_mutex_lock(&j->mu);
    while (j->state != LB_JOB_DONE)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
}

bool lb_srv_sched_prompt_cache(const lb_srv_sched *s) { return s->prompt_cache; }

void lb_srv_sched_store_usage(lb_srv_sched *s, int *entries, size_t *bytes)
{
    *entries = atomic_load(&s->store_entries);
    *bytes = atomic_load(&s->store_bytes);
}

void lb_srv_sched_load(lb_srv_sched *s, int *queued, int *queue_cap, int *busy, int *slots)
{
    pthread_mutex_lock(&s->mu);
    *queued = s->n_queued;
    *queue_cap = s->queue_cap;
    *busy = s->n_busy;
    *slots = s->n_slots;
    pthread_mutex_unlock(&s->mu);
}
