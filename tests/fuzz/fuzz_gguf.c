/* libFuzzer target for the GGUF reader: parse arbitrary bytes, then exercise
 * every getter on every key and tensor, and re-write what was accepted. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fails loudly, so libFuzzer records the input as a crash. */
#define REQUIRE(c)                                                       \
    do {                                                                 \
        if (!(c)) {                                                      \
            fprintf(stderr, "fuzz_gguf: %s:%d: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                     \
        }                                                                \
    } while (0)

static void walk(const lb_gguf *g)
{
    uint64_t sum = 0;   /* bytes read back, so ASan checks every access */
    lb_err err;
    char key[512], text[96];
    for (int64_t i = 0; i < lb_gguf_n_kv(g); i++) {
        lb_gguf_str k = lb_gguf_kv_key(g, i);
        REQUIRE(k.ptr && k.len > 0);
        if (k.len >= sizeof key)
            continue;
        memcpy(key, k.ptr, (size_t)k.len);
        key[k.len] = '\0';
        REQUIRE(lb_gguf_find_key(g, key) == i);
        lb_gguf_vtype t = lb_gguf_kv_type(g, i);
        lb_gguf_str s;
        bool b;
        float f;
        int64_t v;
        lb_gguf_vtype et;
        uint64_t n;
        REQUIRE((lb_gguf_get_str(g, key, &s, &err) == LB_OK) == (t == LB_GGUF_STRING));
        REQUIRE((lb_gguf_get_bool(g, key, &b, &err) == LB_OK) == (t == LB_GGUF_BOOL));
        REQUIRE((lb_gguf_get_f32(g, key, &f, &err) == LB_OK) == (t == LB_GGUF_F32 || t == LB_GGUF_F64));
        lb_status st = lb_gguf_get_int(g, key, &v, &err);
        REQUIRE(st == LB_OK || st == LB_ERR_TYPE || st == LB_ERR_RANGE);
        REQUIRE((lb_gguf_get_arr(g, key, &et, &n, &err) == LB_OK) == (t == LB_GGUF_ARRAY));
        if (t == LB_GGUF_STRING)
            for (uint64_t j = 0; j < s.len; j++)
                sum += (unsigned char)s.ptr[j];
        if (t == LB_GGUF_ARRAY) {
            REQUIRE(et != LB_GGUF_ARRAY && et < LB_GGUF_VTYPE_COUNT);
            if (et == LB_GGUF_STRING) {
                REQUIRE(lb_gguf_arr_data(g, i) == NULL);
                for (uint64_t j = 0; j < n; j++) {
                    lb_gguf_str e = lb_gguf_arr_str(g, i, j);
                    REQUIRE(e.ptr != NULL);
                    if (e.len)
                        sum += (unsigned char)e.ptr[e.len - 1];
                }
                REQUIRE(lb_gguf_arr_str(g, i, n).ptr == NULL);
            } else {
                const unsigned char *d = lb_gguf_arr_data(g, i);
                REQUIRE(d != NULL);
                uint64_t raw_len;
                const unsigned char *raw = lb_gguf_kv_raw(g, i, &raw_len);
                REQUIRE(raw_len >= 12 && d == raw + 12);
                if (raw_len > 12)
                    sum += d[raw_len - 13];
            }
        }
        lb_gguf_kv_format(g, i, text, sizeof text);
        REQUIRE(strlen(text) < sizeof text);
        lb_gguf_kv_format(g, i, text, 5);
        REQUIRE(strlen(text) < 5);
    }
    REQUIRE(lb_gguf_kv_key(g, lb_gguf_n_kv(g)).ptr == NULL);
    volatile uint64_t sink_sum = sum;
    (void)sink_sum;
    uint64_t align = lb_gguf_alignment(g);
    REQUIRE(align && (align & (align - 1)) == 0);
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        REQUIRE(t && t->n_dims >= 1 && t->n_dims <= LB_GGUF_MAX_DIMS);
        REQUIRE(t->offset % align == 0);
        REQUIRE(lb_gguf_data_offset(g) + t->offset + t->nbytes <= lb_gguf_file_size(g));
        if (t->nbytes) {
            const unsigned char *d = t->data;
            volatile unsigned char sink = (unsigned char)(d[0] ^ d[t->nbytes - 1]);
            (void)sink;
        }
        if (t->name.len < sizeof key) {
            memcpy(key, t->name.ptr, (size_t)t->name.len);
            key[t->name.len] = '\0';
            REQUIRE(lb_gguf_find_tensor(g, key) == t);
        }
    }
}

/* Whatever the reader accepts, the writer must reproduce as a file the reader accepts. */
static void rewrite(const lb_gguf *g)
{
    lb_gguf_writer *w = lb_gguf_writer_new();
    REQUIRE(w);
    REQUIRE(lb_gguf_writer_copy_kv(w, g) == LB_OK);
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        char *name = malloc((size_t)t->name.len + 1);
        memcpy(name, t->name.ptr, (size_t)t->name.len);
        name[t->name.len] = '\0';
        REQUIRE(lb_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data) == LB_OK);
        free(name);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    REQUIRE(f);
    lb_err err;
    REQUIRE(lb_gguf_writer_write_fp(w, f, &err) == LB_OK);
    fclose(f);
    lb_gguf *h = NULL;
    lb_status st = lb_gguf_open_memory(buf, len, &h, &err);
    if (st)
        fprintf(stderr, "fuzz_gguf: re-read failed: %s\n", err.msg);
    REQUIRE(st == LB_OK);
    REQUIRE(lb_gguf_n_kv(h) == lb_gguf_n_kv(g) && lb_gguf_n_tensors(h) == lb_gguf_n_tensors(g));
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *a = lb_gguf_tensor_at(g, i), *b = lb_gguf_tensor_at(h, i);
        REQUIRE(a->nbytes == b->nbytes && memcmp(a->data, b->data, (size_t)a->nbytes) == 0);
    }
    lb_gguf_free(h);
    free(buf);
    lb_gguf_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lb_gguf *g = NULL;
    lb_err err;
    lb_status st = lb_gguf_open_memory(data, size, &g, &err);
    if (st != LB_OK) {
        REQUIRE(g == NULL);
        REQUIRE(err.msg[0] != '\0' && strlen(err.msg) < sizeof err.msg);
        return 0;
    }
    walk(g);
    rewrite(g);
    lb_gguf_free(g);
    return 0;
}
