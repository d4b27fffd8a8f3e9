/* The thread pool behind lb_pool_run.  A run publishes (fn, ctx) and bumps a
 * generation counter; workers poll the counter for a bounded time and then
 * sleep on a condition variable, and the caller waits for a countdown of
 * unfinished workers to reach zero.  The mutex is taken only when some worker
 * is asleep, so a run that finds every worker polling costs two cache-line
 * transfers each way. */
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"

#if defined(__EMSCRIPTEN__) && defined(__EMSCRIPTEN_PTHREADS__)
#include <emscripten/threading.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

#define MAX_THREADS 512
#define DOOR_STATIC ((uint64_t)1 << 31)
#define DOOR_CLOSED ((uint64_t)1 << 30)
#define DOOR_ACTIVE (DOOR_CLOSED - 1)
#define DOOR_GEN(d) ((unsigned)((d) >> 32))
#define DEFAULT_SPIN_US 100
/* Polls between two reads of the clock while a worker spins, and pause
 * instructions the caller spends before it starts yielding its CPU to a
 * worker that may have been preempted (2 cores shared by many processes). */
#define SPIN_CLOCK_EVERY 256
#define CALLER_SPINS_BEFORE_YIELD 1024

typedef struct worker {
    lb_pool *pool;
    int ith;
    pthread_t tid;
} worker;

struct lb_pool {
    /* Each hot atomic on its own cache line, so polling workers do not
     * disturb the countdown the caller watches. */
    alignas(64) atomic_uint gen;   /* bumped by every run, and once by lb_pool_free */
    atomic_uint nap_gen;           /* lb_pool_nap: workers waiting for the run after this one do not poll */
    alignas(64) atomic_int pending;   /* workers that have not finished the current run */
    alignas(64) atomic_int sleepers;  /* workers blocked, or about to block, on cv */
    /* Who may still join the current run: the run's generation in the high
     * 32 bits, then DOOR_STATIC (every worker must run it: lb_pool_run),
     * DOOR_CLOSED (a claimed run whose caller has finished its own call:
     * late workers skip it) and the count of workers inside it. */
    alignas(64) _Atomic uint64_t door;
    atomic_flag busy;                 /* set while a run is in progress */
    atomic_bool stop;
    atomic_int spin_us;
    lb_pool_fn fn;    /* the current run; written only while no worker is inside a run */
    void *ctx;
    int n;            /* threads in total, the caller included */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    worker *workers;  /* [n - 1] */
};

int lb_cpu_count(void)
{
#if defined(__EMSCRIPTEN__)
#if defined(__EMSCRIPTEN_PTHREADS__)
    int n = emscripten_num_logical_cores();
    return n > 0 ? n : 1;
#else
    return 1;
#endif
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > MAX_THREADS ? MAX_THREADS : (int)n;
#endif
}

/* Waits until the generation differs from seen and returns the new value:
 * polls for spin_us, then sleeps.  The sleeper count and the generation are
 * both sequentially consistent, so either the worker sees the new generation
 * before sleeping or the run sees the sleeper and signals under the mutex. */
static unsigned wait_next(lb_pool *p, unsigned seen)
{
    unsigned g;
    const int spin_us = atomic_load_explicit(&p->spin_us, memory_order_relaxed);
    double deadline = -1.0;
    for (unsigned i = 1; spin_us > 0; i++) {
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen)
            return g;
        if (atomic_load_explicit(&p->nap_gen, memory_order_relaxed) == seen)
            break;
        if (i % SPIN_CLOCK_EVERY == 0) {
            /* On an oversubscribed machine a polling worker must not keep
             * the caller's or anyone's thread off the CPU. */
            sched_yield();
            double now = lb_time_ms();
            if (deadline < 0)
                deadline = now + spin_us * 1e-3;
            else if (now >= deadline)
                break;
        }
        cpu_relax();
    }
    atomic_fetch_add(&p->sleepers, 1);
    pthread_mutex_lock(&p->mu);
    while ((g = atomic_load(&p->gen)) == seen)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    return g;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    lb_pool *p = w->pool;
    /* 0 is the generation before the first run; reading p->gen here instead
     * could skip a run that started before this thread got going. */
    unsigned seen = 0;
    for (;;) {
        seen = wait_next(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            break;
        uint64_t d = atomic_load(&p->door);
        if (DOOR_GEN(d) == seen && (d & DOOR_STATIC)) {
            p->fn(p->ctx, w->ith, p->n);
            atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
            continue;
        }
        /* A claimed run: join it unless it is over or already closed (the
         * caller did the work; a newer run shows as another generation). */
        while (DOOR_GEN(d) == seen && !(d & DOOR_CLOSED)) {
            if (atomic_compare_exchange_weak(&p->door, &d, d + 1)) {
                p->fn(p->ctx, w->ith, p->n);
                atomic_fetch_sub_explicit(&p->door, 1, memory_order_release);
                break;
            }
        }
    }
    return NULL;
}

