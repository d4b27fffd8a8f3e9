/* Inference slots and the bounded request queue of `lowbit serve`.
 *
 * Each slot is a worker thread owning one session; it takes the oldest queued
 * job and generates it to the end.  Text flows to the HTTP thread through the
 * job (under its mutex), never by the worker writing to a socket, so a slow
 * client cannot stall a slot — the same contract a batched scheduler (several
 * sessions stepped together) will keep. */
#ifndef LB_SERVER_SCHEDULER_H
#define LB_SERVER_SCHEDULER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "lowbit.h"
#include "metrics.h"

typedef enum lb_job_state { LB_JOB_QUEUED, LB_JOB_RUNNING, LB_JOB_DONE } lb_job_state;

typedef struct lb_srv_job {
    /* The request: set before submit, read-only afterwards. */
    char *prompt;
    lb_gen_params gen;         /* gen.stop points into stop_strs */
    char *stop_strs[8];        /* [gen.n_stop] owned */
    double t_arrival_ms;       /* lb_time_ms() when the request arrived, for time-to-first-token */

    /* Shared with the worker, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *text;                /* [n_text] released text the HTTP thread has not taken yet; capacity cap_text */
    size_t n_text, cap_text;
    int n_tokens;              /* tokens generated so far */
    lb_job_state state;
    lb_status rc;              /* valid once DONE */
    lb_gen_stats stats;        /* valid once DONE */
    char err[256];             /* the session's message when rc is an error */
    atomic_bool cancel;        /* set by the HTTP thread: the client left or the time is up */
    struct lb_srv_job *next;   /* queue link */
} lb_srv_job;

/* A job with its synchronisation set up; NULL on allocation failure. */
lb_srv_job *lb_srv_job_new(void);
void lb_srv_job_free(lb_srv_job *j);

/* Waits until the job has new text or is done, or timeout_ms passes; moves the
 * new text into *buf (malloc'd/realloc'd, [*n] bytes).  Returns the state. */
lb_job_state lb_srv_job_take(lb_srv_job *j, int timeout_ms, char **buf, size_t *n, size_t *cap);

/* Waits until the job is done or timeout_ms passes, leaving its text in place.  Returns the state. */
lb_job_state lb_srv_job_wait(lb_srv_job *j, int timeout_ms);

typedef struct lb_srv_sched lb_srv_sched;

/* Starts n_slots workers, each with a session made from sp (n_threads split
 * between them).  On failure returns NULL with a message in err. */
lb_srv_sched *lb_srv_sched_new(lb_model *m, const lb_session_params *sp, int n_slots, int queue_cap,
                               lb_srv_metrics *metrics, char *err, size_t err_cap);
/* Cancels running jobs, fails queued ones and joins the workers. */
void lb_srv_sched_free(lb_srv_sched *s);

/* Queues j.  False when the queue is full (the caller answers 429) or the server is stopping. */
bool lb_srv_sched_submit(lb_srv_sched *s, lb_srv_job *j);

/* Removes j if it is still waiting in the queue (true: the worker will never see it). */
bool lb_srv_sched_withdraw(lb_srv_sched *s, lb_srv_job *j);

/* Cancels j and returns once no worker touches it any more; then the caller may free it. */
void lb_srv_job_abandon(lb_srv_sched *s, lb_srv_job *j);

void lb_srv_sched_load(lb_srv_sched *s, int *queued, int *queue_cap, int *busy, int *slots);

#endif
