/* Adam with bias correction, the optimizer of `lowbit tune`. */
#include <math.h>
#include <stdlib.h>

#include "tune/tune.h"

lb_status lb__adam_init(lb_adam *a, int64_t n, lb_err *err)
{
    a->n = n;
    a->t = 0;
    a->beta1 = 0.9f;
    a->beta2 = 0.999f;
    a->eps = 1e-8f;
    a->m = calloc((size_t)n + 1, sizeof(float));
    a->v = calloc((size_t)n + 1, sizeof(float));
    if (!a->m || !a->v) {
        lb__adam_free(a);
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate Adam moments for %lld parameters", (long long)n);
    }
    return LB_OK;
}

void lb__adam_free(lb_adam *a)
{
    free(a->m);
    free(a->v);
    a->m = a->v = NULL;
}

void lb__adam_step(lb_adam *a, float *p, const float *g, const float *lr_scale, float lr)
{
    a->t++;
    const float b1 = a->beta1, b2 = a->beta2;
    const float c1 = 1.0f / (1.0f - powf(b1, (float)a->t)), c2 = 1.0f / (1.0f - powf(b2, (float)a->t));
    for (int64_t i = 0; i < a->n; i++) {
        a->m[i] = b1 * a->m[i] + (1.0f - b1) * g[i];
        a->v[i] = b2 * a->v[i] + (1.0f - b2) * g[i] * g[i];
        float step = lr * (a->m[i] * c1) / (sqrtf(a->v[i] * c2) + a->eps);
        p[i] -= lr_scale ? lr_scale[i] * step : step;
    }
}
