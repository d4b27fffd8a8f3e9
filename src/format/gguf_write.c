/* The GGUF writer: collects metadata and tensor descriptions, then streams a version 3 file. */
#include "format/gguf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct wkv {
    char *key;            /* NUL-terminated copy */
    lb_gguf_vtype type;
    uint8_t *val;         /* [len] the value serialized as it goes after the type field */
    uint64_t len;
} wkv;

typedef struct wtensor {
    char *name;           /* NUL-terminated copy */
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[LB_GGUF_MAX_DIMS];
    uint64_t nbytes;
    const void *data;     /* [nbytes] the caller's, not copied */
} wtensor;

struct lb_gguf_writer {
    wkv *kv;              /* [n_kv] in insertion order */
    size_t n_kv, cap_kv;
    wtensor *t;           /* [n_t] in insertion order, which is file order */
    size_t n_t, cap_t;
};

static const uint8_t vsize[LB_GGUF_VTYPE_COUNT] = {
    [LB_GGUF_U8] = 1, [LB_GGUF_I8] = 1, [LB_GGUF_U16] = 2, [LB_GGUF_I16] = 2,
    [LB_GGUF_U32] = 4, [LB_GGUF_I32] = 4, [LB_GGUF_F32] = 4, [LB_GGUF_BOOL] = 1,
    [LB_GGUF_U64] = 8, [LB_GGUF_I64] = 8, [LB_GGUF_F64] = 8,
};

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

lb_gguf_writer *lb_gguf_writer_new(void)
{
    return calloc(1, sizeof(lb_gguf_writer));
}

void lb_gguf_writer_free(lb_gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

static wkv *find_kv(lb_gguf_writer *w, const char *key, size_t klen)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (strlen(w->kv[i].key) == klen && memcmp(w->kv[i].key, key, klen) == 0)
            return &w->kv[i];
    return NULL;
}

/* Takes ownership of val (freed on failure too). */
static lb_status set_kv(lb_gguf_writer *w, const char *key, size_t klen, lb_gguf_vtype type, uint8_t *val, uint64_t len)
{
    if (!w || !key || klen == 0 || memchr(key, 0, klen) || !val) {
        free(val);
        return val ? LB_ERR_INVALID_ARG : LB_ERR_NOMEM;
    }
    wkv *kv = find_kv(w, key, klen);
    if (kv) {
        free(kv->val);
        kv->type = type;
        kv->val = val;
        kv->len = len;
        return LB_OK;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) {
            free(val);
            return LB_ERR_NOMEM;
        }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = dup_n(key, klen);
    if (!k) {
        free(val);
        return LB_ERR_NOMEM;
    }
    w->kv[w->n_kv++] = (wkv){k, type, val, len};
    return LB_OK;
}

static lb_status set_scalar(lb_gguf_writer *w, const char *key, lb_gguf_vtype type, uint64_t bits)
{
    int n = vsize[type];
    uint8_t *v = malloc((size_t)n);
    if (v)
        put_le(v, bits, n);
    return set_kv(w, key, key ? strlen(key) : 0, type, v, (uint64_t)n);
}

lb_status lb_gguf_writer_set_u32(lb_gguf_writer *w, const char *key, uint32_t v)
{
    return set_scalar(w, key, LB_GGUF_U32, v);
}

lb_status lb_gguf_writer_set_i32(lb_gguf_writer *w, const char *key, int32_t v)
{
    return set_scalar(w, key, LB_GGUF_I32, (uint32_t)v);
}

lb_status lb_gguf_writer_set_u64(lb_gguf_writer *w, const char *key, uint64_t v)
{
    return set_scalar(w, key, LB_GGUF_U64, v);
}

lb_status lb_gguf_writer_set_f32(lb_gguf_writer *w, const char *key, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    return set_scalar(w, key, LB_GGUF_F32, u);
}

lb_status lb_gguf_writer_set_bool(lb_gguf_writer *w, const char *key, bool v)
{
    return set_scalar(w, key, LB_GGUF_BOOL, v ? 1 : 0);
}

lb_status lb_gguf_writer_set_str(lb_gguf_writer *w, const char *key, const char *s)
{
    if (!s)
        return LB_ERR_INVALID_ARG;
    size_t n = strlen(s);
    uint8_t *v = malloc(8 + n);
    if (v) {
        put_le(v, n, 8);
        memcpy(v + 8, s, n);
    }
    return set_kv(w, key, key ? strlen(key) : 0, LB_GGUF_STRING, v, 8 + (uint64_t)n);
}

