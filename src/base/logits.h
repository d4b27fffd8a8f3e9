/* Log-sum-exp of a row of logits, the one normaliser behind every
 * log-probability lowbit computes (perplexity, eval, imatrix, tune). */
#ifndef LB_BASE_LOGITS_H
#define LB_BASE_LOGITS_H

#include <stdint.h>

/* log(sum_i exp(x[i])) of x[n] (n >= 1), summed in double after subtracting
 * the maximum so that no term overflows.  *argmax (if not NULL) gets the
 * index of the first maximum. */
double lb_log_sum_exp(const float *x, int64_t n, int64_t *argmax);

#endif
