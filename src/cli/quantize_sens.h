/* Per-tensor sensitivity for `lowbit quantize --bpw --calib`: the KL
 * divergence of the model's predictions on calibration text when one tensor
 * alone is rounded to LBQ2 and every other stays as in the source. */
#ifndef LB_CLI_QUANTIZE_SENS_H
#define LB_CLI_QUANTIZE_SENS_H

#include <stdbool.h>
#include <stdio.h>

#include "quant/hessian.h"
#include "quant/imatrix.h"

typedef struct lb__cli_sens lb__cli_sens;

/* Loads in_path (an F16/F32/BF16 GGUF) into memory, tokenizes calib and
 * computes the reference logits.  Returns 0, or prints the error and returns 1. */
int lb__cli_sens_new(const char *in_path, const char *calib, const lb_imatrix *im, int n_threads, bool verbose,
                     lb__cli_sens **out);
/* The mean KL (nats) with only tensor `name` rounded to LBQ2; -1 when it cannot be measured. */
double lb__cli_sens_measure(void *sens, const char *name);
/* With full input covariances the LBQ2 rounding of a tensor that has one is
 * the LDLQ rounding the file will get (h is borrowed; NULL turns it off). */
void lb__cli_sens_set_hessian(lb__cli_sens *s, const lb_hessian *h);
void lb__cli_sens_free(lb__cli_sens *s);

/* A table of "name KL" lines (the --sens file): loading returns 0 or 1 as
 * above; lb__cli_sens_table_get is a measure function for it (-1 when the
 * name is missing).  Saving writes what `measure` returned, one line each. */
typedef struct lb__cli_sens_table lb__cli_sens_table;
int lb__cli_sens_table_load(const char *path, lb__cli_sens_table **out);
double lb__cli_sens_table_get(void *table, const char *name);
void lb__cli_sens_table_free(lb__cli_sens_table *t);
/* Measures with c and appends "name KL" to f (which may be NULL). */
typedef struct lb__cli_sens_rec {
    lb__cli_sens *c;
    FILE *f;
} lb__cli_sens_rec;
double lb__cli_sens_measure_rec(void *rec, const char *name);

#endif