lb_status lb_gguf_writer_set_arr(lb_gguf_writer *w, const char *key, lb_gguf_vtype elem_type,
                                 const void *data, uint64_t n)
{
    if ((unsigned)elem_type >= LB_GGUF_VTYPE_COUNT || vsize[elem_type] == 0 || (!data && n))
        return LB_ERR_INVALID_ARG;
    uint64_t es = vsize[elem_type];
    if (n > (SIZE_MAX - 12) / es)
        return LB_ERR_NOMEM;
    if (elem_type == LB_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1)
                return LB_ERR_INVALID_ARG;
    uint64_t len = 12 + n * es;
    uint8_t *v = malloc((size_t)len);
    if (v) {
        put_le(v, (uint64_t)elem_type, 4);
        put_le(v + 4, n, 8);
        if (n)
            memcpy(v + 12, data, (size_t)(n * es));
    }
    return set_kv(w, key, key ? strlen(key) : 0, LB_GGUF_ARRAY, v, len);
}

lb_status lb_gguf_writer_set_arr_str(lb_gguf_writer *w, const char *key, const lb_gguf_str *s, uint64_t n)
{
    if (!s && n)
        return LB_ERR_INVALID_ARG;
    uint64_t len = 12;
    for (uint64_t i = 0; i < n; i++) {
        if (!s[i].ptr && s[i].len)
            return LB_ERR_INVALID_ARG;
        if (s[i].len > SIZE_MAX - 8 || len > SIZE_MAX - 8 - s[i].len)
            return LB_ERR_NOMEM;
        len += 8 + s[i].len;
    }
    uint8_t *v = malloc((size_t)len);
    if (v) {
        put_le(v, LB_GGUF_STRING, 4);
        put_le(v + 4, n, 8);
        size_t at = 12;
        for (uint64_t i = 0; i < n; i++) {
            put_le(v + at, s[i].len, 8);
            if (s[i].len)
                memcpy(v + at + 8, s[i].ptr, (size_t)s[i].len);
            at += 8 + (size_t)s[i].len;
        }
    }
    return set_kv(w, key, key ? strlen(key) : 0, LB_GGUF_ARRAY, v, len);
}

lb_status lb_gguf_writer_copy_kv(lb_gguf_writer *w, const lb_gguf *g)
{
    if (!w || !g)
        return LB_ERR_INVALID_ARG;
    for (int64_t i = 0; i < lb_gguf_n_kv(g); i++) {
        uint64_t len;
        const void *raw = lb_gguf_kv_raw(g, i, &len);
        lb_gguf_str k = lb_gguf_kv_key(g, i);
        if (len > SIZE_MAX)
            return LB_ERR_NOMEM;
        uint8_t *v = malloc(len ? (size_t)len : 1);
        if (v && len)
            memcpy(v, raw, (size_t)len);
        lb_status st = set_kv(w, k.ptr, (size_t)k.len, lb_gguf_kv_type(g, i), v, len);
        if (st)
            return st;
    }
    return LB_OK;
}

lb_status lb_gguf_writer_remove(lb_gguf_writer *w, const char *key)
{
    if (!w || !key)
        return LB_ERR_INVALID_ARG;
    wkv *kv = find_kv(w, key, strlen(key));
    if (kv) {
        free(kv->key);
        free(kv->val);
        size_t i = (size_t)(kv - w->kv);
        memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - i - 1) * sizeof *w->kv);
        w->n_kv--;
    }
    return LB_OK;
}

lb_status lb_gguf_writer_add_tensor(lb_gguf_writer *w, const char *name, uint32_t type,
                                    uint32_t n_dims, const int64_t *ne, const void *data)
{
    if (!w || !name || !*name || !ne || n_dims < 1 || n_dims > LB_GGUF_MAX_DIMS)
        return LB_ERR_INVALID_ARG;
    const lb_type_layout *l = lb_type_layout_of(type);
    if (!l || type == LB_TYPE_A8_32 || type == LB_TYPE_A8_K)
        return LB_ERR_INVALID_ARG;
    wtensor t = {.type = type, .n_dims = n_dims, .data = data};
    for (int d = 0; d < LB_GGUF_MAX_DIMS; d++)
        t.ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0)
            return LB_ERR_INVALID_ARG;
        t.ne[d] = ne[d];
    }
    if (t.ne[0] % l->blck != 0)
        return LB_ERR_INVALID_ARG;
    uint64_t nb = (uint64_t)(t.ne[0] / l->blck) * (uint64_t)l->bytes;
    for (int d = 1; d < LB_GGUF_MAX_DIMS; d++) {
        uint64_t e = (uint64_t)t.ne[d];
        if (e && nb > UINT64_MAX / e)
            return LB_ERR_INVALID_ARG;
        nb *= e;
    }
    if (nb && !data)
        return LB_ERR_INVALID_ARG;
    t.nbytes = nb;
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return LB_ERR_INVALID_ARG;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt)
            return LB_ERR_NOMEM;
        w->t = nt;
        w->cap_t = cap;
    }
    t.name = dup_n(name, strlen(name));
    if (!t.name)
        return LB_ERR_NOMEM;
    w->t[w->n_t++] = t;
    return LB_OK;
}

