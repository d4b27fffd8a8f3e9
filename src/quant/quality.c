/* Per-position quality sums for `lowbit eval` (see quality.h). */
#include "quant/quality.h"

#include <math.h>

#include "base/logits.h"

void lb_quality_add(lb_quality *q, const float *ref, const float *model, int n_vocab, int target)
{
    int64_t am_ref, am;
    double lse_ref = lb_log_sum_exp(ref, n_vocab, &am_ref), lse = lb_log_sum_exp(model, n_vocab, &am);
    double kl = 0;
    for (int i = 0; i < n_vocab; i++) {
        double lr = (double)ref[i] - lse_ref, lm = (double)model[i] - lse;
        kl += exp(lr) * (lr - lm);
    }
    double nll = lse - model[target], nll_ref = lse_ref - ref[target];
    q->n++;
    q->n_top1 += am == am_ref;
    q->sum_nll += nll;
    q->sum_nll2 += nll * nll;
    q->sum_nll_ref += nll_ref;
    q->sum_nll_ref2 += nll_ref * nll_ref;
    q->sum_kl += kl;
    q->sum_kl2 += kl * kl;
    if (kl > q->max_kl)
        q->max_kl = kl;
}

/* Standard error of a mean from its sums (the sample variance over n - 1). */
static double std_err(double sum, double sum2, int64_t n)
{
    if (n < 2)
        return 0;
    double mean = sum / (double)n, var = (sum2 / (double)n - mean * mean) * (double)n / (double)(n - 1);
    return var > 0 ? sqrt(var / (double)n) : 0;
}

lb_quality_result lb_quality_summary(const lb_quality *q)
{
    lb_quality_result r = {0};
    if (!q || q->n == 0)
        return r;
    double n = (double)q->n;
    r.n = q->n;
    r.ppl = exp(q->sum_nll / n);
    r.ppl_err = r.ppl * std_err(q->sum_nll, q->sum_nll2, q->n);
    r.ppl_ref = exp(q->sum_nll_ref / n);
    r.ppl_ref_err = r.ppl_ref * std_err(q->sum_nll_ref, q->sum_nll_ref2, q->n);
    r.kl_mean = q->sum_kl / n;
    r.kl_err = std_err(q->sum_kl, q->sum_kl2, q->n);
    r.kl_max = q->max_kl;
    r.top1 = 100.0 * (double)q->n_top1 / n;
    return r;
}
