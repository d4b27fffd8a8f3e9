/* GPTQ for the K-quants: column-order rounding of a whole matrix with the
 * error fed forward through the upper Cholesky factor of the damped inverse
 * input covariance, the K-quant scales chosen as the feedback reaches each
 * super-block (and re-chosen per sub-block), lazy batched updates. */
#include "quant/gptq_k.h"

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "format/tensor_type.h"
#include "quant/blocks.h"
#include "quant/ldlq.h"
#include "quant/quantize.h"

/* lambda = DAMP * mean(diag h), GPTQ's usual value.  On techdocs-28M q4_K
 * (8 chunks) 0.001 and 0.1 gave the same KL within noise. */
#define DAMP 0.01
/* Rows quantized together by one thread: the lazy update of the columns
 * after a 256-block reuses each row of U this many times. */
#define TILE_ROWS 16

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

typedef struct job {
    uint32_t type;
    const lb__kspec *k;
    const float *w;      /* [rows][cols] */
    int64_t rows, cols;
    const float *u;      /* [cols][cols] upper factor of H^-1 */
    const float *imp;    /* [cols] column weights of the scale search */
    uint8_t *out;        /* rows x row_bytes */
    size_t row_bytes, block_bytes;
    atomic_int_fast64_t next_tile;
    atomic_int failed;
} job;

/* Quantizes super-block [c0, c0 + 256) of one row whose current values are
 * x[256]; writes the block, and the scaled errors e[256] = (x - y) / U_ii
 * that the caller feeds to the later columns.  x is consumed (updated by
 * the feedback inside the block). */
static void quantize_block(const job *jb, int64_t c0, float *x, float *e, void *out)
{
    const lb__kspec *k = jb->k;
    const int64_t n = jb->cols;
    lb__kblock b;
    /* The column weights alone: lb__quant_weights' extra x-magnitude factor
     * helps plain rounding, but with the feedback it gave a higher KL
     * (techdocs-28M q4_K, 8 chunks: 0.0176 with it, 0.0164 without). */
    const float *wt = jb->imp + c0; /* [256] element weights of the scale search */
    lb__kquant_fit_block(k, x, wt, &b);
    for (int i = 0; i < LB_QK_K; i++) {
        int j = i / k->sub;
        if (i % k->sub == 0 && i > 0) {
            /* the sub-block's values have moved since the block was fitted */
            lb__kquant_fit_sub(k, x + i, wt + i, &b, j);
        }
        float dl = b.d * (float)b.sc[j], ml = k->affine ? b.dmin * (float)b.mn[j] : 0.0f;
        int q = dl != 0 ? clampi(lb__qround((x[i] + ml) * (1.0f / dl)), k->qlo, k->qhi) : clampi(0, k->qlo, k->qhi);
        b.L[i] = (int8_t)q;
        float y = dl * (float)q - ml;
        const float *ui = jb->u + (c0 + i) * n + c0;
        float err = (x[i] - y) / ui[i];
        e[i] = err;
        for (int t = i + 1; t < LB_QK_K; t++)
            x[t] -= err * ui[t];
    }
    lb__kquant_pack(jb->type, &b, out);
}

