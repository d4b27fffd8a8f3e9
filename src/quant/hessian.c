/* Hessian files: collection of E[x x^T] per weight through the lb_matmul
 * observer, and the GGUF file that carries them to the quantizer. */
#include "quant/hessian.h"
#include "quant/calib_table.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest H a file may hold: 16384^2 floats is 1 GiB, beyond any model this
 * engine quantizes on one machine, and it bounds what a hostile file costs. */
#define MAX_COLS 16384

typedef lb__calib_entry entry;

struct lb_hessian {
    lb__calib_table t;       /* the tensors, in registration (or file) order */
    lb_hessian_meta meta;
    char *dataset;       /* owned copy behind meta.dataset */
    /* the last product computed, reused when the next product has the same input */
    const float *last_x; /* identity of the last input (pointer) */
    float *last_copy;    /* [last_n][last_cols] its values, to confirm the identity */
    int64_t last_n, last_cols;
    float *prod;         /* [last_cols][last_cols] x^T x of it, upper triangle */
    size_t copy_cap, prod_cap;
};

lb_hessian *lb_hessian_new(void)
{
    lb_hessian *h = calloc(1, sizeof *h);
    if (h)
        h->meta.dataset = "";
    return h;
}

void lb_hessian_free(lb_hessian *h)
{
    if (!h)
        return;
    lb__calib_table_free(&h->t);
    free(h->dataset);
    free(h->last_copy);
    free(h->prod);
    free(h);
}

static int64_t find_name(const lb_hessian *h, const char *name)
{
    return lb__calib_find_name(&h->t, name);
}

/* Appends an entry: sums when collecting (key != NULL), means when loading. */
static lb_status add_entry(lb_hessian *h, const char *name, const void *key, int64_t cols, lb_err *err)
{
    size_t nn = (size_t)cols * (size_t)cols;
    if (!lb__calib_append(&h->t, name, key, cols, key ? nn : 0, key ? 0 : nn))
        return lb__errf(err, LB_ERR_NOMEM, "hessian: out of memory for tensor %s (%" PRId64 " x %" PRId64 ")", name,
                        cols, cols);
    return LB_OK;
}

lb_status lb_hessian_track_gguf(lb_hessian *h, const lb_gguf *g, int64_t max_cols, lb_err *err)
{
    if (!h || !g)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_hessian_track_gguf: no collector or file");
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        if (t->n_dims < 2 || t->nbytes == 0 || t->ne[0] > MAX_COLS || (max_cols > 0 && t->ne[0] > max_cols))
            continue;
        char name[256];
        if (t->name.len >= sizeof name)
            return lb__errf(err, LB_ERR_UNSUPPORTED, "tensor %" PRId64 ": name longer than %zu bytes", i,
                            sizeof name - 1);
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = 0;
        if (find_name(h, name) >= 0)
            return lb__errf(err, LB_ERR_INVALID_ARG, "hessian: tensor %s registered twice", name);
        lb_status st = add_entry(h, name, t->data, t->ne[0], err);
        if (st)
            return st;
    }
    return LB_OK;
}

/* prod[cols][cols] (upper triangle, j >= i) = x^T x for x[n][cols].  Tiles
 * of 16 rows x 256 columns of the product stay in L1 while all n tokens
 * stream past; the inner loop is an axpy that compilers vectorise without
 * reassociating. */
static void xtx_upper(const float *x, int64_t n, int64_t cols, float *prod)
{
    enum { TI = 16, TJ = 256 };
    for (int64_t i0 = 0; i0 < cols; i0 += TI) {
        int64_t i1 = i0 + TI < cols ? i0 + TI : cols;
        for (int64_t j0 = i0; j0 < cols; j0 += TJ) {
            int64_t j1 = j0 + TJ < cols ? j0 + TJ : cols;
            float tile[TI][TJ]; /* [i - i0][j - j0] */
            memset(tile, 0, sizeof tile);
            for (int64_t t = 0; t < n; t++) {
                const float *xt = x + t * cols; /* [cols] */
                for (int64_t i = i0; i < i1; i++) {
                    float a = xt[i];
                    float *row = tile[i - i0];
                    for (int64_t j = j0; j < j1; j++)
                        row[j - j0] += a * xt[j];
                }
            }
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = (j0 > i ? j0 : i); j < j1; j++)
                    prod[i * cols + j] = tile[i - i0][j - j0];
        }
    }
}

