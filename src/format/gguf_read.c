/* The GGUF reader: parses and validates a whole file image into a zero-copy view. */
#include "format/gguf.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/mapfile.h"

#define GGUF_MAGIC "GGUF"

/* Smallest possible encodings, used to bound counts by the bytes left before
 * anything is allocated: a kv is a key length, a type and at least 1 byte of
 * value; a tensor info is a name length, n_dims, one dimension, a type and an offset. */
#define MIN_KV_BYTES (8 + 4 + 1)
#define MIN_TENSOR_BYTES (8 + 4 + 8 + 4 + 8)

typedef struct gguf_kv {
    lb_gguf_str key;
    lb_gguf_vtype type;
    lb_gguf_vtype elem_type;   /* arrays only */
    uint64_t n;                /* arrays: element count */
    uint64_t at;               /* file offset of the kv (its key length), for messages */
    const uint8_t *raw;        /* the value as stored, after the type field */
    uint64_t raw_len;
    const uint8_t *elems;      /* arrays: first element; scalars: the value */
    lb_gguf_str s;             /* strings */
    uint64_t str_first;        /* string arrays: index of element 0 in lb_gguf.strs */
} gguf_kv;

struct lb_gguf {
    lb_mapfile file;                  /* owned mapping/buffer; zeroed for open_memory */
    const uint8_t *bytes;             /* [size] the file image */
    size_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    bool header_only;                 /* tensor data may lie past the end of bytes */
    uint64_t implied_size;            /* end of the furthest tensor data (or data_offset) */
    uint64_t want;                    /* after a failed parse: how far a read that ran off the end wanted to go */

    int64_t n_kv;
    gguf_kv *kv;                      /* [n_kv] */
    uint64_t kv_hash_cap;             /* power of two */
    int64_t *kv_hash;                 /* [kv_hash_cap] kv index + 1, 0 = empty */

    const uint8_t **strs;             /* [n_strs] each element of every string array: its length field */
    uint64_t n_strs, cap_strs;

    int64_t n_tensors;
    lb_gguf_tensor *tensors;          /* [n_tensors] */
    uint64_t t_hash_cap;
    int64_t *t_hash;                  /* [t_hash_cap] tensor index + 1, 0 = empty */
};

/* ---------------------------------------------------------------- helpers */

typedef struct cursor {
    const uint8_t *p;   /* [size] */
    size_t size;
    size_t pos;
    uint64_t want;      /* end offset of the furthest read that ran past size; 0 if none */
} cursor;

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static size_t left(const cursor *c) { return c->size - c->pos; }

static uint64_t sat_mul(uint64_t a, uint64_t b) { return b && a > UINT64_MAX / b ? UINT64_MAX : a * b; }

/* True when n more bytes are present.  Otherwise records where the read
 * wanted to end, so that a header-only parse of a prefix of the file can
 * tell its caller how many bytes to fetch. */
static bool have(cursor *c, uint64_t n)
{
    if (n <= left(c))
        return true;
    uint64_t end = n > UINT64_MAX - c->pos ? UINT64_MAX : c->pos + n;
    if (end > c->want)
        c->want = end;
    return false;
}

static bool rd_u32(cursor *c, uint32_t *v)
{
    if (!have(c, 4))
        return false;
    *v = le32(c->p + c->pos);
    c->pos += 4;
    return true;
}

static bool rd_u64(cursor *c, uint64_t *v)
{
    if (!have(c, 8))
        return false;
    *v = le64(c->p + c->pos);
    c->pos += 8;
    return true;
}

/* A printable, bounded copy of a name from the file for error messages:
 * names are untrusted bytes and may be long or binary. */
