/* Threaded matrix products: activations are converted once to the weight
 * type's activation format, then the threads claim small tiles of weight
 * rows from a shared counter, so a tile stays in cache while every
 * activation row passes over it. */
#include "matmul.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/once.h"
#include "kernels.h"

/* Rows per tile: small enough that a tile of the widest rows (f32, 5632
 * columns) plus one activation row fits in L2, large enough to amortise the
 * loop overhead. */
#define TILE_ROWS 16
/* Decode and small batches (at most DECODE_ROWS activation rows) reuse no
 * weight tile across activation rows, and there 16-row tiles claimed in turn
 * by the threads break each one's read of the weights into short strided runs
 * that the hardware prefetcher loses: two threads read hardly faster than one
 * (Q4_0 1.1B: 28 tok/s either way; 44 with 128-row tiles).  So decode tiles
 * are half of each thread's share, between 16 and 256 rows: half rather than
 * a quarter because every call of a gemm8 kernel first rearranges its eight
 * activation rows, which a short tile does not repay (techdocs-28M Q4_K_M, 8
 * streams +1.7%, one stream +3%; 16-row tiles -10%), and not the whole
 * share, so a preempted thread's tile can still be taken by the other.
 * Batches of up to 32 rows (a server step: 8 streams plus a prompt chunk)
 * take them too: with 16-row tiles 16 rows took 5.0 ms, with these 3.7 (two
 * 8-row steps: 3.9). */
#define DECODE_ROWS 8
#define DECODE_TILE_BATCH 32
#define DECODE_TILE_MAX 256

/* For types without arranged rows (gemm8p; see PAIRS_TAIL_MIN for those):
 * rows past the last multiple of 8 from which one more 8-row product (gemm8)
 * beats the 4-row and single-row kernels: techdocs-28M Q4_K_M decode steps of
 * 5, 6 and 7 rows took 2.13, 2.78 and 3.31 ms against 1.98 ms for 8 (4: 1.55).
 * Three rows are no cheaper as single rows either: alone they take the padded
 * 8-row product, after more rows the 4-row kernel on the last four (paired
 * runs: 3 streams +14%, 11 streams +6%). */
#define GEMM8_TAIL_MIN 5
/* Tails (after 8-row groups) and batches (under 8 rows) from which arranged
 * rows (gemm8p, where a type has it) take the row pairs that hold them
 * rather than the 4-row and single-row kernels: techdocs-28M Q4_K_M, paired
 * runs, 2 to 7 streams +45%, +32%, +27%, +13%, +12%, +2%; 11 streams +15%;
 * prompts of 10, 11, 12, 14 tokens +23%, +13%, +12%, +7%.  A tail of one
 * row was no faster either way (pp9, 9 streams: 1.007, 0.993). */
#define PAIRS_TAIL_MIN 2
#define PAIRS_SMALL_MIN 2
/* Where neither exists but the 8-row kernel vec_dot8 does (AVX2 without
 * AVX-512): rows from which it beats the 4-row and single-row kernels on a
 * tail or a batch under 8 (LB_ISA=avx2, paired runs against the 4-row
 * kernel and single rows: 5 streams 0.868, 6: 1.047, 7: 1.243, 13: 0.929,
 * 14: 1.040). */
#define DOT8_TAIL_MIN 6
/* Largest padded copy of fewer than 8 activation rows (8 rows of 64 A8_K blocks). */
#define PAD_MAX_BYTES (8 * 64 * 292)

/* Below this many activation elements the conversion runs on the calling
 * thread: it takes microseconds, less than waking the pool and waiting for
 * it, which on a shared machine can cost a whole time slice. */
#define QUANTIZE_INLINE_MAX 16384

typedef struct job {
    const lb_matw *w;     /* [nw] weights sharing cols and activation type */
    float *const *y;      /* [nw] their outputs, y[i]: [n][w[i].rows] */
    int nw;
    int64_t tiles[LB_MATMUL_MAX_FUSED];   /* tiles of each weight */
    int64_t tile_rows[LB_MATMUL_MAX_FUSED];   /* rows per tile of each weight */
    const float *x;       /* [n][cols] */
    int64_t n, cols;
    void *act;            /* [n][act_row] activation rows in act_type */
    size_t act_row;
    lb_quant_fn quantize;
    const void *pad;      /* NULL, or [8][act_row]: the n < 8 rows, then copies of the last (tail_gemm8) */
    /* NULL, or weight i's gemm8p arrangement of each 8-row group (rows 8g..8g+7, then the last eight when a
     * tail takes one more 8-row product), prep_bytes[i] apart; weights of one type share it */
    const char *prep[LB_MATMUL_MAX_FUSED];
    size_t prep_bytes[LB_MATMUL_MAX_FUSED];
    /* Next unclaimed tile, over the weights one after another.  Tiles are
     * claimed, not pre-assigned: on a shared or oversubscribed machine a
     * descheduled thread would otherwise hold its whole band back while the
     * others sit idle at the barrier.  Each row's result depends only on
     * that row, so who computes it never changes the output. */
    atomic_int_fast64_t next_tile;
    atomic_int_fast64_t next_act;   /* next activation row to convert */
} job;