void lb_hessian_observe(void *user, const void *weight_data, int64_t rows, int64_t cols, const float *x, int64_t n)
{
    lb_hessian *h = user;
    (void)rows;
    if (h->t.n == 0 || n < 1)
        return;
    int64_t i = h->t.last, k = 0;
    for (; k < h->t.n; k++, i = (i + 1) % h->t.n)
        if (h->t.e[i].key == weight_data)
            break;
    if (k == h->t.n)
        return;
    h->t.last = (i + 1) % h->t.n;
    entry *e = &h->t.e[i];
    if (cols != e->cols)
        return;
    size_t nx = (size_t)n * (size_t)cols, np = (size_t)cols * (size_t)cols;
    bool same = h->last_x == x && h->last_n == n && h->last_cols == cols && h->last_copy &&
                !memcmp(h->last_copy, x, nx * sizeof *x);
    if (!same) {
        if (h->copy_cap < nx) {
            free(h->last_copy);
            h->last_copy = malloc(nx * sizeof *x);
            h->copy_cap = h->last_copy ? nx : 0;
        }
        if (h->prod_cap < np) {
            free(h->prod);
            h->prod = malloc(np * sizeof *h->prod);
            h->prod_cap = h->prod ? np : 0;
        }
        if (!h->last_copy || !h->prod) {
            h->last_x = NULL;
            return; /* out of memory: this product goes uncounted (rows_seen shows it) */
        }
        memcpy(h->last_copy, x, nx * sizeof *x);
        xtx_upper(x, n, cols, h->prod);
        h->last_x = x;
        h->last_n = n;
        h->last_cols = cols;
    }
    for (int64_t r = 0; r < cols; r++)
        for (int64_t c = r; c < cols; c++)
            e->sum[r * cols + c] += h->prod[r * cols + c];
    e->rows_seen += n;
}

/* Fills e->mean from the sums (mirroring the upper triangle); false when out of memory. */
static bool fill_mean(entry *e)
{
    int64_t c = e->cols;
    if (!e->mean && !(e->mean = malloc((size_t)c * (size_t)c * sizeof *e->mean)))
        return false;
    for (int64_t r = 0; r < c; r++)
        for (int64_t k = r; k < c; k++) {
            float v = (float)(e->sum[r * c + k] / (double)e->rows_seen);
            e->mean[r * c + k] = v;
            e->mean[k * c + r] = v;
        }
    return true;
}