/* ---------------------------------------------------------------- output */

typedef struct out {
    FILE *f;
    uint64_t pos;    /* bytes written so far, to compute padding */
    bool failed;
} out;

static void emit(out *o, const void *p, size_t n)
{
    if (o->failed || n == 0)
        return;
    if (fwrite(p, 1, n, o->f) != n)
        o->failed = true;
    o->pos += n;
}

static void emit_le(out *o, uint64_t v, int n)
{
    uint8_t b[8];
    put_le(b, v, n);
    emit(o, b, (size_t)n);
}

static void emit_pad(out *o, uint64_t align)
{
    static const uint8_t zeros[64];
    uint64_t pad = (align - o->pos % align) % align;
    while (pad) {
        size_t k = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        emit(o, zeros, k);
        pad -= k;
    }
}

lb_status lb_gguf_writer_write_fp(lb_gguf_writer *w, FILE *f, lb_err *err)
{
    if (!w || !f)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_gguf_writer_write_fp: NULL argument");
    uint64_t align = LB_GGUF_DEFAULT_ALIGNMENT;
    wkv *ak = find_kv(w, "general.alignment", strlen("general.alignment"));
    if (ak) {
        uint32_t a = 0;
        if (ak->type == LB_GGUF_U32)
            a = (uint32_t)ak->val[0] | (uint32_t)ak->val[1] << 8 | (uint32_t)ak->val[2] << 16 | (uint32_t)ak->val[3] << 24;
        if (ak->type != LB_GGUF_U32 || a == 0 || (a & (a - 1)))
            return lb__errf(err, LB_ERR_INVALID_ARG,
                            "key 'general.alignment' must be a u32 nonzero power of two (found %s %" PRIu32 ")",
                            lb_gguf_vtype_name(ak->type), a);
        align = a;
    }

    out o = {f, 0, false};
    emit(&o, "GGUF", 4);
    emit_le(&o, 3, 4);
    emit_le(&o, w->n_t, 8);
    emit_le(&o, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kv[i];
        size_t kl = strlen(kv->key);
        emit_le(&o, kl, 8);
        emit(&o, kv->key, kl);
        emit_le(&o, (uint64_t)kv->type, 4);
        emit(&o, kv->val, (size_t)kv->len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        size_t nl = strlen(t->name);
        emit_le(&o, nl, 8);
        emit(&o, t->name, nl);
        emit_le(&o, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++)
            emit_le(&o, (uint64_t)t->ne[d], 8);
        emit_le(&o, t->type, 4);
        emit_le(&o, off, 8);
        uint64_t padded = (t->nbytes + align - 1) / align * align;
        if (padded < t->nbytes || off > UINT64_MAX - padded)
            return lb__errf(err, LB_ERR_RANGE, "tensor '%s': data section exceeds 2^64 bytes", t->name);
        off += padded;
    }
    /* A file without tensors ends after its metadata, as llama.cpp's vocabulary files do. */
    if (w->n_t)
        emit_pad(&o, align);
    for (size_t i = 0; i < w->n_t; i++) {
        emit(&o, w->t[i].data, (size_t)w->t[i].nbytes);
        emit_pad(&o, align);
    }
    if (o.failed || fflush(f) != 0)
        return lb__errf(err, LB_ERR_IO, "write failed at byte %" PRIu64 ": %s", o.pos, strerror(errno));
    return LB_OK;
}

lb_status lb_gguf_writer_write(lb_gguf_writer *w, const char *path, lb_err *err)
{
    if (!w || !path)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_gguf_writer_write: NULL argument");
    FILE *f = fopen(path, "wb");
    if (!f)
        return lb__errf(err, LB_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    lb_status st = lb_gguf_writer_write_fp(w, f, err);
    if (fclose(f) != 0 && !st)
        st = lb__errf(err, LB_ERR_IO, "cannot close '%s': %s", path, strerror(errno));
    if (st) {
        lb__err_prefix(err, "%s", path);
        remove(path);   /* a half-written model must not look loadable */
    }
    return st;
}
