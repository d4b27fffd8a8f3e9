/* The RoPE shift that rebases a query for the attention sinks (kv_window.h). */
#include "kv_window.h"

#include <math.h>
#include <string.h>

void lb__kv_rope_init(lb_kv_rope *r, const lb_hparams *hp)
{
    memset(r, 0, sizeof *r);
    r->kind = hp->rope;
    r->n_rot = hp->n_rot;
    r->scale = hp->rope_scale;
    r->theta_scale = hp->n_rot > 0 ? powf(hp->rope_base, -2.0f / (float)hp->n_rot) : 1.0f;
}

void lb__kv_rope_shift(const lb_kv_rope *r, float *x, int n_heads, int head_dim, int from, int to)
{
    if (from == to || r->n_rot < 2)
        return;
    /* pair i's angle at a position is scale * (pos * theta_scale^i), the
     * power taken by repeated float multiplication as in the forward pass */
    float ta = (float)from, tb = (float)to;
    const int half = r->n_rot / 2;
    for (int i = 0; i < half; i++) {
        const double d = (double)(r->scale * tb) - (double)(r->scale * ta), c = cos(d), sn = sin(d);
        const int i0 = r->kind == LB_ROPE_NORM ? 2 * i : i, i1 = r->kind == LB_ROPE_NORM ? 2 * i + 1 : i + half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * head_dim;
            const double p = v[i0], q = v[i1];
            v[i0] = (float)(p * c - q * sn);
            v[i1] = (float)(p * sn + q * c);
        }
        ta *= r->theta_scale;
        tb *= r->theta_scale;
    }
}
