/* Importance matrices: collection through the lb_matmul observer, and the
 * GGUF file that carries them from `lowbit imatrix` to `lowbit quantize`. */
#include "quant/imatrix.h"
#include "quant/calib_table.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef lb__calib_entry entry;

struct lb_imatrix {
    lb__calib_table t;       /* the tensors, in registration (or file) order */
    int64_t n_untracked;
    char bad_name[96];       /* the first tensor whose product had the wrong shape, or "" */
    int64_t bad_cols;
    lb_imatrix_meta meta;
    char *dataset;           /* owned copy behind meta.dataset */
};

lb_imatrix *lb_imatrix_new(void)
{
    lb_imatrix *im = calloc(1, sizeof *im);
    if (im)
        im->meta.dataset = "";
    return im;
}

void lb_imatrix_free(lb_imatrix *im)
{
    if (!im)
        return;
    lb__calib_table_free(&im->t);
    free(im->dataset);
    free(im);
}

static int64_t find_name(const lb_imatrix *im, const char *name)
{
    return lb__calib_find_name(&im->t, name);
}

/* Appends an entry with room for cols means (and sums when collecting). */
static lb_status add_entry(lb_imatrix *im, const char *name, const void *key, int64_t cols, lb_err *err)
{
    if (!lb__calib_append(&im->t, name, key, cols, key ? (size_t)cols : 0, (size_t)cols))
        return lb__errf(err, LB_ERR_NOMEM, "importance matrix: out of memory for tensor %s (%" PRId64 " columns)",
                        name, cols);
    return LB_OK;
}

lb_status lb_imatrix_track(lb_imatrix *im, const char *name, const void *weight_data, int64_t cols, lb_err *err)
{
    if (!im || !name || !weight_data || cols < 1)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_imatrix_track: bad arguments for tensor %s", name ? name : "?");
    if (find_name(im, name) >= 0)
        return lb__errf(err, LB_ERR_INVALID_ARG, "importance matrix: tensor %s registered twice", name);
    for (int64_t i = 0; i < im->t.n; i++)
        if (im->t.e[i].key == weight_data)
            return lb__errf(err, LB_ERR_INVALID_ARG, "importance matrix: tensors %s and %s share their data",
                            im->t.e[i].name, name);
    return add_entry(im, name, weight_data, cols, err);
}

lb_status lb_imatrix_track_gguf(lb_imatrix *im, const lb_gguf *g, lb_err *err)
{
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        if (t->n_dims < 2 || t->nbytes == 0)
            continue;
        char name[256];
        if (t->name.len >= sizeof name)
            return lb__errf(err, LB_ERR_UNSUPPORTED, "tensor %" PRId64 ": name longer than %zu bytes", i,
                            sizeof name - 1);
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = 0;
        lb_status st = lb_imatrix_track(im, name, t->data, t->ne[0], err);
        if (st)
            return st;
    }
    return LB_OK;
}

void lb_imatrix_observe(void *user, const void *weight_data, int64_t rows, int64_t cols, const float *x, int64_t n)
{
    lb_imatrix *im = user;
    (void)rows;
    if (im->t.n == 0) {
        im->n_untracked++;
        return;
    }
    /* Start the search at the entry after the last hit: a forward pass
     * multiplies by the weights in the same order every time. */
    int64_t i = im->t.last, k = 0;
    for (; k < im->t.n; k++, i = (i + 1) % im->t.n)
        if (im->t.e[i].key == weight_data)
            break;
    if (k == im->t.n) {
        im->n_untracked++;
        return;
    }
    im->t.last = (i + 1) % im->t.n;
    entry *e = &im->t.e[i];
    if (cols != e->cols) {
        if (!im->bad_name[0]) {
            snprintf(im->bad_name, sizeof im->bad_name, "%s", e->name);
            im->bad_cols = cols;
        }
        return;
    }
    for (int64_t t = 0; t < n; t++) {
        const float *xt = x + t * cols;   /* [cols] */
        for (int64_t c = 0; c < cols; c++)
            e->sum[c] += (double)xt[c] * xt[c];
    }
    e->rows_seen += n;
}

lb_status lb_imatrix_check(const lb_imatrix *im, lb_err *err)
{
    if (im && im->bad_name[0]) {
        int64_t i = find_name(im, im->bad_name);
        return lb__errf(err, LB_ERR_INVALID_ARG,
                        "importance matrix: tensor %s was multiplied by rows of %" PRId64 " columns, expected %" PRId64,
                        im->bad_name, im->bad_cols, i >= 0 ? im->t.e[i].cols : -1);
    }
    return LB_OK;
}

int64_t lb_imatrix_n_untracked(const lb_imatrix *im) { return im ? im->n_untracked : 0; }

static void update_mean(entry *e)
{
    if (!e->sum || e->rows_seen == 0)
        return;
    for (int64_t c = 0; c < e->cols; c++)
        e->mean[c] = (float)(e->sum[c] / (double)e->rows_seen);
}

