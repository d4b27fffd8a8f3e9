/* The --bpw mixer: picks a type per tensor so that the whole file fits a
 * bits-per-weight budget, spending bits where the measured error falls most. */
#ifndef LB_QUANT_MIX_H
#define LB_QUANT_MIX_H

#include <stdint.h>

#include "base/status.h"
#include "quant/hessian.h"
#include "quant/imatrix.h"
#include "quant/quantizer.h"

/* One tensor's decision, with the measurement behind it. */
typedef struct lb_mix_choice {
    char name[96];
    uint32_t type;
    uint64_t n_params;
    double rel_err;        /* sqrt(weighted error / weighted signal) of the chosen type on sampled rows */
    double damage;         /* the mixer's damage of the chosen type (relative error energy x sensitivity) */
    double damage_lbq2;    /* the same for lbq2, which has lbqv's size; < 0 when lbq2 does not fit the rows */
} lb_mix_choice;

typedef struct lb_mix_plan {
    lb_mix_choice *choices;        /* [n] owned */
    lb_quantize_override *ovr;     /* [n] exact-name overrides ("=name") for lb_quantize_params, owned */
    char (*patterns)[100];         /* [n] storage of ovr[i].pattern */
    int n;
    double predicted_bpw;          /* whole file, from the block sizes and the source's metadata size */
} lb_mix_plan;

/* Measured end-to-end sensitivity: fn returns the damage (e.g. the mean KL
 * divergence of the model's predictions) when only tensor `name` is rounded
 * to LBQ2, or a negative value when it has no measurement.  The mixer then
 * scales each tensor's relative errors so that its LBQ2 error costs exactly
 * that, which ranks tensors by what they do to the output (the output
 * projection and the embeddings are not like the rest). */
typedef struct lb_mix_sensitivity {
    double (*fn)(void *user, const char *name);
    void *user;
} lb_mix_sensitivity;

/* Plans types for in_path (an F32/F16/BF16 GGUF) under `bpw` bits per weight
 * for the whole file.  Each quantizable tensor is tried on a sample of its
 * rows in every candidate type (lbq2 lbq3 lbq4 q4_K q5_K q6_K q8_0); its
 * damage is the importance-weighted relative error energy (imatrix may be
 * NULL: plain squared error), times the tensor's sensitivity when sens is
 * given (NULL: every tensor counts alike).  A Lagrangian search then minimises the summed
 * damage under the byte budget.  Fails with LB_ERR_INVALID_ARG naming the
 * smallest reachable bpw when even the cheapest types do not fit. */
lb_status lb_mix_plan_bpw(const char *in_path, double bpw, const lb_imatrix *imatrix, int n_threads,
                          const lb_mix_sensitivity *sens, lb_mix_plan *out, lb_err *err);

/* The same with full input covariances (hessian may be NULL, then exactly
 * lb_mix_plan_bpw): a tensor that has one is measured with the quantizer
 * that will write it (lb_quantize_hessian: LDLQ for lbq, GPTQ for the
 * K-quants), and its error is the relative output error energy
 * sum (w - q) H (w - q)^T / sum w H w^T over the sampled rows. */
lb_status lb_mix_plan_bpw_h(const char *in_path, double bpw, const lb_imatrix *imatrix, const lb_hessian *hessian,
                            int n_threads, const lb_mix_sensitivity *sens, lb_mix_plan *out, lb_err *err);

/* Caps the weights the plan codes as lbqv at max_share (0..1) of the
 * weights that decoding multiplies (all planned tensors but token_embd, which
 * is only gathered, unless there is no output.weight and it is tied to the
 * output).  lbqv and lbq2 have the same size, but lbqv's codebook costs more
 * to decode (per block about 1.7x lbq2's time with AVX-512, 5x with AVX2),
 * so the cap trades quality for speed at an unchanged file size: lbqv
 * tensors become lbq2 in the order of least damage added per weight until
 * the share holds.  Returns the number of tensors changed. */
int lb_mix_plan_cap_lbqv(lb_mix_plan *p, double max_share);

void lb_mix_plan_free(lb_mix_plan *p);

#endif
