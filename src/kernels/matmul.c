/* Threaded matrix products: activations are converted once to the weight
 * type's activation format, then the threads claim small tiles of weight
 * rows from a shared counter, so a tile stays in cache while every
 * activation row passes over it. */
#include "matmul.h"

#include <stdatomic.h>

#include "kernels.h"

/* Rows per tile: small enough that a tile of the widest rows (f32, 5632
 * columns) plus one activation row fits in L2, large enough to amortise the
 * loop overhead. */
#define TILE_ROWS 16

typedef struct job {
    const lb_matw *w;
    const float *x;
    float *y;
    int64_t n;
    void *act;            /* [n][act_row] activation rows in act_type */
    size_t act_row;
    lb_quant_fn quantize;
    lb_vec_dot_fn dot;
    lb_vec_dot4_fn dot4;  /* NULL when the type has none */
    /* Next unclaimed row.  Tiles are claimed, not pre-assigned: on a shared
     * or oversubscribed machine a descheduled thread would otherwise hold
     * its whole band back while the others sit idle at the barrier.  Each
     * row's result depends only on that row, so who computes it never
     * changes the output. */
    atomic_int_fast64_t next_row;
} job;

static void quantize_rows(void *ctx, int ith, int nth)
{
    job *j = ctx;
    int64_t b, e;
    lb_split(j->n, ith, nth, &b, &e);
    for (int64_t t = b; t < e; t++)
        j->quantize(j->x + t * j->w->cols, (char *)j->act + (size_t)t * j->act_row, j->w->cols);
}

static void dot_rows(void *ctx, int ith, int nth)
{
    job *j = ctx;
    const lb_matw *w = j->w;
    (void)ith;
    (void)nth;
    for (;;) {
        int64_t r0 = atomic_fetch_add_explicit(&j->next_row, TILE_ROWS, memory_order_relaxed);
        if (r0 >= w->rows)
            break;
        int64_t r1 = r0 + TILE_ROWS < w->rows ? r0 + TILE_ROWS : w->rows;
        int64_t t = 0;
        /* Four activation rows at a time share each weight block's unpacking (same bits as dot). */
        for (; j->dot4 && t + 4 <= j->n; t += 4) {
            const void *a = (const char *)j->act + (size_t)t * j->act_row;
            float *yt = j->y + t * w->rows;
            for (int64_t r = r0; r < r1; r++)
                j->dot4(w->cols, &yt[r], w->rows, (const char *)w->data + (size_t)r * w->row_bytes, a, j->act_row);
        }
        for (; t < j->n; t++) {
            const void *a = (const char *)j->act + (size_t)t * j->act_row;
            float *yt = j->y + t * w->rows;
            for (int64_t r = r0; r < r1; r++)
                j->dot(w->cols, &yt[r], (const char *)w->data + (size_t)r * w->row_bytes, a);
        }
    }
}

/* Process-wide by design (see matmul.h); plain globals because they change
 * only while no product runs. */
static lb_matmul_observer g_observer;
static void *g_observer_user;

void lb_matmul_set_observer(lb_matmul_observer fn, void *user)
{
    g_observer = fn;
    g_observer_user = user;
}

size_t lb_matmul_scratch(uint32_t type, int64_t cols, int64_t n)
{
    const lb_quant_traits *q = lb_quant_ref(type);
    if (!q)
        return 0;
    if (q->act_type == LB_TYPE_F32)
        return 0;   /* f32 activations are used in place */
    return lb_type_row_bytes(q->act_type, cols) * (size_t)n;
}

void lb_matmul(lb_pool *pool, const lb_matw *w, const float *x, int64_t n, float *y, void *scratch)
{
    if (g_observer)
        g_observer(g_observer_user, w->data, w->rows, w->cols, x, n);
    const lb_kernel_set *k = lb_kernels();
    const lb_quant_traits *q = lb_quant_ref(w->type);
    job j = {w, x, y, n, (void *)(uintptr_t)x, w->cols * sizeof(float), NULL, k->vec_dot[w->type], k->vec_dot4[w->type], 0};
    atomic_init(&j.next_row, 0);
    if (q->act_type != LB_TYPE_F32) {
        j.act = scratch;
        j.act_row = lb_type_row_bytes(q->act_type, w->cols);
        j.quantize = k->quantize[q->act_type];
        if (n == 1)
            quantize_rows(&j, 0, 1);
        else
            lb_pool_run(pool, quantize_rows, &j);
    }
    lb_pool_run(pool, dot_rows, &j);
}