static void bump_and_wake(lb_pool *p, bool force_lock)
{
    atomic_fetch_add(&p->gen, 1);
    if (force_lock || atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

static void stop_workers(lb_pool *p, int n_started)
{
    if (n_started == 0)
        return;
    atomic_store(&p->stop, true);
    bump_and_wake(p, true);
    for (int i = 0; i < n_started; i++)
        pthread_join(p->workers[i].tid, NULL);
}

lb_pool *lb_pool_new(int n_threads)
{
    if (n_threads < 0)
        return NULL;
    if (n_threads == 0)
        n_threads = lb_cpu_count();
    if (n_threads > MAX_THREADS)
        n_threads = MAX_THREADS;

    lb_pool *p = lb_aligned_alloc(alignof(lb_pool), sizeof *p);
    if (!p)
        return NULL;
    atomic_init(&p->gen, 0);
    atomic_init(&p->nap_gen, UINT32_MAX);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->door, 0);
    atomic_flag_clear(&p->busy);
    atomic_init(&p->stop, false);
    atomic_init(&p->spin_us, DEFAULT_SPIN_US);
    p->fn = NULL;
    p->ctx = NULL;
    p->n = 1;
    p->workers = NULL;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        lb_aligned_free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        lb_aligned_free(p);
        return NULL;
    }
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            lb_pool_free(p);
            return NULL;
        }
        int started = 0;
        for (int i = 0; i < n_threads - 1; i++) {
            p->workers[i].pool = p;
            p->workers[i].ith = i + 1;
            if (pthread_create(&p->workers[i].tid, NULL, worker_main, &p->workers[i]) != 0)
                break;
            started++;
        }
        /* Workers read n only inside a run, which cannot start before we return. */
        p->n = started + 1;
    }
    return p;
}

void lb_pool_free(lb_pool *p)
{
    if (!p)
        return;
    stop_workers(p, p->n - 1);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    lb_aligned_free(p);
}

int lb_pool_size(const lb_pool *p) { return p ? p->n : 1; }

void lb_pool_set_spin_us(lb_pool *p, int us)
{
    if (p)
        atomic_store_explicit(&p->spin_us, us < 0 ? 0 : us, memory_order_relaxed);
}

void lb_pool_nap(lb_pool *p)
{
    if (p)
        atomic_store_explicit(&p->nap_gen, atomic_load_explicit(&p->gen, memory_order_relaxed), memory_order_relaxed);
}

void lb_pool_run(lb_pool *p, lb_pool_fn fn, void *ctx)
{
    if (!p || p->n == 1 || atomic_flag_test_and_set_explicit(&p->busy, memory_order_acquire)) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    /* Only the caller of a run bumps gen (busy is held), so the next value is known. */
    unsigned g = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1;
    atomic_store(&p->door, ((uint64_t)g << 32) | DOOR_STATIC);
    bump_and_wake(p, false);   /* its seq_cst increment publishes fn, ctx, door and pending */

    fn(ctx, 0, p->n);

    for (unsigned i = 0; atomic_load_explicit(&p->pending, memory_order_acquire) != 0; i++) {
        if (i < CALLER_SPINS_BEFORE_YIELD)
            cpu_relax();
        else
            sched_yield();
    }
    atomic_flag_clear_explicit(&p->busy, memory_order_release);
}

void lb_pool_run_claimed(lb_pool *p, lb_pool_fn fn, void *ctx)
{
    if (!p || p->n == 1 || atomic_flag_test_and_set_explicit(&p->busy, memory_order_acquire)) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    unsigned g = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1;
    atomic_store(&p->door, (uint64_t)g << 32);
    bump_and_wake(p, false);

    fn(ctx, 0, p->n);

    /* All work is claimed once our call returns: workers that have not
     * joined yet (descheduled, asleep) are shut out instead of waited for,
     * and only those inside finishing their last item are waited for. */
    uint64_t d = atomic_fetch_or(&p->door, DOOR_CLOSED) | DOOR_CLOSED;
    for (unsigned i = 0; (d & DOOR_ACTIVE) != 0; i++) {
        if (i < CALLER_SPINS_BEFORE_YIELD)
            cpu_relax();
        else
            sched_yield();
        d = atomic_load_explicit(&p->door, memory_order_acquire);
    }
    atomic_flag_clear_explicit(&p->busy, memory_order_release);
}