static void run_tiles(void *ctx, int ith, int nth)
{
    (void)ith;
    (void)nth;
    job *jb = ctx;
    const int64_t n = jb->cols, nb = n / LB_QK_K;
    float *wt = malloc((size_t)TILE_ROWS * (size_t)n * sizeof *wt);   /* [TILE_ROWS][cols] rows being fed back */
    float *et = malloc((size_t)TILE_ROWS * LB_QK_K * sizeof *et);     /* [TILE_ROWS][256] scaled errors of a block */
    if (!wt || !et) {
        atomic_store(&jb->failed, 1);
        free(wt);
        free(et);
        return;
    }
    const int64_t ntiles = (jb->rows + TILE_ROWS - 1) / TILE_ROWS;
    for (;;) {
        int64_t t = atomic_fetch_add(&jb->next_tile, 1);
        if (t >= ntiles || atomic_load(&jb->failed))
            break;
        int64_t r0 = t * TILE_ROWS, nr = jb->rows - r0 < TILE_ROWS ? jb->rows - r0 : TILE_ROWS;
        memcpy(wt, jb->w + r0 * n, (size_t)(nr * n) * sizeof *wt);
        for (int64_t blk = 0; blk < nb; blk++) {
            int64_t c0 = blk * LB_QK_K, c1 = c0 + LB_QK_K;
            for (int64_t r = 0; r < nr; r++)
                quantize_block(jb, c0, wt + r * n + c0, et + r * LB_QK_K,
                               jb->out + (size_t)(r0 + r) * jb->row_bytes + (size_t)blk * jb->block_bytes);
            if (c1 == n)
                break;
            /* lazy batch: the later columns get this block's errors at once */
            for (int i = 0; i < LB_QK_K; i++) {
                const float *ui = jb->u + (c0 + i) * n;
                for (int64_t r = 0; r < nr; r++) {
                    float err = et[r * LB_QK_K + i];
                    float *wr = wt + r * n;
                    if (err == 0)
                        continue;
                    for (int64_t c = c1; c < n; c++)
                        wr[c] -= err * ui[c];
                }
            }
        }
    }
    free(wt);
    free(et);
}

lb_status lb_gptq_k_quantize(uint32_t type, const float *w, int64_t rows, int64_t cols, const float *h,
                             const float *importance, void *out, int n_threads)
{
    const lb__kspec *k = lb__kquant_spec(type);
    if (!k || !w || !h || !out || rows < 0 || cols <= 0 || cols % LB_QK_K != 0 || cols > (1 << 20))
        return LB_ERR_INVALID_ARG;
    if (rows == 0)
        return LB_OK;
    for (int64_t i = 0; i < cols * cols; i++)
        if (!isfinite(h[i]))
            return LB_ERR_RANGE;
    float *u = malloc((size_t)cols * (size_t)cols * sizeof *u); /* [cols][cols] */
    float *imp = malloc((size_t)cols * sizeof *imp);            /* [cols] */
    if (!u || !imp) {
        free(u);
        free(imp);
        return LB_ERR_NOMEM;
    }
    /* The factor is LDLQ's (ldlq.c), unrotated: the same algebra serves both. */
    lb_ldlq_params lp = {.damp = DAMP, .rotate = false};
    lb_ldlq *f = NULL;
    lb_status st = lb_ldlq_new(h, cols, &lp, &f, NULL);
    if (st != LB_OK) {
        free(u);
        free(imp);
        return st;
    }
    memcpy(u, lb_ldlq_factor(f), (size_t)cols * (size_t)cols * sizeof *u);
    lb_ldlq_free(f);
    for (int64_t c = 0; c < cols; c++) {
        float v = importance ? importance[c] : h[c * cols + c];
        imp[c] = isfinite(v) && v > 0 ? v : 0.0f;
    }
    double mean = 0;
    for (int64_t c = 0; c < cols; c++)
        mean += imp[c];
    mean /= (double)cols;
    /* A floor, so that the weighted least-squares fits of a block whose
     * columns are all dead still have something to fit. */
    for (int64_t c = 0; c < cols; c++)
        imp[c] += (float)(1e-3 * mean) + 1e-30f;

    job jb = {.type = type, .k = k, .w = w, .rows = rows, .cols = cols, .u = u, .imp = imp, .out = out,
              .row_bytes = lb_type_row_bytes(type, cols), .block_bytes = lb_type_row_bytes(type, LB_QK_K)};
    atomic_init(&jb.next_tile, 0);
    atomic_init(&jb.failed, 0);
    int nt = n_threads > 0 ? n_threads : lb_cpu_count();
    int64_t ntiles = (rows + TILE_ROWS - 1) / TILE_ROWS;
    if (nt > ntiles)
        nt = (int)ntiles;
    lb_pool *pool = nt > 1 ? lb_pool_new(nt) : NULL;
    lb_pool_run(pool, run_tiles, &jb);
    lb_pool_free(pool);
    free(u);
    free(imp);
    return atomic_load(&jb.failed) ? LB_ERR_NOMEM : LB_OK;
}