static const char *show(char *buf, size_t cap, lb_gguf_str s)
{
    size_t n = 0;
    for (uint64_t i = 0; i < s.len && n + 4 < cap; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        buf[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    if (n + 4 >= cap && s.len > n) {
        buf[n++] = '.';
        buf[n++] = '.';
        buf[n++] = '.';
    }
    buf[n] = '\0';
    return buf;
}
#define SHOW(s) show((char[80]){0}, 80, (s))

static uint64_t hash_bytes(const char *p, uint64_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static bool str_eq(lb_gguf_str a, const char *b, uint64_t blen)
{
    return a.len == blen && memcmp(a.ptr, b, blen) == 0;
}

/* Capacity of an open-addressing table for n entries: a power of two at
 * least 2n, so probes stay short. */
static uint64_t hash_cap(int64_t n)
{
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2)
        cap <<= 1;
    return cap;
}

/* Reads a string at the cursor: a u64 length and that many bytes, which must
 * lie inside the file. */
static lb_status rd_str(cursor *c, lb_gguf_str *s, const char *what, lb_err *err)
{
    size_t at = c->pos;
    uint64_t n;
    if (!rd_u64(c, &n))
        return lb__errf(err, LB_ERR_FORMAT, "%s: string length at byte %zu runs past the end of the file (%zu bytes)",
                        what, at, c->size);
    if (!have(c, n))
        return lb__errf(err, LB_ERR_FORMAT,
                        "%s: string at byte %zu claims %" PRIu64 " bytes but only %zu remain in the file",
                        what, at, n, left(c));
    s->ptr = (const char *)(c->p + c->pos);
    s->len = n;
    c->pos += (size_t)n;
    return LB_OK;
}

static const uint8_t vtype_size[LB_GGUF_VTYPE_COUNT] = {
    [LB_GGUF_U8] = 1, [LB_GGUF_I8] = 1, [LB_GGUF_U16] = 2, [LB_GGUF_I16] = 2,
    [LB_GGUF_U32] = 4, [LB_GGUF_I32] = 4, [LB_GGUF_F32] = 4, [LB_GGUF_BOOL] = 1,
    [LB_GGUF_STRING] = 0, [LB_GGUF_ARRAY] = 0, [LB_GGUF_U64] = 8, [LB_GGUF_I64] = 8,
    [LB_GGUF_F64] = 8,
};

static lb_status push_str(lb_gguf *g, const uint8_t *p)
{
    if (g->n_strs == g->cap_strs) {
        uint64_t cap = g->cap_strs ? g->cap_strs * 2 : 256;
        const uint8_t **ns = realloc(g->strs, (size_t)cap * sizeof *ns);
        if (!ns)
            return LB_ERR_NOMEM;
        g->strs = ns;
        g->cap_strs = cap;
    }
    g->strs[g->n_strs++] = p;
    return LB_OK;
}

/* ---------------------------------------------------------------- metadata */

static lb_status parse_kv(lb_gguf *g, cursor *c, int64_t idx, gguf_kv *kv, lb_err *err)
{
    char what[48];
    snprintf(what, sizeof what, "key #%" PRId64, idx);
    kv->at = c->pos;
    lb_status st = rd_str(c, &kv->key, what, err);
    if (st)
        return st;
    if (kv->key.len == 0)
        return lb__errf(err, LB_ERR_FORMAT, "key #%" PRId64 " at byte %" PRIu64 " is empty", idx, kv->at);
    if (memchr(kv->key.ptr, 0, (size_t)kv->key.len))
        return lb__errf(err, LB_ERR_FORMAT, "key '%s' at byte %" PRIu64 " contains a NUL byte",
                        SHOW(kv->key), kv->at);

    uint32_t t;
    if (!rd_u32(c, &t))
        return lb__errf(err, LB_ERR_FORMAT, "key '%s' at byte %" PRIu64 ": value type runs past the end of the file",
                        SHOW(kv->key), kv->at);
    if (t >= LB_GGUF_VTYPE_COUNT)
        return lb__errf(err, LB_ERR_FORMAT, "key '%s' at byte %" PRIu64 ": unknown value type %" PRIu32,
                        SHOW(kv->key), kv->at, t);
    kv->type = (lb_gguf_vtype)t;
    kv->elem_type = LB_GGUF_VTYPE_COUNT;
    kv->raw = c->p + c->pos;
    size_t start = c->pos;

    if (kv->type == LB_GGUF_STRING) {
        st = rd_str(c, &kv->s, "string value", err);
        if (st) {
            lb__err_prefix(err, "key '%s' at byte %" PRIu64, SHOW(kv->key), kv->at);
            return st;
        }
    } else if (kv->type == LB_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (!rd_u32(c, &et) || !rd_u64(c, &n))
            return lb__errf(err, LB_ERR_FORMAT,
                            "key '%s' at byte %" PRIu64 ": array header runs past the end of the file",
                            SHOW(kv->key), kv->at);
        if (et >= LB_GGUF_VTYPE_COUNT)
            return lb__errf(err, LB_ERR_FORMAT, "key '%s' at byte %" PRIu64 ": unknown array element type %" PRIu32,
                            SHOW(kv->key), kv->at, et);
        if (et == LB_GGUF_ARRAY)
            return lb__errf(err, LB_ERR_UNSUPPORTED,
                            "key '%s' at byte %" PRIu64 ": arrays of arrays are not supported",
                            SHOW(kv->key), kv->at);
        kv->elem_type = (lb_gguf_vtype)et;
        kv->n = n;
        kv->elems = c->p + c->pos;
        if (et == LB_GGUF_STRING) {
            /* Each element needs at least its 8-byte length. */
            if (!have(c, sat_mul(n, 8)))
                return lb__errf(err, LB_ERR_FORMAT,
                                "key '%s' at byte %" PRIu64 ": array of %" PRIu64
                                " strings cannot fit in the %zu bytes left in the file",
                                SHOW(kv->key), kv->at, n, left(c));
            kv->str_first = g->n_strs;
            for (uint64_t i = 0; i < n; i++) {
                const uint8_t *p = c->p + c->pos;
                lb_gguf_str s;
                char ewhat[48];
                snprintf(ewhat, sizeof ewhat, "element %" PRIu64, i);
                st = rd_str(c, &s, ewhat, err);
                if (st) {
                    lb__err_prefix(err, "key '%s' at byte %" PRIu64, SHOW(kv->key), kv->at);
                    return st;
                }
                if (push_str(g, p))
                    return lb__errf(err, LB_ERR_NOMEM, "key '%s': out of memory indexing %" PRIu64 " strings",
                                    SHOW(kv->key), n);
            }
        } else {
            uint64_t es = vtype_size[et];
            if (!have(c, sat_mul(n, es)))
                return lb__errf(err, LB_ERR_FORMAT,
                                "key '%s' at byte %" PRIu64 ": array of %" PRIu64 " %s (%" PRIu64
                                " bytes each) runs past the end of the file (%zu bytes left)",
                                SHOW(kv->key), kv->at, n, lb_gguf_vtype_name((lb_gguf_vtype)et), es, left(c));
            if (et == LB_GGUF_BOOL)
                for (uint64_t i = 0; i < n; i++)
                    if (kv->elems[i] > 1)
                        return lb__errf(err, LB_ERR_FORMAT,
                                        "key '%s' at byte %" PRIu64 ": bool element %" PRIu64 " is %u, not 0 or 1",
                                        SHOW(kv->key), kv->at, i, kv->elems[i]);
            c->pos += (size_t)(n * es);
        }
    } else {
        uint64_t es = vtype_size[t];
        if (!have(c, es))
            return lb__errf(err, LB_ERR_FORMAT, "key '%s' at byte %" PRIu64 ": %s value runs past the end of the file",
                            SHOW(kv->key), kv->at, lb_gguf_vtype_name(kv->type));
        kv->elems = c->p + c->pos;
        if (t == LB_GGUF_BOOL && kv->elems[0] > 1)
            return lb__errf(err, LB_ERR_FORMAT, "key '%s' at byte %" PRIu64 ": bool value is %u, not 0 or 1",
                            SHOW(kv->key), kv->at, kv->elems[0]);
        c->pos += (size_t)es;
    }
    kv->raw_len = c->pos - start;
    return LB_OK;
}

static int64_t kv_lookup(const lb_gguf *g, const char *key, uint64_t len)
{
    if (!g->kv_hash)
        return -1;
    uint64_t mask = g->kv_hash_cap - 1;
    for (uint64_t h = hash_bytes(key, len) & mask;; h = (h + 1) & mask) {
        int64_t e = g->kv_hash[h];
        if (e == 0)
            return -1;
        if (str_eq(g->kv[e - 1].key, key, len))
            return e - 1;
    }
}

static int64_t tensor_lookup(const lb_gguf *g, const char *name, uint64_t len)
{
    if (!g->t_hash)
        return -1;
    uint64_t mask = g->t_hash_cap - 1;
    for (uint64_t h = hash_bytes(name, len) & mask;; h = (h + 1) & mask) {
        int64_t e = g->t_hash[h];
        if (e == 0)
            return -1;
        if (str_eq(g->tensors[e - 1].name, name, len))
            return e - 1;
    }
}

static lb_status parse_kvs(lb_gguf *g, cursor *c, lb_err *err)
{
    g->kv = malloc((size_t)(g->n_kv ? g->n_kv : 1) * sizeof *g->kv);
    g->kv_hash_cap = hash_cap(g->n_kv);
    g->kv_hash = calloc((size_t)g->kv_hash_cap, sizeof *g->kv_hash);
    if (!g->kv || !g->kv_hash)
        return lb__errf(err, LB_ERR_NOMEM, "out of memory for %" PRId64 " metadata keys", g->n_kv);
    for (int64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        memset(kv, 0, sizeof *kv);
        lb_status st = parse_kv(g, c, i, kv, err);
        if (st)
            return st;
        uint64_t mask = g->kv_hash_cap - 1;
        uint64_t h = hash_bytes(kv->key.ptr, kv->key.len) & mask;
        for (; g->kv_hash[h]; h = (h + 1) & mask) {
            const gguf_kv *o = &g->kv[g->kv_hash[h] - 1];
            if (str_eq(o->key, kv->key.ptr, kv->key.len))
                return lb__errf(err, LB_ERR_FORMAT, "duplicate key '%s' at byte %" PRIu64 " (first at byte %" PRIu64 ")",
                                SHOW(kv->key), kv->at, o->at);
        }
        g->kv_hash[h] = i + 1;
    }
    return LB_OK;
}

static lb_status read_alignment(lb_gguf *g, lb_err *err)
{
    g->alignment = LB_GGUF_DEFAULT_ALIGNMENT;
    int64_t i = kv_lookup(g, "general.alignment", strlen("general.alignment"));
    if (i < 0)
        return LB_OK;
    const gguf_kv *kv = &g->kv[i];
    if (kv->type != LB_GGUF_U32)
        return lb__errf(err, LB_ERR_FORMAT, "key 'general.alignment' at byte %" PRIu64 ": expected u32, found %s",
                        kv->at, lb_gguf_vtype_name(kv->type));
    uint32_t a = le32(kv->elems);
    if (a == 0 || (a & (a - 1)) != 0)
        return lb__errf(err, LB_ERR_FORMAT,
                        "key 'general.alignment' at byte %" PRIu64 ": %" PRIu32 " is not a nonzero power of two",
                        kv->at, a);
    g->alignment = a;
    return LB_OK;
}

/* ---------------------------------------------------------------- tensors */

/* (offset, nbytes, index) of one tensor, sorted to find overlaps in n log n. */
typedef struct span {
    uint64_t offset, nbytes;
    int64_t idx;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static lb_status parse_tensor_info(lb_gguf *g, cursor *c, int64_t idx, lb_gguf_tensor *t, lb_err *err)
{
    char what[48];
    snprintf(what, sizeof what, "tensor #%" PRId64 " name", idx);
    size_t at = c->pos;
    lb_status st = rd_str(c, &t->name, what, err);
    if (st)
        return st;
    if (t->name.len == 0)
        return lb__errf(err, LB_ERR_FORMAT, "tensor #%" PRId64 " at byte %zu has an empty name", idx, at);
    if (memchr(t->name.ptr, 0, (size_t)t->name.len))
        return lb__errf(err, LB_ERR_FORMAT, "tensor '%s' at byte %zu: name contains a NUL byte", SHOW(t->name), at);
    const char *nm = SHOW(t->name);

    if (!rd_u32(c, &t->n_dims))
        return lb__errf(err, LB_ERR_FORMAT, "tensor '%s' at byte %zu: n_dims runs past the end of the file", nm, at);
    if (t->n_dims < 1 || t->n_dims > LB_GGUF_MAX_DIMS)
        return lb__errf(err, LB_ERR_FORMAT, "tensor '%s' at byte %zu: n_dims is %" PRIu32 ", expected 1..%d",
                        nm, at, t->n_dims, LB_GGUF_MAX_DIMS);
    for (int d = 0; d < LB_GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t v;
        if (!rd_u64(c, &v))
            return lb__errf(err, LB_ERR_FORMAT, "tensor '%s' at byte %zu: shape runs past the end of the file", nm, at);
        if (v > (uint64_t)INT64_MAX)
            return lb__errf(err, LB_ERR_FORMAT, "tensor '%s' at byte %zu: ne[%" PRIu32 "] = %" PRId64 " is negative",
                            nm, at, d, (int64_t)v);
        t->ne[d] = (int64_t)v;
    }
    if (!rd_u32(c, &t->type) || !rd_u64(c, &t->offset))
        return lb__errf(err, LB_ERR_FORMAT, "tensor '%s' at byte %zu: type/offset run past the end of the file", nm, at);

    const lb_type_layout *l = lb_type_layout_of(t->type);
    if (!l || t->type == LB_TYPE_A8_32 || t->type == LB_TYPE_A8_K)
        return lb__errf(err, LB_ERR_FORMAT, "tensor '%s' at byte %zu: unknown tensor type %" PRIu32, nm, at, t->type);
    if (t->ne[0] % l->blck != 0)
        return lb__errf(err, LB_ERR_FORMAT,
                        "tensor '%s': ne[0] = %" PRId64 " is not a multiple of the %s block size %d",
                        nm, t->ne[0], l->name, l->blck);

    /* Elements must fit in int64 and bytes in uint64: every product is checked. */
    uint64_t nel = 1;
    for (int d = 0; d < LB_GGUF_MAX_DIMS; d++) {
        uint64_t e = (uint64_t)t->ne[d];
        if (e != 0 && nel > (uint64_t)INT64_MAX / e)
            return lb__errf(err, LB_ERR_FORMAT, "tensor '%s': element count overflows (shape %" PRId64 " x %" PRId64
                            " x %" PRId64 " x %" PRId64 ")", nm, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
        nel *= e;
    }
    uint64_t nbytes = (uint64_t)t->ne[0] / (uint64_t)l->blck;
    if (nbytes != 0 && (uint64_t)l->bytes > UINT64_MAX / nbytes)
        return lb__errf(err, LB_ERR_FORMAT, "tensor '%s': byte size overflows", nm);
    nbytes *= (uint64_t)l->bytes;
    for (int d = 1; d < LB_GGUF_MAX_DIMS; d++) {
        uint64_t e = (uint64_t)t->ne[d];
        if (e != 0 && nbytes > UINT64_MAX / e)
            return lb__errf(err, LB_ERR_FORMAT, "tensor '%s': byte size overflows", nm);
        nbytes *= e;
    }
    t->nbytes = nbytes;
    if (t->offset % g->alignment != 0)
        return lb__errf(err, LB_ERR_FORMAT,
                        "tensor '%s': data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                        nm, t->offset, g->alignment);
    return LB_OK;
}

static lb_status parse_tensors(lb_gguf *g, cursor *c, lb_err *err)
{
    g->tensors = malloc((size_t)(g->n_tensors ? g->n_tensors : 1) * sizeof *g->tensors);
    g->t_hash_cap = hash_cap(g->n_tensors);
    g->t_hash = calloc((size_t)g->t_hash_cap, sizeof *g->t_hash);
    if (!g->tensors || !g->t_hash)
        return lb__errf(err, LB_ERR_NOMEM, "out of memory for %" PRId64 " tensors", g->n_tensors);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        lb_gguf_tensor *t = &g->tensors[i];
        memset(t, 0, sizeof *t);
        lb_status st = parse_tensor_info(g, c, i, t, err);
        if (st)
            return st;
        uint64_t mask = g->t_hash_cap - 1;
        uint64_t h = hash_bytes(t->name.ptr, t->name.len) & mask;
        for (; g->t_hash[h]; h = (h + 1) & mask)
            if (str_eq(g->tensors[g->t_hash[h] - 1].name, t->name.ptr, t->name.len))
                return lb__errf(err, LB_ERR_FORMAT, "duplicate tensor name '%s' (tensors #%" PRId64 " and #%" PRId64 ")",
                                SHOW(t->name), g->t_hash[h] - 1, i);
        g->t_hash[h] = i + 1;
    }
    return LB_OK;
}

static lb_status place_tensors(lb_gguf *g, lb_err *err)
{
    g->implied_size = g->data_offset;
    if (g->n_tensors == 0)
        return LB_OK;
    if (g->header_only) {
        /* The data is elsewhere: only the offsets and sizes are checked. */
        for (int64_t i = 0; i < g->n_tensors; i++) {
            const lb_gguf_tensor *t = &g->tensors[i];
            uint64_t room = UINT64_MAX - g->data_offset;
            if (t->offset > room || t->nbytes > room - t->offset)
                return lb__errf(err, LB_ERR_FORMAT,
                                "tensor '%s': data at offset %" PRIu64 " + %" PRIu64 " bytes overflows a 64-bit file size",
                                SHOW(t->name), t->offset, t->nbytes);
            if (g->data_offset + t->offset + t->nbytes > g->implied_size)
                g->implied_size = g->data_offset + t->offset + t->nbytes;
        }
    } else if (g->data_offset > g->size)
        return lb__errf(err, LB_ERR_FORMAT, "data section at offset %" PRIu64 " starts past the end of the file (%zu bytes)",
                        g->data_offset, g->size);
    for (int64_t i = 0; i < g->n_tensors && !g->header_only; i++) {
        lb_gguf_tensor *t = &g->tensors[i];
        uint64_t avail = g->size - g->data_offset;
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return lb__errf(err, LB_ERR_FORMAT,
                            "tensor '%s': data at offset %" PRIu64 " + %" PRIu64
                            " bytes runs past the end of the file (%zu bytes)",
                            SHOW(t->name), g->data_offset + t->offset, t->nbytes, g->size);
        t->data = g->bytes + g->data_offset + t->offset;
        if (g->data_offset + t->offset + t->nbytes > g->implied_size)
            g->implied_size = g->data_offset + t->offset + t->nbytes;
    }
    span *sp = malloc((size_t)g->n_tensors * sizeof *sp);
    if (!sp)
        return lb__errf(err, LB_ERR_NOMEM, "out of memory checking %" PRId64 " tensors for overlap", g->n_tensors);
    for (int64_t i = 0; i < g->n_tensors; i++)
        sp[i] = (span){g->tensors[i].offset, g->tensors[i].nbytes, i};
    qsort(sp, (size_t)g->n_tensors, sizeof *sp, span_cmp);
    lb_status st = LB_OK;
    /* Sorted by offset, each non-empty tensor must start at or after the end
     * of the furthest-reaching non-empty tensor before it.  Empty tensors
     * occupy no bytes and may sit anywhere. */
    int64_t far = -1;
    uint64_t far_end = 0;
    for (int64_t k = 0; k < g->n_tensors && !st; k++) {
        if (sp[k].nbytes == 0)
            continue;
        if (far >= 0 && sp[k].offset < far_end) {
            const lb_gguf_tensor *a = &g->tensors[sp[far].idx], *b = &g->tensors[sp[k].idx];
            st = lb__errf(err, LB_ERR_FORMAT,
                          "tensor '%s' (data offset %" PRIu64 ", %" PRIu64 " bytes) overlaps tensor '%s' (data offset %"
                          PRIu64 ", %" PRIu64 " bytes)",
                          SHOW(b->name), b->offset, b->nbytes, SHOW(a->name), a->offset, a->nbytes);
        }
        if (far < 0 || sp[k].offset + sp[k].nbytes > far_end) {
            far = k;
            far_end = sp[k].offset + sp[k].nbytes;
        }
    }
    free(sp);
    return st;
}

/* ---------------------------------------------------------------- open/free */

static lb_status parse_header(lb_gguf *g, cursor *c, lb_err *err)
{
    lb_status st = LB_OK;
    if (!have(c, 4) || memcmp(g->bytes, GGUF_MAGIC, 4) != 0)
        return lb__errf(err, LB_ERR_FORMAT, "not a GGUF file: bad magic (expected \"GGUF\" at offset 0)");
    c->pos = 4;
    if (!rd_u32(c, &g->version))
        return lb__errf(err, LB_ERR_FORMAT, "truncated GGUF header: version at offset 4 runs past the end of the file (%zu bytes)",
                        g->size);
    if (g->version == 1)
        return lb__errf(err, LB_ERR_UNSUPPORTED, "GGUF version 1 is not supported (only versions 2 and 3); "
                        "re-convert the model with a current tool");
    if (g->version != 2 && g->version != 3) {
        uint32_t sw = (g->version >> 24) | ((g->version >> 8) & 0xff00) | ((g->version << 8) & 0xff0000) | (g->version << 24);
        if (sw >= 1 && sw <= 3)
            return lb__errf(err, LB_ERR_UNSUPPORTED, "big-endian GGUF (version %" PRIu32 ") is not supported", sw);
        return lb__errf(err, LB_ERR_FORMAT, "unknown GGUF version %" PRIu32 " at offset 4 (expected 2 or 3)", g->version);
    }
    uint64_t nt, nkv;
    if (!rd_u64(c, &nt) || !rd_u64(c, &nkv))
        return lb__errf(err, LB_ERR_FORMAT, "truncated GGUF header: tensor/kv counts at offset 8 run past the end of the file (%zu bytes)",
                        g->size);
    /* Bound both counts by the bytes that remain before allocating for them. */
    uint64_t rem = left(c);
    uint64_t min_kv = sat_mul(nkv, MIN_KV_BYTES), min_t = sat_mul(nt, MIN_TENSOR_BYTES);
    (void)have(c, min_kv > UINT64_MAX - min_t ? UINT64_MAX : min_kv + min_t);   /* records c.want for a prefix */
    if (nkv > rem / MIN_KV_BYTES)
        return lb__errf(err, LB_ERR_FORMAT, "header claims %" PRIu64 " metadata keys (n_kv at offset 16) but only %"
                        PRIu64 " bytes follow", nkv, rem);
    if (nt > (rem - nkv * MIN_KV_BYTES) / MIN_TENSOR_BYTES)
        return lb__errf(err, LB_ERR_FORMAT, "header claims %" PRIu64 " tensors (n_tensors at offset 8) but only %"
                        PRIu64 " bytes follow", nt, rem);
    g->n_kv = (int64_t)nkv;
    g->n_tensors = (int64_t)nt;

    st = parse_kvs(g, c, err);
    if (!st)
        st = read_alignment(g, err);
    if (!st)
        st = parse_tensors(g, c, err);
    if (st)
        return st;
    uint64_t end = c->pos;
    /* end <= size, so rounding up cannot overflow for any alignment <= 2^31. */
    g->data_offset = (end + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors == 0 && g->data_offset > g->size)
        g->data_offset = g->size;   /* writers may omit the padding of an empty data section */
    return place_tensors(g, err);
}

static lb_status parse(lb_gguf *g, lb_err *err)
{
    cursor c = {g->bytes, g->size, 0, 0};
    lb_status st = parse_header(g, &c, err);
    if (st)
        g->want = c.want;
    return st;
}

static lb_status open_bytes(const void *data, size_t size, bool header_only, lb_gguf **out, uint64_t *need,
                            lb_err *err)
{
    if (!out)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_gguf_open: out is NULL");
    if (!data && size)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_gguf_open: data is NULL");
    lb_gguf *g = calloc(1, sizeof *g);
    if (!g)
        return lb__errf(err, LB_ERR_NOMEM, "out of memory");
    g->bytes = data ? data : (const uint8_t *)"";
    g->size = size;
    g->header_only = header_only;
    lb_status st = parse(g, err);
    if (st && header_only && g->want > size) {
        /* The prefix ended inside the header: not an error in the file. */
        if (need)
            *need = g->want;
        st = lb__errf(err, LB_ERR_RANGE, "the first %zu bytes end inside the GGUF header; at least %" PRIu64
                      " bytes are needed", size, g->want);
    }
    if (st) {
        lb_gguf_free(g);
        return st;
    }
    *out = g;
    return LB_OK;
}

lb_status lb_gguf_open_memory(const void *data, size_t size, lb_gguf **out, lb_err *err)
{
    return open_bytes(data, size, false, out, NULL, err);
}

lb_status lb_gguf_open_header(const void *data, size_t size, lb_gguf **out, uint64_t *need, lb_err *err)
{
    return open_bytes(data, size, true, out, need, err);
}

lb_status lb_gguf_open_file(const char *path, bool use_mmap, lb_gguf **out, lb_err *err)
{
    if (!out || !path)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_gguf_open_file: NULL argument");
    lb_mapfile f;
    lb_status st = lb_mapfile_open(path, use_mmap, &f, err);
    if (st)
        return st;
    lb_gguf *g = NULL;
    st = lb_gguf_open_memory(f.data, f.size, &g, err);
    if (st) {
        lb_mapfile_close(&f);
        lb__err_prefix(err, "%s", path);
        return st;
    }
    g->file = f;
    *out = g;
    return LB_OK;
}

void lb_gguf_free(lb_gguf *g)
{
    if (!g)
        return;
    free(g->kv);
    free(g->kv_hash);
    free(g->strs);
    free(g->tensors);
    free(g->t_hash);
    lb_mapfile_close(&g->file);
    free(g);
}

/* ---------------------------------------------------------------- queries */

uint32_t lb_gguf_version(const lb_gguf *g) { return g->version; }
uint64_t lb_gguf_alignment(const lb_gguf *g) { return g->alignment; }
uint64_t lb_gguf_data_offset(const lb_gguf *g) { return g->data_offset; }
size_t lb_gguf_file_size(const lb_gguf *g) { return g->size; }
uint64_t lb_gguf_implied_size(const lb_gguf *g) { return g->implied_size; }
const void *lb_gguf_bytes(const lb_gguf *g) { return g->bytes; }
int64_t lb_gguf_n_kv(const lb_gguf *g) { return g->n_kv; }
int64_t lb_gguf_n_tensors(const lb_gguf *g) { return g->n_tensors; }

static const gguf_kv *kv_at(const lb_gguf *g, int64_t i)
{
    return (g && i >= 0 && i < g->n_kv) ? &g->kv[i] : NULL;
}

lb_gguf_str lb_gguf_kv_key(const lb_gguf *g, int64_t i)
{
    const gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : (lb_gguf_str){NULL, 0};
}

lb_gguf_vtype lb_gguf_kv_type(const lb_gguf *g, int64_t i)
{
    const gguf_kv *kv = kv_at(g, i);
    return kv ? kv->type : LB_GGUF_VTYPE_COUNT;
}

lb_gguf_vtype lb_gguf_kv_arr_type(const lb_gguf *g, int64_t i)
{
    const gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == LB_GGUF_ARRAY ? kv->elem_type : LB_GGUF_VTYPE_COUNT;
}

uint64_t lb_gguf_kv_arr_n(const lb_gguf *g, int64_t i)
{
    const gguf_kv *kv = kv_at(g, i);
    return kv && kv->type == LB_GGUF_ARRAY ? kv->n : 0;
}

const void *lb_gguf_kv_raw(const lb_gguf *g, int64_t i, uint64_t *len)
{
    const gguf_kv *kv = kv_at(g, i);
    if (len)
        *len = kv ? kv->raw_len : 0;
    return kv ? kv->raw : NULL;
}

int64_t lb_gguf_find_key(const lb_gguf *g, const char *key)
{
    return g && key ? kv_lookup(g, key, strlen(key)) : -1;
}

const lb_gguf_tensor *lb_gguf_tensor_at(const lb_gguf *g, int64_t i)
{
    return (g && i >= 0 && i < g->n_tensors) ? &g->tensors[i] : NULL;
}

const lb_gguf_tensor *lb_gguf_find_tensor(const lb_gguf *g, const char *name)
{
    if (!g || !name)
        return NULL;
    int64_t i = tensor_lookup(g, name, strlen(name));
    return i < 0 ? NULL : &g->tensors[i];
}

/* Finds key and checks it is present; the caller checks the type. */
static lb_status need(const lb_gguf *g, const char *key, const gguf_kv **kv, lb_err *err)
{
    if (!g || !key)
        return lb__errf(err, LB_ERR_INVALID_ARG, "NULL argument to a GGUF getter");
    int64_t i = kv_lookup(g, key, strlen(key));
    if (i < 0)
        return lb__errf(err, LB_ERR_NOT_FOUND, "key '%s' not found", key);
    *kv = &g->kv[i];
    return LB_OK;
}

static lb_status wrong_type(const gguf_kv *kv, const char *expected, lb_err *err)
{
    if (kv->type == LB_GGUF_ARRAY)
        return lb__errf(err, LB_ERR_TYPE, "key '%s' at byte %" PRIu64 ": expected %s, found array of %s",
                        SHOW(kv->key), kv->at, expected, lb_gguf_vtype_name(kv->elem_type));
    return lb__errf(err, LB_ERR_TYPE, "key '%s' at byte %" PRIu64 ": expected %s, found %s",
                    SHOW(kv->key), kv->at, expected, lb_gguf_vtype_name(kv->type));
}

lb_status lb_gguf_get_str(const lb_gguf *g, const char *key, lb_gguf_str *out, lb_err *err)
{
    const gguf_kv *kv;
    lb_status st = need(g, key, &kv, err);
    if (st)
        return st;
    if (kv->type != LB_GGUF_STRING)
        return wrong_type(kv, "string", err);
    *out = kv->s;
    return LB_OK;
}

lb_status lb_gguf_get_bool(const lb_gguf *g, const char *key, bool *out, lb_err *err)
{
    const gguf_kv *kv;
    lb_status st = need(g, key, &kv, err);
    if (st)
        return st;
    if (kv->type != LB_GGUF_BOOL)
        return wrong_type(kv, "bool", err);
    *out = kv->elems[0] != 0;
    return LB_OK;
}

lb_status lb_gguf_get_f32(const lb_gguf *g, const char *key, float *out, lb_err *err)
{
    const gguf_kv *kv;
    lb_status st = need(g, key, &kv, err);
    if (st)
        return st;
    if (kv->type == LB_GGUF_F32) {
        uint32_t u = le32(kv->elems);
        memcpy(out, &u, 4);
    } else if (kv->type == LB_GGUF_F64) {
        uint64_t u = le64(kv->elems);
        double d;
        memcpy(&d, &u, 8);
        *out = (float)d;
    } else {
        return wrong_type(kv, "f32 or f64", err);
    }
    return LB_OK;
}

lb_status lb_gguf_get_int(const lb_gguf *g, const char *key, int64_t *out, lb_err *err)
{
    const gguf_kv *kv;
    lb_status st = need(g, key, &kv, err);
    if (st)
        return st;
    const uint8_t *p = kv->elems;
    switch (kv->type) {
    case LB_GGUF_U8: case LB_GGUF_BOOL: *out = p[0]; break;
    case LB_GGUF_I8: *out = (int8_t)p[0]; break;
    case LB_GGUF_U16: *out = (uint16_t)(p[0] | p[1] << 8); break;
    case LB_GGUF_I16: *out = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    case LB_GGUF_U32: *out = le32(p); break;
    case LB_GGUF_I32: *out = (int32_t)le32(p); break;
    case LB_GGUF_I64: *out = (int64_t)le64(p); break;
    case LB_GGUF_U64: {
        uint64_t v = le64(p);
        if (v > (uint64_t)INT64_MAX)
            return lb__errf(err, LB_ERR_RANGE, "key '%s' at byte %" PRIu64 ": u64 value %" PRIu64 " does not fit in int64",
                            key, kv->at, v);
        *out = (int64_t)v;
        break;
    }
    default:
        return wrong_type(kv, "an integer", err);
    }
    return LB_OK;
}

lb_status lb_gguf_get_arr(const lb_gguf *g, const char *key, lb_gguf_vtype *elem_type, uint64_t *n, lb_err *err)
{
    const gguf_kv *kv;
    lb_status st = need(g, key, &kv, err);
    if (st)
        return st;
    if (kv->type != LB_GGUF_ARRAY)
        return wrong_type(kv, "array", err);
    if (elem_type)
        *elem_type = kv->elem_type;
    if (n)
        *n = kv->n;
    return LB_OK;
}

const void *lb_gguf_arr_data(const lb_gguf *g, int64_t kv_index)
{
    const gguf_kv *kv = kv_at(g, kv_index);
    if (!kv || kv->type != LB_GGUF_ARRAY || kv->elem_type == LB_GGUF_STRING)
        return NULL;
    return kv->elems;
}

lb_gguf_str lb_gguf_arr_str(const lb_gguf *g, int64_t kv_index, uint64_t i)
{
    const gguf_kv *kv = kv_at(g, kv_index);
    if (!kv || kv->type != LB_GGUF_ARRAY || kv->elem_type != LB_GGUF_STRING || i >= kv->n)
        return (lb_gguf_str){NULL, 0};
    const uint8_t *p = g->strs[kv->str_first + i];
    return (lb_gguf_str){(const char *)(p + 8), le64(p)};
}