lb_status lb_hessian_write(const lb_hessian *h, const char *path, const lb_hessian_meta *meta, lb_err *err)
{
    if (!h || !path)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_hessian_write: no collector or path");
    lb_gguf_writer *w = lb_gguf_writer_new();
    if (!w)
        return lb__errf(err, LB_ERR_NOMEM, "out of memory");
    lb_hessian_meta none = {0, 0, ""};
    if (!meta)
        meta = &none;
    lb_status st = LB_OK;
    int64_t written = 0;
    uint32_t chunks = (uint32_t)(meta->chunks > 0 ? (meta->chunks < UINT32_MAX ? meta->chunks : UINT32_MAX) : 0);
    if ((st = lb_gguf_writer_set_str(w, "general.type", "hessian")) ||
        (st = lb_gguf_writer_set_u32(w, LB_HESSIAN_KEY_CHUNKS, chunks)) ||
        (st = lb_gguf_writer_set_u64(w, LB_HESSIAN_KEY_TOKENS, (uint64_t)(meta->tokens > 0 ? meta->tokens : 0))) ||
        (st = lb_gguf_writer_set_str(w, LB_HESSIAN_KEY_DATASET, meta->dataset ? meta->dataset : ""))) {
        st = lb__errf(err, st, "%s: cannot set the metadata", path);
        goto out;
    }
    for (int64_t i = 0; i < h->t.n; i++) {
        entry *e = &h->t.e[i];
        if (!e->sum || e->rows_seen == 0)
            continue;
        if (!fill_mean(e)) {
            st = lb__errf(err, LB_ERR_NOMEM, "%s: out of memory for tensor %s", path, e->name);
            goto out;
        }
        int64_t ne[2] = {e->cols, e->cols};
        if ((st = lb_gguf_writer_add_tensor(w, e->name, LB_TYPE_F32, 2, ne, e->mean))) {
            st = lb__errf(err, st, "%s: cannot add tensor %s", path, e->name);
            goto out;
        }
        written++;
    }
    if (!written) {
        st = lb__errf(err, LB_ERR_NOT_FOUND, "%s: no tracked tensor saw any activations; nothing to write", path);
        goto out;
    }
    if ((st = lb_gguf_writer_write(w, path, err)))
        lb__err_prefix(err, "writing %s: ", path);
out:
    lb_gguf_writer_free(w);
    return st;
}

/* Checks a loaded [c][c] matrix: finite, non-negative diagonal, symmetric
 * within float rounding of the sums (relative to the diagonal scale). */
static lb_status check_matrix(const char *path, const char *name, const float *m, int64_t c, lb_err *err)
{
    for (int64_t r = 0; r < c; r++)
        for (int64_t k = 0; k < c; k++)
            if (!isfinite(m[r * c + k]))
                return lb__errf(err, LB_ERR_FORMAT, "%s: tensor %s, element [%" PRId64 "][%" PRId64 "]: %g is not finite",
                                path, name, r, k, (double)m[r * c + k]);
    for (int64_t r = 0; r < c; r++)
        if (!(m[r * c + r] >= 0))
            return lb__errf(err, LB_ERR_FORMAT, "%s: tensor %s, diagonal element %" PRId64 ": %g is negative", path,
                            name, r, (double)m[r * c + r]);
    for (int64_t r = 0; r < c; r++)
        for (int64_t k = r + 1; k < c; k++) {
            double a = m[r * c + k], b = m[k * c + r];
            double tol = 1e-5 * sqrt((double)m[r * c + r] * m[k * c + k]) + 1e-30;
            if (fabs(a - b) > tol)
                return lb__errf(err, LB_ERR_FORMAT, "%s: tensor %s is not symmetric: [%" PRId64 "][%" PRId64
                                "] = %g, [%" PRId64 "][%" PRId64 "] = %g", path, name, r, k, a, k, r, b);
        }
    return LB_OK;
}

