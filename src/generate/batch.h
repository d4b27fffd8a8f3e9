/* What the server's scheduler needs of a batch beyond lowbit.h. */
#ifndef LB_GENERATE_BATCH_H
#define LB_GENERATE_BATCH_H

#include "lowbit.h"

/* The batch's worker threads sleep until its next lb_batch_eval instead of
 * polling (lb_pool_nap): for a caller that does serial work between steps
 * (sampling, waking the threads that deliver the tokens). */
void lb__batch_nap(lb_batch *b);

/* Runs fn on the batch's threads as lb_pool_run_claimed does (fn takes its
 * items from a shared counter); not during an lb_batch_eval. */
void lb__batch_run(lb_batch *b, void (*fn)(void *ctx, int ith, int nth), void *ctx);

#endif