const float *lb_imatrix_find(const lb_imatrix *im, const char *name, int64_t *cols)
{
    if (!im || !name)
        return NULL;
    int64_t i = find_name(im, name);
    if (i < 0)
        return NULL;
    entry *e = &im->t.e[i];
    if (e->sum && e->rows_seen == 0)
        return NULL;
    update_mean(e);
    if (cols)
        *cols = e->cols;
    return e->mean;
}

int64_t lb_imatrix_n_entries(const lb_imatrix *im) { return im ? im->t.n : 0; }

const char *lb_imatrix_name_at(const lb_imatrix *im, int64_t i, int64_t *rows_seen)
{
    if (!im || i < 0 || i >= im->t.n)
        return NULL;
    if (rows_seen)
        *rows_seen = im->t.e[i].rows_seen;
    return im->t.e[i].name;
}

lb_imatrix_meta lb_imatrix_get_meta(const lb_imatrix *im)
{
    lb_imatrix_meta m = {0, 0, ""};
    return im ? im->meta : m;
}

lb_status lb_imatrix_write(const lb_imatrix *im, const char *path, const lb_imatrix_meta *meta, lb_err *err)
{
    if (!im || !path)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_imatrix_write: no matrix or path");
    lb_gguf_writer *w = lb_gguf_writer_new();
    if (!w)
        return lb__errf(err, LB_ERR_NOMEM, "out of memory");
    lb_imatrix_meta none = {0, 0, ""};
    if (!meta)
        meta = &none;
    lb_status st = LB_OK;
    int64_t written = 0;
    if ((st = lb_gguf_writer_set_str(w, "general.type", "imatrix")) ||
        (st = lb_gguf_writer_set_u32(w, LB_IMATRIX_KEY_CHUNKS,
                                     (uint32_t)(meta->chunks > 0 ? (meta->chunks < UINT32_MAX ? meta->chunks : UINT32_MAX) : 0))) ||
        (st = lb_gguf_writer_set_u64(w, LB_IMATRIX_KEY_TOKENS, (uint64_t)(meta->tokens > 0 ? meta->tokens : 0))) ||
        (st = lb_gguf_writer_set_str(w, LB_IMATRIX_KEY_DATASET, meta->dataset ? meta->dataset : ""))) {
        st = lb__errf(err, st, "%s: cannot set the metadata", path);
        goto out;
    }
    for (int64_t i = 0; i < im->t.n; i++) {
        entry *e = &im->t.e[i];
        if (e->sum && e->rows_seen == 0)
            continue;
        update_mean(e);
        int64_t ne[1] = {e->cols};
        if ((st = lb_gguf_writer_add_tensor(w, e->name, LB_TYPE_F32, 1, ne, e->mean))) {
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

lb_status lb_imatrix_load(const char *path, lb_imatrix **out, lb_err *err)
{
    if (!path || !out)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_imatrix_load: path and out are required");
    lb_gguf *g = NULL;
    lb_status st = lb_gguf_open_file(path, false, &g, err);
    if (st)
        return st;
    lb_imatrix *im = lb_imatrix_new();
    int64_t v;
    lb_gguf_str ds;
    if (!im) {
        st = lb__errf(err, LB_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (lb_gguf_get_int(g, LB_IMATRIX_KEY_CHUNKS, &v, NULL) != LB_OK) {
        st = lb__errf(err, LB_ERR_FORMAT, "%s: not an importance matrix (no %s key; make one with `lowbit imatrix`)",
                      path, LB_IMATRIX_KEY_CHUNKS);
        goto out;
    }
    im->meta.chunks = v;
    if (lb_gguf_get_int(g, LB_IMATRIX_KEY_TOKENS, &v, NULL) == LB_OK)
        im->meta.tokens = v;
    if (lb_gguf_get_str(g, LB_IMATRIX_KEY_DATASET, &ds, NULL) == LB_OK) {
        im->dataset = malloc(ds.len + 1);
        if (!im->dataset) {
            st = lb__errf(err, LB_ERR_NOMEM, "out of memory");
            goto out;
        }
        memcpy(im->dataset, ds.ptr, ds.len);
        im->dataset[ds.len] = 0;
        im->meta.dataset = im->dataset;
    }
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255), t->name.ptr);
        if (t->type != LB_TYPE_F32 || t->n_dims != 1 || t->ne[0] < 1) {
            st = lb__errf(err, LB_ERR_FORMAT, "%s: tensor %s is not a 1-D F32 vector", path, name);
            goto out;
        }
        if ((st = add_entry(im, name, NULL, t->ne[0], err)))
            goto out;
        /* The data may be unaligned in a hostile file: copy bytes, then check. */
        float *m = im->t.e[im->t.n - 1].mean;
        memcpy(m, t->data, (size_t)t->ne[0] * sizeof *m);
        for (int64_t c = 0; c < t->ne[0]; c++)
            if (!(m[c] >= 0.0f) || !isfinite(m[c])) {
                st = lb__errf(err, LB_ERR_FORMAT, "%s: tensor %s, column %" PRId64 ": value %g is not a finite "
                              "non-negative mean square", path, name, c, (double)m[c]);
                goto out;
            }
    }
    *out = im;
    im = NULL;
out:
    lb_imatrix_free(im);
    lb_gguf_free(g);
    return st;
}
