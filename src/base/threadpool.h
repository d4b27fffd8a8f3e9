/* A fixed set of worker threads that run one data-parallel function at a
 * time; the dispatch path is built for the ~60 short calls per token a
 * forward pass makes. */
#ifndef LB_BASE_THREADPOOL_H
#define LB_BASE_THREADPOOL_H

#include <stdint.h>

typedef struct lb_pool lb_pool;

/* The work function: called once on every thread of the pool with the
 * thread's index ith in [0, nth) and the number of threads nth.  The caller
 * of lb_pool_run is thread 0. */
typedef void (*lb_pool_fn)(void *ctx, int ith, int nth);

/* Number of CPUs available to this process (at least 1).  1 under a
 * WebAssembly build without threads. */
int lb_cpu_count(void);

/* Creates a pool of n_threads threads in total, the calling thread included,
 * so n_threads - 1 workers are started; 0 means lb_cpu_count().  n_threads 1
 * starts no thread at all (single-threaded WebAssembly builds rely on this).
 * If the host refuses to start a worker (no thread support, limits), the
 * pool keeps the workers that did start: lb_pool_size() tells the real size.
 * Returns NULL when n_threads is negative or memory is short.
 *
 * Under emscripten with -pthread, workers come from the PTHREAD_POOL_SIZE
 * pre-spawned Web Workers; create the pool off the browser main thread or
 * pre-spawn enough of them, or the first run waits for ever. */
lb_pool *lb_pool_new(int n_threads);

/* Stops and joins the workers and releases the pool; NULL is accepted.
 * Must not be called while a run is in progress. */
void lb_pool_free(lb_pool *p);

/* Total number of threads, the caller included (>= 1).  1 for NULL. */
int lb_pool_size(const lb_pool *p);

/* Runs fn(ctx, ith, nth) on every thread and returns when all calls have
 * returned; everything the calls wrote is then visible to the caller.
 * A NULL pool runs fn(ctx, 0, 1) on the caller.  A call made while another
 * run of the same pool is in progress (from inside fn, or from another
 * thread) does not deadlock: it runs fn(ctx, 0, 1) on its own thread, so fn
 * must split its work by (ith, nth) and not assume the pool's size. */
void lb_pool_run(lb_pool *p, lb_pool_fn fn, void *ctx);

/* Like lb_pool_run for an fn that takes its work items from a shared
 * counter until none are left (so any thread may do any item, and the
 * caller's own call does whatever nobody else took).  The run returns once
 * the caller's call has returned and the workers that joined have finished;
 * workers that had not joined by then skip it.  On a shared machine this
 * spares waiting a time slice for a descheduled worker that would only find
 * the work done.  Not every thread necessarily calls fn. */
void lb_pool_run_claimed(lb_pool *p, lb_pool_fn fn, void *ctx);

/* How long an idle worker polls for the next run before sleeping on a
 * condition variable (default 100 µs; 0 = sleep at once).  Polling makes
 * back-to-back runs cheap; sleeping keeps an idle pool off the CPU. */
void lb_pool_set_spin_us(lb_pool *p, int us);

/* Idle workers sleep now instead of polling until their spin time is up;
 * the next run wakes them.  For a caller about to do serial work of its own
 * that wakes other threads (a server's HTTP handlers after a decode step):
 * a polling worker keeps its CPU busy, so a woken thread preempts the
 * caller instead of taking the idle CPU.  NULL is accepted. */
void lb_pool_nap(lb_pool *p);

/* Splits [0, n) into nth contiguous ranges whose sizes differ by at most one
 * and gives thread ith its range [*begin, *end) (empty when n <= ith). */
static inline void lb_split(int64_t n, int ith, int nth, int64_t *begin, int64_t *end)
{
    if (n <= 0 || nth <= 0) {
        *begin = *end = 0;
        return;
    }
    int64_t q = n / nth, r = n % nth;
    int64_t b = ith * q + (ith < r ? ith : r);
    *begin = b;
    *end = b + q + (ith < r ? 1 : 0);
}

#endif
