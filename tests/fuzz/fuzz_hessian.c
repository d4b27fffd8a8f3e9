/* libFuzzer target for the Hessian loader (quant/hessian.h): any bytes as a
 * Hessian file; an accepted file must hold only square, finite, symmetric
 * matrices that each name finds again, and a rejected one must say why. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "quant/hessian.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                           \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "fuzz_hessian: %s:%d: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                         \
        }                                                                    \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lb_hessian *h = NULL;
    lb_err err = {0};
    lb_status st = lb_hessian_load_memory(data, size, &h, &err);
    if (st) {
        REQUIRE(h == NULL && err.msg[0]);
        return 0;
    }
    REQUIRE(h != NULL);
    for (int64_t i = 0; i < lb_hessian_n_entries(h); i++) {
        int64_t cols = 0, c2 = 0;
        const char *name = lb_hessian_name_at(h, i, &cols);
        REQUIRE(name && cols >= 1);
        const float *m = lb_hessian_find(h, name, &c2);
        REQUIRE(m && c2 == cols);
        for (int64_t r = 0; r < cols; r++) {
            REQUIRE(m[r * cols + r] >= 0);
            for (int64_t k = 0; k < cols; k++)
                REQUIRE(isfinite(m[r * cols + k]));
        }
    }
    lb_hessian_meta meta = lb_hessian_get_meta(h);
    REQUIRE(meta.dataset != NULL);
    lb_hessian_free(h);
    return 0;
}
