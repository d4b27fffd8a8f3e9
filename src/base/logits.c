/* Log-sum-exp of a row of logits (see logits.h). */
#include "base/logits.h"

#include <math.h>

double lb_log_sum_exp(const float *x, int64_t n, int64_t *argmax)
{
    int64_t am = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[am])
            am = i;
    double mx = x[am], s = 0;
    for (int64_t i = 0; i < n; i++)
        s += exp((double)x[i] - mx);
    if (argmax)
        *argmax = am;
    return mx + log(s);
}
