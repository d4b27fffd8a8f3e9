/* Loading the shared test model in a test program's main(). */
#ifndef LB_TESTS_CHECK_MODEL_H
#define LB_TESTS_CHECK_MODEL_H

#include "check.h"
#include "lowbit.h"

/* ../shared/<rel> loaded with the default parameters, its vocabulary size in
 * *n_vocab; NULL after printing why not (the program then exits 1). */
static inline lb_model *check_load_model(const char *rel, int *n_vocab)
{
    lb_model_params mp = lb_model_default_params();
    lb_model *m = NULL;
    if (lb_model_load(check_shared(rel), &mp, &m) != LB_OK) {
        fprintf(stderr, "cannot load the model: %s\n", lb_last_load_error());
        return NULL;
    }
    lb_model_info info;
    lb_model_get_info(m, &info);
    *n_vocab = info.n_vocab;
    return m;
}

#endif
