/* Worker threads, one session each, fed from a bounded FIFO of jobs (see scheduler.h). */
#include "scheduler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"

typedef struct slot {
    lb_srv_sched *sched;
    lb_session *session;
    pthread_t thread;
    bool started;
} slot;

struct lb_srv_sched {
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* a job was queued, or stopping */
    lb_srv_job *head, *tail;       /* FIFO of [n_queued] waiting jobs */
    int n_queued, queue_cap, n_busy, n_slots;
    atomic_bool stopping;          /* read by workers' callbacks without the lock */
    slot *slots;                   /* [n_slots] */
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
    free(j->text);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
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
        /* Swap buffers rather than copy: the worker appends to the one it gets back. */
        char *t = *buf;
        size_t c = *cap;
        *buf = j->text;
        *cap = j->cap_text;
        *n = j->n_text;
        j->text = t;
        j->cap_text = c;
        j->n_text = 0;
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

typedef struct gen_ctx {
    lb_srv_sched *sched;
    lb_srv_job *job;
} gen_ctx;

static bool on_token(const lb_token_event *ev, void *user)
{
    gen_ctx *g = user;
    lb_srv_job *j = g->job;
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
            memcpy(j->text + j->n_text, ev->piece, ev->piece_len);
            j->n_text += ev->piece_len;
        }
    }
    if (ev->token >= 0)
        j->n_tokens++;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (ev->token >= 0) {
        if (ev->index == 0)
            lb_srv_metrics_ttft(g->sched->metrics, (lb_time_ms() - j->t_arrival_ms) / 1000.0);
        else
            lb_srv_metrics_token_latency(g->sched->metrics, ev->latency_ms / 1000.0);
    }
    return ok && !atomic_load(&j->cancel) && !g->sched->stopping;
}

static void *worker(void *arg)
{
    slot *sl = arg;
    lb_srv_sched *s = sl->sched;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        lb_srv_job *j = s->head;
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        s->n_queued--;
        s->n_busy++;
        pthread_mutex_unlock(&s->mu);

        pthread_mutex_lock(&j->mu);
        j->state = LB_JOB_RUNNING;
        pthread_mutex_unlock(&j->mu);
        gen_ctx g = {s, j};
        lb_gen_stats stats = {0};
        lb_status rc = atomic_load(&j->cancel) ? LB_ERR_CANCELLED
                                               : lb_generate(sl->session, j->prompt, &j->gen, on_token, &g, &stats);
        if (!stats.finish_reason)
            stats.finish_reason = rc == LB_ERR_CANCELLED ? "cancelled" : "error";
        lb_srv_metrics_tokens(s->metrics, stats.n_prompt, stats.n_gen);

        pthread_mutex_lock(&s->mu);
        s->n_busy--;
        pthread_mutex_unlock(&s->mu);
        /* After DONE is published the HTTP thread may free the job: touch nothing of it past the unlock. */
        pthread_mutex_lock(&j->mu);
        j->rc = rc;
        j->stats = stats;
        if (rc && rc != LB_ERR_CANCELLED)
            snprintf(j->err, sizeof j->err, "%s", lb_session_last_error(sl->session));
        j->state = LB_JOB_DONE;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
}

lb_srv_sched *lb_srv_sched_new(lb_model *m, const lb_session_params *sp, int n_slots, int queue_cap,
                               lb_srv_metrics *metrics, char *err, size_t err_cap)
{
    lb_srv_sched *s = calloc(1, sizeof *s);
    slot *slots = calloc((size_t)(n_slots > 0 ? n_slots : 1), sizeof *slots);
    if (!s || !slots) {
        free(s);
        free(slots);
        snprintf(err, err_cap, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    atomic_init(&s->stopping, false);
    s->queue_cap = queue_cap;
    s->n_slots = n_slots;
    s->slots = slots;
    s->metrics = metrics;
    lb_session_params p = *sp;
    if (p.n_threads > 0 && n_slots > 1)
        p.n_threads = p.n_threads / n_slots > 0 ? p.n_threads / n_slots : 1;
    for (int i = 0; i < n_slots; i++) {
        slots[i].sched = s;
        lb_status st = lb_session_new(m, &p, &slots[i].session);
        if (st) {
            snprintf(err, err_cap, "cannot create the session of slot %d: %s: %s", i, lb_status_str(st),
                     lb_model_last_error(m));
            lb_srv_sched_free(s);
            return NULL;
        }
        if (pthread_create(&slots[i].thread, NULL, worker, &slots[i])) {
            snprintf(err, err_cap, "cannot start the thread of slot %d", i);
            lb_srv_sched_free(s);
            return NULL;
        }
        slots[i].started = true;
    }
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
    for (int i = 0; i < s->n_slots; i++) {
        if (s->slots[i].started)
            pthread_join(s->slots[i].thread, NULL);
        lb_session_free(s->slots[i].session);
    }
    /* Jobs still queued belong to HTTP threads, which see them never start and time out; none should be left
     * because the HTTP server is stopped first. */
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->slots);
    free(s);
}

bool lb_srv_sched_submit(lb_srv_sched *s, lb_srv_job *j)
{
    pthread_mutex_lock(&s->mu);
    /* queue_cap counts waiting jobs only: an idle slot takes a job at once, so it does not use up a place. */
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

void lb_srv_sched_load(lb_srv_sched *s, int *queued, int *queue_cap, int *busy, int *slots)
{
    pthread_mutex_lock(&s->mu);
    *queued = s->n_queued;
    *queue_cap = s->queue_cap;
    *busy = s->n_busy;
    *slots = s->n_slots;
    pthread_mutex_unlock(&s->mu);
}
