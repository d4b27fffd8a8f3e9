/* The shared KV budget: reservations, least-recently-used reclaim of idle
 * sessions' caches, and the timer-driven reclaim (kv_pool.h). */
#include "kv_pool.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/clock.h"

struct lb_kv_pool {
    pthread_mutex_t mu;
    size_t budget, used;
    lb_kv_member *head, *tail;   /* least recently used first */
    int n_members;
};

lb_status lb_kv_pool_new(size_t budget_bytes, lb_kv_pool **out)
{
    if (!out || !budget_bytes)
        return LB_ERR_INVALID_ARG;
    lb_kv_pool *p = calloc(1, sizeof *p);
    if (!p)
        return LB_ERR_NOMEM;
    if (pthread_mutex_init(&p->mu, NULL)) {
        free(p);
        return LB_ERR_NOMEM;
    }
    p->budget = budget_bytes;
    *out = p;
    return LB_OK;
}

void lb_kv_pool_free(lb_kv_pool *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->mu);
    free(p);
}

size_t lb_kv_pool_used(const lb_kv_pool *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock((pthread_mutex_t *)(uintptr_t)&p->mu);
    size_t u = p->used;
    pthread_mutex_unlock((pthread_mutex_t *)(uintptr_t)&p->mu);
    return u;
}

static void unlink_member(lb_kv_pool *p, lb_kv_member *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        p->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        p->tail = m->prev;
    m->prev = m->next = NULL;
}

static void append(lb_kv_pool *p, lb_kv_member *m)
{
    m->prev = p->tail;
    m->next = NULL;
    if (p->tail)
        p->tail->next = m;
    else
        p->head = m;
    p->tail = m;
}

/* Drops m's cache and reservation (pool locked; m held and idle). */
static void reclaim(lb_kv_pool *p, lb_kv_member *m)
{
    m->drop(m);
    m->held = false;
    p->used -= m->bytes;
    m->bytes = 0;
}

void lb__kv_pool_join(lb_kv_pool *p, lb_kv_member *m)
{
    pthread_mutex_lock(&p->mu);
    m->held = false;
    m->bytes = 0;
    m->busy = 0;
    m->last_ms = lb_time_ms();
    append(p, m);
    p->n_members++;
    pthread_mutex_unlock(&p->mu);
}

void lb__kv_pool_leave(lb_kv_pool *p, lb_kv_member *m)
{
    pthread_mutex_lock(&p->mu);
    if (m->held)
        p->used -= m->bytes;
    m->held = false;
    m->bytes = 0;
    unlink_member(p, m);
    p->n_members--;
    pthread_mutex_unlock(&p->mu);
}

lb_status lb__kv_pool_reserve(lb_kv_pool *p, lb_kv_member *m, size_t bytes)
{
    pthread_mutex_lock(&p->mu);
    if (m->held) {   /* a member holds one reservation at a time */
        p->used -= m->bytes;
        m->held = false;
        m->bytes = 0;
    }
    /* Would reclaiming every idle member be enough?  Only then reclaim any. */
    size_t idle = 0;
    for (lb_kv_member *o = p->head; o; o = o->next)
        if (o != m && o->held && !o->busy)
            idle += o->bytes;
    if (bytes > p->budget || p->used - idle + bytes > p->budget) {
        pthread_mutex_unlock(&p->mu);
        return LB_ERR_NOMEM;
    }
    for (lb_kv_member *o = p->head; o && p->used + bytes > p->budget;) {
        lb_kv_member *next = o->next;
        if (o != m && o->held && !o->busy)
            reclaim(p, o);
        o = next;
    }
    p->used += bytes;
    m->bytes = bytes;
    m->held = true;
    unlink_member(p, m);   /* now the most recently used */
    append(p, m);
    pthread_mutex_unlock(&p->mu);
    return LB_OK;
}

void lb__kv_pool_busy(lb_kv_pool *p, lb_kv_member *m, bool busy)
{
    pthread_mutex_lock(&p->mu);
    m->busy += busy ? 1 : -1;
    if (!busy) {
        m->last_ms = lb_time_ms();
        unlink_member(p, m);
        append(p, m);
    }
    pthread_mutex_unlock(&p->mu);
}

size_t lb_kv_pool_reclaim(lb_kv_pool *p, double idle_ms)
{
    if (!p)
        return 0;
    size_t freed = 0;
    pthread_mutex_lock(&p->mu);
    const double now = lb_time_ms();
    for (lb_kv_member *o = p->head; o; o = o->next)
        if (o->held && !o->busy && now - o->last_ms >= idle_ms) {
            freed += o->bytes;
            reclaim(p, o);
        }
    pthread_mutex_unlock(&p->mu);
    return freed;
}
