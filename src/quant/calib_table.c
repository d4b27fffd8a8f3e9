/* The calibration accumulator table shared by imatrix.c and hessian.c. */
#include "quant/calib_table.h"

#include <stdlib.h>
#include <string.h>

void lb__calib_table_free(lb__calib_table *t)
{
    for (int64_t i = 0; i < t->n; i++) {
        free(t->e[i].name);
        free(t->e[i].sum);
        free(t->e[i].mean);
    }
    free(t->e);
    memset(t, 0, sizeof *t);
}

int64_t lb__calib_find_name(const lb__calib_table *t, const char *name)
{
    for (int64_t i = 0; i < t->n; i++)
        if (!strcmp(t->e[i].name, name))
            return i;
    return -1;
}

lb__calib_entry *lb__calib_append(lb__calib_table *t, const char *name, const void *key, int64_t cols,
                                  size_t n_sum, size_t n_mean)
{
    if (t->n == t->cap) {
        int64_t cap = t->cap ? t->cap * 2 : 64;
        lb__calib_entry *e = realloc(t->e, (size_t)cap * sizeof *e);
        if (!e)
            return NULL;
        t->e = e;
        t->cap = cap;
    }
    lb__calib_entry *x = &t->e[t->n];
    memset(x, 0, sizeof *x);
    x->name = malloc(strlen(name) + 1);
    x->sum = n_sum ? calloc(n_sum, sizeof *x->sum) : NULL;
    x->mean = n_mean ? calloc(n_mean, sizeof *x->mean) : NULL;
    if (!x->name || (n_sum && !x->sum) || (n_mean && !x->mean)) {
        free(x->name);
        free(x->sum);
        free(x->mean);
        return NULL;
    }
    strcpy(x->name, name);
    x->key = key;
    x->cols = cols;
    t->n++;
    return x;
}
