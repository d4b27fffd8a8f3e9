/* Named per-tensor calibration accumulators keyed by weight data, in
 * registration order: the table shared by the importance-matrix and Hessian
 * collectors. */
#ifndef LB_QUANT_CALIB_TABLE_H
#define LB_QUANT_CALIB_TABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct lb__calib_entry {
    char *name;          /* owned */
    const void *key;     /* weight data pointer (collecting); NULL for a loaded entry */
    int64_t cols;
    int64_t rows_seen;   /* activation rows accumulated */
    double *sum;         /* [n_sum] sums, layout chosen by the collector (collecting) */
    float *mean;         /* [n_mean] means, layout chosen by the collector */
} lb__calib_entry;

typedef struct lb__calib_table {
    lb__calib_entry *e;  /* [n] in registration (or file) order */
    int64_t n, cap;
    int64_t last;        /* observe-lookup hint: products come in a fixed order */
} lb__calib_table;

/* Frees every entry and the array; the table is left empty. */
void lb__calib_table_free(lb__calib_table *t);

/* Index of the entry named name, or -1. */
int64_t lb__calib_find_name(const lb__calib_table *t, const char *name);

/* Appends an entry with zeroed sums[n_sum] (none when n_sum is 0) and zeroed
 * means[n_mean] (none when n_mean is 0). Returns NULL when out of memory,
 * leaving the table as it was; the caller words the message. */
lb__calib_entry *lb__calib_append(lb__calib_table *t, const char *name, const void *key, int64_t cols,
                                  size_t n_sum, size_t n_mean);

#endif