/* lb__matmul_force_kernels' set, or NULL: the dispatched one. */
static const lb_kernel_set *g_forced;

void lb__matmul_force_kernels(const lb_kernel_set *k) { g_forced = k; }

static const lb_kernel_set *kernels(void) { return g_forced ? g_forced : lb_kernels(); }

static void quantize_rows(void *ctx, int ith, int nth)
{
    job *j = ctx;
    (void)ith;
    (void)nth;
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&j->next_act, 1, memory_order_relaxed);
        if (t >= j->n)
            break;
        j->quantize(j->x + t * j->cols, (char *)j->act + (size_t)t * j->act_row, j->cols);
    }
}

static void dot_tile(const job *j, int wi, float *y, const lb_kernel_set *k, int64_t r0, int64_t r1)
{
    const lb_matw *w = &j->w[wi];
    const char *prep = j->prep[wi];
    lb_gemm8p_fn gemm8p = k->gemm8p[w->type];
    lb_vec_dot_fn dot = k->vec_dot[w->type];
    lb_vec_dot4_fn dot4 = k->vec_dot4[w->type], dot8 = k->vec_dot8[w->type];
    lb_gemm8_fn gemm8 = k->gemm8[w->type];
    int64_t t = 0;
    const char *wt = (const char *)w->data + (size_t)r0 * w->row_bytes;
    /* The whole tile against eight activation rows at a time (same bits as dot). */
    for (; gemm8 && t + 8 <= j->n; t += 8) {
        if (prep)
            gemm8p(w->cols, r1 - r0, y + t * w->rows + r0, w->rows, wt, w->row_bytes,
                   prep + (size_t)(t / 8) * j->prep_bytes[wi], 0);
        else
            gemm8(w->cols, r1 - r0, y + t * w->rows + r0, w->rows, wt, w->row_bytes,
                  (const char *)j->act + (size_t)t * j->act_row, j->act_row);
    }
    /* Arranged rows: a tail is the last rows of the last arranged eight (the rows of a batch under 8, after
     * copies of its first), and the kernel computes only the pairs that hold it. */
    if (prep && t < j->n && j->n - t >= (j->n < 8 ? PAIRS_SMALL_MIN : PAIRS_TAIL_MIN)) {
        const int m = (int)(j->n - t);
        const char *last = prep + (size_t)(j->n / 8) * j->prep_bytes[wi];
        if (j->n >= 8) {
            gemm8p(w->cols, r1 - r0, y + (j->n - 8) * w->rows + r0, w->rows, wt, w->row_bytes, last, 8 - m);
            t = j->n;
        } else if (r1 - r0 <= DECODE_TILE_MAX) {
            float out[8 * DECODE_TILE_MAX];   /* [8][r1 - r0], rows 8 - m .. 7 written */
            gemm8p(w->cols, r1 - r0, out, r1 - r0, wt, w->row_bytes, last, 8 - m);
            for (int q = 0; q < m; q++)
                memcpy(y + q * w->rows + r0, out + (8 - m + q) * (r1 - r0), (size_t)(r1 - r0) * sizeof *out);
            t = j->n;
        }
    }
    /* Without arranged rows, a tail of GEMM8_TAIL_MIN or more rows takes one more 8-row product: the last eight
     * rows again (their results are the same bits, written twice by this thread), or for fewer than 8 rows in
     * all the padded copy, through a buffer. */
    if (gemm8 && j->n - t >= GEMM8_TAIL_MIN && j->n >= 8) {
        gemm8(w->cols, r1 - r0, y + (j->n - 8) * w->rows + r0, w->rows, wt, w->row_bytes,
              (const char *)j->act + (size_t)(j->n - 8) * j->act_row, j->act_row);
        t = j->n;
    } else if (gemm8 && j->n - t >= 3 && j->pad && r1 - r0 <= DECODE_TILE_MAX) {
        float out[8 * DECODE_TILE_MAX];   /* [8][r1 - r0] */
        gemm8(w->cols, r1 - r0, out, r1 - r0, wt, w->row_bytes, j->pad, j->act_row);
        for (; t < j->n; t++)
            memcpy(y + t * w->rows + r0, out + t * (r1 - r0), (size_t)(r1 - r0) * sizeof *out);
    }
    /* Eight, then four activation rows at a time share each weight block's unpacking (same bits as dot). */
    for (; dot8 && t + 8 <= j->n; t += 8) {
        const void *a = (const char *)j->act + (size_t)t * j->act_row;
        float *yt = y + t * w->rows;
        for (int64_t r = r0; r < r1; r++)
            dot8(w->cols, &yt[r], w->rows, (const char *)w->data + (size_t)r * w->row_bytes, a, j->act_row);
    }
    /* A tail of DOT8_TAIL_MIN or more rows: the 8-row kernel once more, on the last eight rows (some results
     * written twice, the same bits) or on the padded copy of a batch under 8. */
    if (dot8 && j->n - t >= DOT8_TAIL_MIN) {
        if (j->n >= 8) {
            const void *a = (const char *)j->act + (size_t)(j->n - 8) * j->act_row;
            float *yt = y + (j->n - 8) * w->rows;
            for (int64_t r = r0; r < r1; r++)
                dot8(w->cols, &yt[r], w->rows, (const char *)w->data + (size_t)r * w->row_bytes, a, j->act_row);
            t = j->n;
        } else if (j->pad && r1 - r0 <= DECODE_TILE_MAX) {
            float out[8 * DECODE_TILE_MAX];   /* [8][r1 - r0] */
            for (int64_t r = r0; r < r1; r++)
                dot8(w->cols, &out[r - r0], r1 - r0, (const char *)w->data + (size_t)r * w->row_bytes, j->pad,
                     j->act_row);
            for (; t < j->n; t++)
                memcpy(y + t * w->rows + r0, out + t * (r1 - r0), (size_t)(r1 - r0) * sizeof *out);
        }
    }
    for (; dot4 && t + 4 <= j->n; t += 4) {
        const void *a = (const char *)j->act + (size_t)t * j->act_row;
        float *yt = y + t * w->rows;
        for (int64_t r = r0; r < r1; r++)
            dot4(w->cols, &yt[r], w->rows, (const char *)w->data + (size_t)r * w->row_bytes, a, j->act_row);
    }
    /* A tail of three rows: the last four through the 4-row kernel (one row again, the same bits). */
    if (dot4 && j->n - t == 3 && j->n >= 4) {
        const void *a = (const char *)j->act + (size_t)(j->n - 4) * j->act_row;
        float *yt = y + (j->n - 4) * w->rows;
        for (int64_t r = r0; r < r1; r++)
            dot4(w->cols, &yt[r], w->rows, (const char *)w->data + (size_t)r * w->row_bytes, a, j->act_row);
        t = j->n;
    }
    lb_vec_dot_w4_fn dotw4 = k->vec_dot_w4[w->type];
    for (; t < j->n; t++) {
        const void *a = (const char *)j->act + (size_t)t * j->act_row;
        float *yt = y + t * w->rows;
        int64_t r = r0;
        /* four weight rows at a time share the activation's work (same bits as dot) */
        for (; dotw4 && r + 4 <= r1; r += 4)
            dotw4(w->cols, &yt[r], (const char *)w->data + (size_t)r * w->row_bytes, w->row_bytes, a);
        for (; r < r1; r++)
            dot(w->cols, &yt[r], (const char *)w->data + (size_t)r * w->row_bytes, a);
    }
}

