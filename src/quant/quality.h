/* How far a quantized model's predictions are from its reference's, one
 * scored position at a time: perplexity of both, KL divergence of the
 * model's next-token distribution from the reference's, and top-1
 * agreement — the figures `lowbit eval` reports. */
#ifndef LB_QUANT_QUALITY_H
#define LB_QUANT_QUALITY_H

#include <stdint.h>

/* Running sums; zero-initialise ({0}) before the first lb_quality_add. */
typedef struct lb_quality {
    int64_t n;                    /* positions added */
    int64_t n_top1;               /* positions where both argmaxes agree */
    double sum_nll, sum_nll2;     /* model: -log p(target) and its square */
    double sum_nll_ref, sum_nll_ref2;
    double sum_kl, sum_kl2, max_kl;
} lb_quality;

/* Adds one position: ref[n_vocab] and model[n_vocab] are the two logit rows
 * for the same context, target the token that followed.  Everything is
 * computed in double: KL(P_ref || P_model) = sum_i p_ref(i) (log p_ref(i) -
 * log p_model(i)), in nats; identical rows give exactly 0.  Ties in the
 * argmax go to the lowest id. */
void lb_quality_add(lb_quality *q, const float *ref, const float *model, int n_vocab, int target);

typedef struct lb_quality_result {
    int64_t n;
    double ppl, ppl_err;          /* model perplexity and its standard error */
    double ppl_ref, ppl_ref_err;
    double kl_mean, kl_err, kl_max;
    double top1;                  /* % of positions whose argmaxes agree */
} lb_quality_result;

/* The summary of q (all zero when nothing was added). */
lb_quality_result lb_quality_summary(const lb_quality *q);

#endif