/* Reads the entries of an open GGUF view; label names it in messages. */
static lb_status load_gguf(const lb_gguf *g, const char *label, lb_hessian **out, lb_err *err)
{
    lb_status st = LB_OK;
    lb_hessian *h = lb_hessian_new();
    lb_gguf_str s;
    int64_t v;
    if (!h) {
        st = lb__errf(err, LB_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (lb_gguf_get_str(g, "general.type", &s, NULL) != LB_OK || s.len != 7 || memcmp(s.ptr, "hessian", 7)) {
        st = lb__errf(err, LB_ERR_FORMAT, "%s: not a Hessian file (general.type is not \"hessian\"; make one with "
                      "`lowbit imatrix --hessian`)", label);
        goto out;
    }
    if (lb_gguf_get_int(g, LB_HESSIAN_KEY_CHUNKS, &v, NULL) == LB_OK)
        h->meta.chunks = v;
    if (lb_gguf_get_int(g, LB_HESSIAN_KEY_TOKENS, &v, NULL) == LB_OK)
        h->meta.tokens = v;
    if (lb_gguf_get_str(g, LB_HESSIAN_KEY_DATASET, &s, NULL) == LB_OK) {
        if (!(h->dataset = malloc(s.len + 1))) {
            st = lb__errf(err, LB_ERR_NOMEM, "out of memory");
            goto out;
        }
        memcpy(h->dataset, s.ptr, s.len);
        h->dataset[s.len] = 0;
        h->meta.dataset = h->dataset;
    }
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255), t->name.ptr);
        if (t->type != LB_TYPE_F32 || t->n_dims != 2 || t->ne[0] < 1 || t->ne[0] != t->ne[1] ||
            t->ne[0] > MAX_COLS) {
            st = lb__errf(err, LB_ERR_FORMAT, "%s: tensor %s is not an F32 [cols][cols] matrix (1 <= cols <= %d)",
                          label, name, MAX_COLS);
            goto out;
        }
        if (find_name(h, name) >= 0) {
            st = lb__errf(err, LB_ERR_FORMAT, "%s: tensor %s appears twice", label, name);
            goto out;
        }
        int64_t c = t->ne[0];
        if (t->nbytes != (uint64_t)c * (uint64_t)c * sizeof(float)) {
            st = lb__errf(err, LB_ERR_FORMAT, "%s: tensor %s has %" PRIu64 " bytes, not %" PRId64 "^2 floats", label,
                          name, (uint64_t)t->nbytes, c);
            goto out;
        }
        if ((st = add_entry(h, name, NULL, c, err)))
            goto out;
        float *m = h->t.e[h->t.n - 1].mean;
        memcpy(m, t->data, (size_t)c * (size_t)c * sizeof *m); /* the data may be unaligned */
        if ((st = check_matrix(label, name, m, c, err)))
            goto out;
    }
    *out = h;
    h = NULL;
out:
    lb_hessian_free(h);
    return st;
}

lb_status lb_hessian_load_err(const char *path, lb_hessian **out, lb_err *err)
{
    if (!path || !out)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_hessian_load: path and out are required");
    lb_gguf *g = NULL;
    lb_status st = lb_gguf_open_file(path, true, &g, err);
    if (st) {
        lb__err_prefix(err, "%s: ", path);
        return st;
    }
    st = load_gguf(g, path, out, err);
    lb_gguf_free(g);
    return st;
}

lb_status lb_hessian_load_memory(const void *data, size_t size, lb_hessian **out, lb_err *err)
{
    if (!data || !out)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_hessian_load_memory: data and out are required");
    lb_gguf *g = NULL;
    lb_status st = lb_gguf_open_memory(data, size, &g, err);
    if (st)
        return st;
    st = load_gguf(g, "(memory)", out, err);
    lb_gguf_free(g);
    return st;
}

lb_status lb_hessian_load(const char *path, lb_hessian **out)
{
    return lb_hessian_load_err(path, out, NULL);
}

const float *lb_hessian_find(const lb_hessian *h, const char *weight_name, int64_t *cols)
{
    if (!h || !weight_name)
        return NULL;
    int64_t i = find_name(h, weight_name);
    if (i < 0 || !h->t.e[i].mean)
        return NULL;
    if (cols)
        *cols = h->t.e[i].cols;
    return h->t.e[i].mean;
}

lb_hessian_meta lb_hessian_get_meta(const lb_hessian *h)
{
    lb_hessian_meta m = {0, 0, ""};
    return h ? h->meta : m;
}

int64_t lb_hessian_n_entries(const lb_hessian *h) { return h ? h->t.n : 0; }

const char *lb_hessian_name_at(const lb_hessian *h, int64_t i, int64_t *cols)
{
    if (!h || i < 0 || i >= h->t.n)
        return NULL;
    if (cols)
        *cols = h->t.e[i].cols;
    return h->t.e[i].name;
}