static void dot_rows(void *ctx, int ith, int nth)
{
    job *j = ctx;
    const lb_kernel_set *k = kernels();
    (void)ith;
    (void)nth;
    for (;;) {
        int64_t tile = atomic_fetch_add_explicit(&j->next_tile, 1, memory_order_relaxed);
        int i = 0;
        while (i < j->nw && tile >= j->tiles[i])
            tile -= j->tiles[i++];
        if (i == j->nw)
            break;
        const lb_matw *w = &j->w[i];
        int64_t r0 = tile * j->tile_rows[i];
        int64_t r1 = r0 + j->tile_rows[i] < w->rows ? r0 + j->tile_rows[i] : w->rows;
        dot_tile(j, i, j->y[i], k, r0, r1);
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

/* The first of the product's weights with w[i]'s type: weights of one type share their arranged groups. */
static int first_of_type(const lb_matw *w, int i)
{
    int h = 0;
    while (w[h].type != w[i].type)
        h++;
    return h;
}

/* The calling thread's buffer for arranged rows and padded copies, kept from
 * product to product and grown as needed: a decode step makes dozens of
 * products of a few microseconds each, and a heap block apiece showed as
 * resident memory growth under ASan (whose quarantine keeps freed blocks). */
typedef struct thread_buf {
    void *p;
    size_t n;
} thread_buf;

static pthread_key_t g_buf_key;
static bool g_buf_key_ok;
static lb_once g_buf_once = LB_ONCE_INIT;

static void thread_buf_free(void *v)
{
    thread_buf *b = v;
    lb_aligned_free(b->p);
    free(b);
}

static void thread_buf_init(void) { g_buf_key_ok = pthread_key_create(&g_buf_key, thread_buf_free) == 0; }

/* 64-byte aligned room for n bytes, valid until this thread's next call; NULL if out of memory. */
static void *thread_buf_get(size_t n)
{
    lb_once_run(&g_buf_once, thread_buf_init);
    if (!g_buf_key_ok)
        return NULL;
    thread_buf *b = pthread_getspecific(g_buf_key);
    if (!b) {
        if (!(b = calloc(1, sizeof *b)))
            return NULL;
        if (pthread_setspecific(g_buf_key, b) != 0) {
            free(b);
            return NULL;
        }
    }
    if (b->n < n) {
        void *p = lb_aligned_alloc(64, n);
        if (!p)
            return NULL;
        lb_aligned_free(b->p);
        b->p = p;
        b->n = n;
    }
    return b->p;
}

/* A decode-sized batch meets every tile of every weight with the same 8-row
 * groups: arranged once here for the gemm8p kernels rather than in each
 * tile's gemm8 call (8 streams: 2.7% of the step's samples were that
 * arranging).  Sets j->prep and j->prep_bytes (in the thread's buffer) and
 * returns whether it did (if not, the tiles take gemm8). */
static bool arrange_groups(job *j, const lb_kernel_set *k)
{
    const lb_matw *w = j->w;
    const int64_t n = j->n, groups = n < 8 ? 1 : n / 8 + (n % 8 >= PAIRS_TAIL_MIN);
    size_t total = 0;
    for (int i = 0; i < j->nw; i++) {
        lb_gemm8_prep_bytes_fn bytes = k->gemm8_prep_bytes[w[i].type];
        j->prep_bytes[i] = bytes && k->gemm8p[w[i].type] ? bytes(w[i].cols) : 0;
        if (!j->prep_bytes[i])
            return false;
        if (first_of_type(w, i) == i)
            total += j->prep_bytes[i] * (size_t)groups;
    }
    /* fewer than 8 rows: copies of the first, then the n rows (their tail is the last n of eight) */
    char *buf = thread_buf_get(total + (n < 8 ? 8 * j->act_row : 0));
    if (!buf)
        return false;
    const char *src = j->act;
    if (n < 8) {
        char *pad = buf + total;
        for (int64_t t = 0; t < 8; t++)
            memcpy(pad + t * j->act_row, (const char *)j->act + (t < 8 - n ? 0 : t - (8 - n)) * j->act_row, j->act_row);
        src = pad;
    }
    size_t off = 0;
    for (int i = 0; i < j->nw; i++) {
        const int h = first_of_type(w, i);
        if (h < i) {
            j->prep[i] = j->prep[h];
            continue;
        }
        j->prep[i] = buf + off;
        for (int64_t g = 0; g < groups; g++) {
            const int64_t row = n < 8 ? 0 : g < n / 8 ? 8 * g : n - 8;   /* the last group: a tail's last eight rows */
            k->gemm8_prep[w[i].type](w[i].cols, src + (size_t)row * j->act_row, j->act_row,
                                     buf + off + (size_t)g * j->prep_bytes[i]);
        }
        off += j->prep_bytes[i] * (size_t)groups;
    }
    return true;
}

static void run(lb_pool *pool, const lb_matw *w, int nw, const float *x, int64_t n, float *const *y, void *scratch,
                bool converted)
{
    const lb_kernel_set *k = kernels();
    const lb_quant_traits *q = lb_quant_ref(w[0].type);
    job j = {w, y, nw, {0}, {0}, x, n, w[0].cols, (void *)(uintptr_t)x, (size_t)w[0].cols * sizeof(float), NULL,
             NULL, {NULL}, {0}, 0, 0};
    atomic_init(&j.next_tile, 0);
    atomic_init(&j.next_act, 0);
    int64_t nth = pool ? lb_pool_size(pool) : 1;
    for (int i = 0; i < nw; i++) {
        if (g_observer)
            g_observer(g_observer_user, w[i].data, w[i].rows, w[i].cols, x, n);
        int64_t tr = TILE_ROWS;
        if (n <= DECODE_TILE_BATCH) {
            tr = w[i].rows / (2 * (nth > 0 ? nth : 1)) / TILE_ROWS * TILE_ROWS;
            tr = tr < TILE_ROWS ? TILE_ROWS : tr > DECODE_TILE_MAX ? DECODE_TILE_MAX : tr;
        }
        j.tile_rows[i] = tr;
        j.tiles[i] = (w[i].rows + tr - 1) / tr;
    }
    if (q->act_type != LB_TYPE_F32) {
        j.act = scratch;
        j.act_row = lb_type_row_bytes(q->act_type, w[0].cols);
        j.quantize = k->quantize[q->act_type];
        if (!converted && n * w[0].cols <= QUANTIZE_INLINE_MAX)
            quantize_rows(&j, 0, 1);
        else if (!converted)
            lb_pool_run_claimed(pool, quantize_rows, &j);
    }
    const bool arranged = n >= (n < 8 ? PAIRS_SMALL_MIN : 8) && n <= DECODE_TILE_BATCH && arrange_groups(&j, k);
    char *pad = NULL;
    if (!arranged && n < 8 &&
        ((k->gemm8[w[0].type] && (n >= GEMM8_TAIL_MIN || n == 3)) || (k->vec_dot8[w[0].type] && n >= DOT8_TAIL_MIN)) &&
        8 * j.act_row <= PAD_MAX_BYTES &&
        (pad = thread_buf_get(8 * j.act_row))) {
        for (int64_t t = 0; t < 8; t++)
            memcpy(pad + t * j.act_row, (const char *)j.act + (t < n ? t : n - 1) * j.act_row, j.act_row);
        j.pad = pad;
    }
    lb_pool_run_claimed(pool, dot_rows, &j);
}

void lb_matmul(lb_pool *pool, const lb_matw *w, const float *x, int64_t n, float *y, void *scratch)
{
    run(pool, w, 1, x, n, &y, scratch, false);
}

/* Whether weights w[0..nw) run as one product reading one activation format. */
static bool fusable(const lb_matw *w, int nw)
{
    const lb_quant_traits *q0 = lb_quant_ref(w[0].type);
    bool same = nw <= LB_MATMUL_MAX_FUSED;
    for (int i = 1; same && i < nw; i++)
        same = w[i].cols == w[0].cols && lb_quant_ref(w[i].type)->act_type == q0->act_type;
    return same;
}

bool lb_matmul_input(const lb_matw *w, int nw, lb_matmul_in *in)
{
    const lb_quant_traits *q = lb_quant_ref(w[0].type);
    if (nw < 1 || !fusable(w, nw) || q->act_type == LB_TYPE_F32)
        return false;
    in->quantize = lb_kernels()->quantize[q->act_type];
    in->cols = w[0].cols;
    in->row_bytes = lb_type_row_bytes(q->act_type, w[0].cols);
    return true;
}

void lb_matmul_input_row(const lb_matmul_in *in, const float *x, int64_t t, void *scratch)
{
    in->quantize(x, (char *)scratch + (size_t)t * in->row_bytes, in->cols);
}

void lb_matmul_fused_in(lb_pool *pool, const lb_matw *w, int nw, const float *x, int64_t n, float *const *y,
                        void *scratch, bool converted)
{
    if (fusable(w, nw)) {
        run(pool, w, nw, x, n, y, scratch, converted);
        return;
    }
    for (int i = 0; i < nw; i++)
        run(pool, &w[i], 1, x, n, &y[i], scratch, false);
}

void lb_matmul_fused(lb_pool *pool, const lb_matw *w, int nw, const float *x, int64_t n, float *const *y,
                     void *scratch)
{
    lb_matmul_fused_in(pool, w, nw, x, n, y, scratch, false);
}
