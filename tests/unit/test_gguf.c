/* Tests of the GGUF reader and writer on the shared model files and on files written here. */
#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "format/gguf.h"

static bool str_is(lb_gguf_str s, const char *c)
{
    return s.ptr && s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0;
}

/* Reads the whole stream into a malloc'd buffer (*n bytes). */
static unsigned char *slurp(FILE *f, size_t *n)
{
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    rewind(f);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(b, 1, (size_t)sz, f);
    return b;
}

static unsigned char *read_path(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *n = 0;
        return NULL;
    }
    unsigned char *b = slurp(f, n);
    fclose(f);
    return b;
}

/* Writes w into memory and opens the result; *img receives the bytes (free them after lb_gguf_free). */
static lb_gguf *write_and_open(lb_gguf_writer *w, unsigned char **img, size_t *n)
{
    lb_err err = {0};
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (!f)
        return NULL;
    lb_status st = lb_gguf_writer_write_fp(w, f, &err);
    CHECKF(st == LB_OK, "%s", err.msg);
    *img = slurp(f, n);
    fclose(f);
    lb_gguf *g = NULL;
    st = lb_gguf_open_memory(*img, *n, &g, &err);
    CHECKF(st == LB_OK, "%s", err.msg);
    return g;
}

static void test_open_shared(void)
{
    static const char *files[] = {
        "models/llama-2-tiny-random.gguf", "models/techdocs-28M-Q2_K.gguf", "models/techdocs-28M-Q3_K_M.gguf",
        "models/techdocs-28M-Q4_0.gguf", "models/techdocs-28M-Q4_K_M.gguf", "models/techdocs-28M-Q8_0.gguf",
        "models/techdocs-28M-f16.gguf", "models/techdocs-qwen-22M-Q4_K_M.gguf", "models/techdocs-qwen-22M-f16.gguf",
        "tokenizers/ggml-vocab-falcon.gguf", "tokenizers/ggml-vocab-gpt-2.gguf", "tokenizers/ggml-vocab-llama-spm.gguf",
        "tokenizers/ggml-vocab-phi-3.gguf", "tokenizers/ggml-vocab-starcoder.gguf",
    };
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        for (int mm = 0; mm < 2; mm++) {
            lb_gguf *g = NULL;
            lb_err err = {0};
            lb_status st = lb_gguf_open_file(check_shared(files[k]), mm, &g, &err);
            CHECKF(st == LB_OK, "%s (mmap=%d): %s", files[k], mm, err.msg);
            if (st)
                continue;
            CHECK(lb_gguf_version(g) == 3);
            CHECK(lb_gguf_n_kv(g) > 10);
            lb_gguf_str arch;
            CHECK(lb_gguf_get_str(g, "general.architecture", &arch, &err) == LB_OK && arch.len > 0);
            /* Every tensor lies where its offset says, and every name finds itself. */
            const unsigned char *base = lb_gguf_bytes(g);
            for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
                const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
                CHECK((const unsigned char *)t->data == base + lb_gguf_data_offset(g) + t->offset);
                CHECK(lb_gguf_data_offset(g) + t->offset + t->nbytes <= lb_gguf_file_size(g));
                char nm[128];
                snprintf(nm, sizeof nm, "%.*s", (int)t->name.len, t->name.ptr);
                CHECK(lb_gguf_find_tensor(g, nm) == t);
            }
            for (int64_t i = 0; i < lb_gguf_n_kv(g); i++) {
                char key[256];
                lb_gguf_str ks = lb_gguf_kv_key(g, i);
                snprintf(key, sizeof key, "%.*s", (int)ks.len, ks.ptr);
                CHECK(lb_gguf_find_key(g, key) == i);
            }
            lb_gguf_free(g);
        }
    }
}

static void test_techdocs_q4km(void)
{
    lb_gguf *g = NULL;
    lb_err err = {0};
    lb_status st = lb_gguf_open_file(check_shared("models/techdocs-28M-Q4_K_M.gguf"), true, &g, &err);
    CHECKF(st == LB_OK, "%s", err.msg);
    if (st)
        return;
    CHECK(lb_gguf_n_kv(g) == 23);
    CHECK(lb_gguf_n_tensors(g) == 75);
    CHECK(lb_gguf_alignment(g) == 32);
    CHECK(lb_gguf_data_offset(g) == 90240);
    CHECK(lb_gguf_file_size(g) == 17469568);

    lb_gguf_str s;
    CHECK(lb_gguf_get_str(g, "general.architecture", &s, &err) == LB_OK && str_is(s, "llama"));
    int64_t v = 0;
    CHECK(lb_gguf_get_int(g, "llama.block_count", &v, &err) == LB_OK && v == 8);
    CHECK(lb_gguf_get_int(g, "llama.attention.head_count_kv", &v, &err) == LB_OK && v == 2);
    CHECK(lb_gguf_get_int(g, "tokenizer.ggml.add_bos_token", &v, &err) == LB_OK && v == 1);
    float f = 0;
    CHECK(lb_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f, &err) == LB_OK && f == 1e-5f);
    bool b = false;
    CHECK(lb_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &err) == LB_OK && b);
    CHECK(lb_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b, &err) == LB_OK && !b);

    lb_gguf_vtype et;
    uint64_t n = 0;
    CHECK(lb_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &err) == LB_OK && et == LB_GGUF_STRING && n == 4096);
    int64_t ti = lb_gguf_find_key(g, "tokenizer.ggml.tokens");
    CHECK(ti >= 0);
    CHECK(str_is(lb_gguf_arr_str(g, ti, 0), "<unk>"));
    CHECK(str_is(lb_gguf_arr_str(g, ti, 1), "<s>"));
    CHECK(str_is(lb_gguf_arr_str(g, ti, 3), "<0x00>"));
    CHECK(lb_gguf_arr_str(g, ti, 4096).ptr == NULL);
    CHECK(lb_gguf_arr_data(g, ti) == NULL);   /* not numeric */
    int64_t si = lb_gguf_find_key(g, "tokenizer.ggml.scores");
    CHECK(lb_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &err) == LB_OK && et == LB_GGUF_F32 && n == 4096);
    CHECK(lb_gguf_arr_data(g, si) != NULL);
    CHECK(lb_gguf_arr_str(g, si, 0).ptr == NULL);

    /* Wrong type, absent key. */
    st = lb_gguf_get_int(g, "general.architecture", &v, &err);
    CHECK(st == LB_ERR_TYPE);
    CHECKF(strstr(err.msg, "general.architecture") && strstr(err.msg, "string"), "%s", err.msg);
    st = lb_gguf_get_str(g, "llama.block_count", &s, &err);
    CHECKF(st == LB_ERR_TYPE && strstr(err.msg, "llama.block_count") && strstr(err.msg, "u32"), "%s", err.msg);
    st = lb_gguf_get_f32(g, "tokenizer.ggml.scores", &f, &err);
    CHECKF(st == LB_ERR_TYPE && strstr(err.msg, "array of f32"), "%s", err.msg);
    st = lb_gguf_get_int(g, "no.such.key", &v, &err);
    CHECKF(st == LB_ERR_NOT_FOUND && strstr(err.msg, "no.such.key"), "%s", err.msg);
    CHECK(lb_gguf_find_key(g, "llama") == -1);
    CHECK(lb_gguf_find_key(g, "general.architecturex") == -1);

    const lb_gguf_tensor *t = lb_gguf_find_tensor(g, "blk.0.attn_q.weight");
    CHECK(t != NULL);
    if (t) {
        CHECK(t->type == LB_TYPE_Q4_K && t->n_dims == 2 && t->ne[0] == 512 && t->ne[1] == 512 && t->ne[2] == 1);
        CHECK(t->nbytes == 147456 && t->offset == 3088384);
    }
    t = lb_gguf_find_tensor(g, "output.weight");
    CHECK(t && t->type == LB_TYPE_Q6_K && t->ne[1] == 4096 && t->offset == 0);
    CHECK(lb_gguf_find_tensor(g, "blk.0.attn_q") == NULL);
    CHECK(lb_gguf_tensor_at(g, 75) == NULL && lb_gguf_tensor_at(g, -1) == NULL);

    char buf[64];
    lb_gguf_kv_format(g, ti, buf, sizeof buf);
    CHECKF(strcmp(buf, "[array of 4096 string]") == 0, "%s", buf);
    lb_gguf_kv_format(g, lb_gguf_find_key(g, "llama.rope.freq_base"), buf, sizeof buf);
    CHECKF(strcmp(buf, "10000") == 0, "%s", buf);
    lb_gguf_kv_format(g, lb_gguf_find_key(g, "general.name"), buf, sizeof buf);
    CHECKF(strcmp(buf, "techdocs-28M") == 0, "%s", buf);
    lb_gguf_kv_format(g, lb_gguf_find_key(g, "general.name"), buf, 8);
    CHECKF(strcmp(buf, "tech...") == 0, "%s", buf);
    lb_gguf_kv_format(g, lb_gguf_find_key(g, "tokenizer.ggml.add_bos_token"), buf, sizeof buf);
    CHECKF(strcmp(buf, "true") == 0, "%s", buf);
    lb_gguf_free(g);
}

/* Every value type and a few tensors survive a write and a read unchanged. */
static void test_round_trip(void)
{
    lb_gguf_writer *w = lb_gguf_writer_new();
    CHECK(w != NULL);
    CHECK(lb_gguf_writer_set_u32(w, "a.u32", 4000000000u) == LB_OK);
    CHECK(lb_gguf_writer_set_i32(w, "a.i32", -7) == LB_OK);
    CHECK(lb_gguf_writer_set_u64(w, "a.u64", UINT64_MAX) == LB_OK);
    CHECK(lb_gguf_writer_set_f32(w, "a.f32", 0.25f) == LB_OK);
    CHECK(lb_gguf_writer_set_bool(w, "a.bool", true) == LB_OK);
    CHECK(lb_gguf_writer_set_str(w, "a.str", "first") == LB_OK);
    CHECK(lb_gguf_writer_set_str(w, "a.str", "héllo\nworld") == LB_OK);   /* replaces, keeps position */
    CHECK(lb_gguf_writer_set_str(w, "a.empty", "") == LB_OK);
    CHECK(lb_gguf_writer_set_u32(w, "general.alignment", 64) == LB_OK);
    const uint8_t u8s[3] = {1, 2, 255};
    const int8_t i8s[2] = {-128, 127};
    const uint16_t u16s[2] = {1, 65535};
    const int16_t i16s[2] = {-32768, 5};
    const int64_t i64s[2] = {INT64_MIN, 42};
    const double f64s[2] = {3.5, -1e300};
    const float f32s[4] = {1, 2, 3, 4};
    const uint8_t bools[2] = {0, 1};
    CHECK(lb_gguf_writer_set_arr(w, "arr.u8", LB_GGUF_U8, u8s, 3) == LB_OK);
    CHECK(lb_gguf_writer_set_arr(w, "arr.i8", LB_GGUF_I8, i8s, 2) == LB_OK);
    CHECK(lb_gguf_writer_set_arr(w, "arr.u16", LB_GGUF_U16, u16s, 2) == LB_OK);
    CHECK(lb_gguf_writer_set_arr(w, "arr.i16", LB_GGUF_I16, i16s, 2) == LB_OK);
    CHECK(lb_gguf_writer_set_arr(w, "arr.i64", LB_GGUF_I64, i64s, 2) == LB_OK);
    CHECK(lb_gguf_writer_set_arr(w, "arr.f64", LB_GGUF_F64, f64s, 2) == LB_OK);
    CHECK(lb_gguf_writer_set_arr(w, "arr.f32", LB_GGUF_F32, f32s, 4) == LB_OK);
    CHECK(lb_gguf_writer_set_arr(w, "arr.bool", LB_GGUF_BOOL, bools, 2) == LB_OK);
    CHECK(lb_gguf_writer_set_arr(w, "arr.empty", LB_GGUF_U32, NULL, 0) == LB_OK);
    CHECK(lb_gguf_writer_set_arr(w, "arr.bad", LB_GGUF_STRING, u8s, 1) == LB_ERR_INVALID_ARG);
    CHECK(lb_gguf_writer_set_arr(w, "arr.bad", LB_GGUF_ARRAY, u8s, 1) == LB_ERR_INVALID_ARG);
    const lb_gguf_str strs[3] = {{"one", 3}, {"", 0}, {"th\0ree", 6}};
    CHECK(lb_gguf_writer_set_arr_str(w, "arr.str", strs, 3) == LB_OK);
    CHECK(lb_gguf_writer_set_u32(w, "gone", 1) == LB_OK);
    CHECK(lb_gguf_writer_remove(w, "gone") == LB_OK);
    CHECK(lb_gguf_writer_remove(w, "never.there") == LB_OK);

    /* Tensors: shapes [5] f32, [64,3] q8_0, [256,2] q4_K, an empty [0,4] f16. */
    float t0[5] = {1, -2, 3.5f, 0, 9};
    uint8_t t1[2 * 34 * 3], t2[144 * 2];
    for (size_t i = 0; i < sizeof t1; i++)
        t1[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < sizeof t2; i++)
        t2[i] = (uint8_t)(i * 13 + 1);
    CHECK(lb_gguf_writer_add_tensor(w, "t.f32", LB_TYPE_F32, 1, (int64_t[]){5}, t0) == LB_OK);
    CHECK(lb_gguf_writer_add_tensor(w, "t.q8", LB_TYPE_Q8_0, 2, (int64_t[]){64, 3}, t1) == LB_OK);
    CHECK(lb_gguf_writer_add_tensor(w, "t.q4k", LB_TYPE_Q4_K, 2, (int64_t[]){256, 2}, t2) == LB_OK);
    CHECK(lb_gguf_writer_add_tensor(w, "t.empty", LB_TYPE_F16, 2, (int64_t[]){0, 4}, NULL) == LB_OK);
    /* Rejected: duplicate name, bad block multiple, bad dims, negative ne, unknown type, missing data. */
    CHECK(lb_gguf_writer_add_tensor(w, "t.f32", LB_TYPE_F32, 1, (int64_t[]){5}, t0) == LB_ERR_INVALID_ARG);
    CHECK(lb_gguf_writer_add_tensor(w, "x", LB_TYPE_Q8_0, 1, (int64_t[]){33}, t1) == LB_ERR_INVALID_ARG);
    CHECK(lb_gguf_writer_add_tensor(w, "x", LB_TYPE_F32, 0, (int64_t[]){1}, t0) == LB_ERR_INVALID_ARG);
    CHECK(lb_gguf_writer_add_tensor(w, "x", LB_TYPE_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, t0) == LB_ERR_INVALID_ARG);
    CHECK(lb_gguf_writer_add_tensor(w, "x", LB_TYPE_F32, 1, (int64_t[]){-1}, t0) == LB_ERR_INVALID_ARG);
    CHECK(lb_gguf_writer_add_tensor(w, "x", 4, 1, (int64_t[]){1}, t0) == LB_ERR_INVALID_ARG);
    CHECK(lb_gguf_writer_add_tensor(w, "x", LB_TYPE_F32, 1, (int64_t[]){1}, NULL) == LB_ERR_INVALID_ARG);

    unsigned char *img = NULL;
    size_t n = 0;
    lb_gguf *g = write_and_open(w, &img, &n);
    if (g) {
        lb_err err = {0};
        CHECK(lb_gguf_version(g) == 3);
        CHECK(lb_gguf_alignment(g) == 64);
        CHECK(lb_gguf_data_offset(g) % 64 == 0);
        CHECK(n % 64 == 0);
        CHECK(lb_gguf_n_kv(g) == 18);
        CHECK(lb_gguf_find_key(g, "gone") < 0);
        lb_gguf_str k = lb_gguf_kv_key(g, 5);
        CHECK(str_is(k, "a.str"));
        int64_t v;
        CHECK(lb_gguf_get_int(g, "a.u32", &v, &err) == LB_OK && v == 4000000000ll);
        CHECK(lb_gguf_get_int(g, "a.i32", &v, &err) == LB_OK && v == -7);
        CHECK(lb_gguf_get_int(g, "a.u64", &v, &err) == LB_ERR_RANGE);
        CHECKF(strstr(err.msg, "a.u64") != NULL, "%s", err.msg);
        float f;
        CHECK(lb_gguf_get_f32(g, "a.f32", &f, &err) == LB_OK && f == 0.25f);
        bool b;
        CHECK(lb_gguf_get_bool(g, "a.bool", &b, &err) == LB_OK && b);
        lb_gguf_str s;
        CHECK(lb_gguf_get_str(g, "a.str", &s, &err) == LB_OK && str_is(s, "héllo\nworld"));
        CHECK(lb_gguf_get_str(g, "a.empty", &s, &err) == LB_OK && s.len == 0);
        char buf[64];
        lb_gguf_kv_format(g, 5, buf, sizeof buf);
        CHECKF(strcmp(buf, "héllo\\nworld") == 0, "%s", buf);

        struct { const char *key; lb_gguf_vtype t; const void *data; uint64_t n, es; } arrs[] = {
            {"arr.u8", LB_GGUF_U8, u8s, 3, 1}, {"arr.i8", LB_GGUF_I8, i8s, 2, 1},
            {"arr.u16", LB_GGUF_U16, u16s, 2, 2}, {"arr.i16", LB_GGUF_I16, i16s, 2, 2},
            {"arr.i64", LB_GGUF_I64, i64s, 2, 8}, {"arr.f64", LB_GGUF_F64, f64s, 2, 8},
            {"arr.f32", LB_GGUF_F32, f32s, 4, 4}, {"arr.bool", LB_GGUF_BOOL, bools, 2, 1},
            {"arr.empty", LB_GGUF_U32, NULL, 0, 4},
        };
        for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) {
            lb_gguf_vtype et;
            uint64_t an;
            CHECKF(lb_gguf_get_arr(g, arrs[i].key, &et, &an, &err) == LB_OK && et == arrs[i].t && an == arrs[i].n,
                   "%s", arrs[i].key);
            const void *d = lb_gguf_arr_data(g, lb_gguf_find_key(g, arrs[i].key));
            CHECK(d != NULL);
            if (d && an)
                CHECKF(memcmp(d, arrs[i].data, (size_t)(an * arrs[i].es)) == 0, "%s", arrs[i].key);
        }
        int64_t si = lb_gguf_find_key(g, "arr.str");
        CHECK(lb_gguf_kv_arr_n(g, si) == 3 && lb_gguf_kv_arr_type(g, si) == LB_GGUF_STRING);
        CHECK(str_is(lb_gguf_arr_str(g, si, 0), "one"));
        lb_gguf_str e = lb_gguf_arr_str(g, si, 1);
        CHECK(e.ptr != NULL && e.len == 0);
        e = lb_gguf_arr_str(g, si, 2);
        CHECK(e.len == 6 && memcmp(e.ptr, "th\0ree", 6) == 0);

        CHECK(lb_gguf_n_tensors(g) == 4);
        const lb_gguf_tensor *t = lb_gguf_find_tensor(g, "t.f32");
        CHECK(t && t->nbytes == 20 && memcmp(t->data, t0, 20) == 0 && t->n_dims == 1 && t->ne[1] == 1);
        t = lb_gguf_find_tensor(g, "t.q8");
        CHECK(t && t->nbytes == sizeof t1 && memcmp(t->data, t1, sizeof t1) == 0 && t->offset % 64 == 0);
        t = lb_gguf_find_tensor(g, "t.q4k");
        CHECK(t && t->nbytes == sizeof t2 && memcmp(t->data, t2, sizeof t2) == 0 && t->offset % 64 == 0);
        t = lb_gguf_find_tensor(g, "t.empty");
        CHECK(t && t->nbytes == 0 && t->ne[0] == 0 && t->ne[1] == 4);
        lb_gguf_free(g);
    }
    free(img);

    /* A bad alignment key is refused at write time. */
    lb_err err = {0};
    CHECK(lb_gguf_writer_set_u32(w, "general.alignment", 48) == LB_OK);
    FILE *f = tmpfile();
    CHECK(lb_gguf_writer_write_fp(w, f, &err) == LB_ERR_INVALID_ARG);
    CHECKF(strstr(err.msg, "general.alignment") != NULL, "%s", err.msg);
    fclose(f);
    lb_gguf_writer_free(w);
    lb_gguf_writer_free(NULL);
}

/* A file with no tensors and no metadata is valid, and ends right after the header. */
static void test_empty(void)
{
    lb_gguf_writer *w = lb_gguf_writer_new();
    unsigned char *img = NULL;
    size_t n = 0;
    lb_gguf *g = write_and_open(w, &img, &n);
    CHECK(n == 24);
    if (g) {
        CHECK(lb_gguf_n_kv(g) == 0 && lb_gguf_n_tensors(g) == 0);
        CHECK(lb_gguf_find_key(g, "x") == -1 && lb_gguf_find_tensor(g, "x") == NULL);
        lb_gguf_free(g);
    }
    free(img);
    lb_gguf_writer_free(w);
}

/* Re-writing a llama.cpp file from its parsed view (copy_kv + every tensor)
 * reproduces it byte for byte: same kv encoding, tensor order, offsets and padding. */
static void rewrite_identical(const char *rel)
{
    lb_err err = {0};
    lb_gguf *g = NULL;
    lb_status st = lb_gguf_open_file(check_shared(rel), true, &g, &err);
    CHECKF(st == LB_OK, "%s", err.msg);
    if (st)
        return;
    lb_gguf_writer *w = lb_gguf_writer_new();
    CHECK(lb_gguf_writer_copy_kv(w, g) == LB_OK);
    for (int64_t i = 0; i < lb_gguf_n_tensors(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        char nm[128];
        snprintf(nm, sizeof nm, "%.*s", (int)t->name.len, t->name.ptr);
        CHECK(lb_gguf_writer_add_tensor(w, nm, t->type, t->n_dims, t->ne, t->data) == LB_OK);
    }
    static int seq = 0;
    char path[256];
    snprintf(path, sizeof path, "/tmp/lowbit-test-gguf-%ld-%d.gguf", (long)getpid(), seq++);
    st = lb_gguf_writer_write(w, path, &err);
    CHECKF(st == LB_OK, "%s", err.msg);
    size_t n = 0;
    unsigned char *img = read_path(path, &n);
    remove(path);
    CHECKF(n == lb_gguf_file_size(g), "%s: %zu vs %zu bytes", rel, n, lb_gguf_file_size(g));
    CHECKF(img && n == lb_gguf_file_size(g) && memcmp(img, lb_gguf_bytes(g), n) == 0, "%s differs", rel);
    /* And the re-read view agrees key by key and tensor by tensor. */
    lb_gguf *h = NULL;
    if (img && lb_gguf_open_memory(img, n, &h, &err) == LB_OK) {
        CHECK(lb_gguf_n_kv(h) == lb_gguf_n_kv(g) && lb_gguf_n_tensors(h) == lb_gguf_n_tensors(g));
        for (int64_t i = 0; i < lb_gguf_n_kv(g) && i < lb_gguf_n_kv(h); i++) {
            uint64_t la, lb;
            const void *a = lb_gguf_kv_raw(g, i, &la), *b = lb_gguf_kv_raw(h, i, &lb);
            lb_gguf_str ka = lb_gguf_kv_key(g, i), kb = lb_gguf_kv_key(h, i);
            CHECK(ka.len == kb.len && memcmp(ka.ptr, kb.ptr, ka.len) == 0);
            CHECK(lb_gguf_kv_type(g, i) == lb_gguf_kv_type(h, i));
            CHECK(la == lb && memcmp(a, b, la) == 0);
        }
        for (int64_t i = 0; i < lb_gguf_n_tensors(g) && i < lb_gguf_n_tensors(h); i++) {
            const lb_gguf_tensor *a = lb_gguf_tensor_at(g, i), *b = lb_gguf_tensor_at(h, i);
            CHECK(a->nbytes == b->nbytes && a->type == b->type && a->offset == b->offset);
            CHECK(memcmp(a->data, b->data, a->nbytes) == 0);
        }
        lb_gguf_free(h);
    } else {
        CHECKF(0, "re-read failed: %s", err.msg);
    }
    free(img);
    lb_gguf_writer_free(w);
    lb_gguf_free(g);
}

static void test_rewrite_techdocs(void) { rewrite_identical("models/techdocs-28M-Q4_K_M.gguf"); }
static void test_rewrite_vocab(void) { rewrite_identical("tokenizers/ggml-vocab-gpt-2.gguf"); }

/* A header-only view parses any prefix that holds the metadata and tensor
 * infos, says how many bytes a shorter prefix needs, and still rejects
 * corrupt headers. */
static void test_open_header(void)
{
    size_t n = 0;
    unsigned char *img = read_path(check_shared("models/techdocs-28M-Q4_K_M.gguf"), &n);
    CHECK(img != NULL && n > 0);
    if (!img)
        return;
    lb_err err = {0};
    lb_gguf *full = NULL, *h = NULL;
    CHECK(lb_gguf_open_memory(img, n, &full, &err) == LB_OK);
    if (!full) {
        free(img);
        return;
    }
    uint64_t doff = lb_gguf_data_offset(full);
    CHECK(lb_gguf_implied_size(full) <= n && n - lb_gguf_implied_size(full) < lb_gguf_alignment(full));

    /* The whole file and the bare header give the same view, without data pointers. */
    size_t sizes[2] = {n, (size_t)doff};
    for (int k = 0; k < 2; k++) {
        uint64_t need = 0;
        lb_status st = lb_gguf_open_header(img, sizes[k], &h, &need, &err);
        CHECKF(st == LB_OK, "%zu bytes: %s", sizes[k], err.msg);
        if (st)
            continue;
        CHECK(lb_gguf_n_tensors(h) == lb_gguf_n_tensors(full) && lb_gguf_n_kv(h) == lb_gguf_n_kv(full));
        CHECK(lb_gguf_data_offset(h) == doff);
        CHECK(lb_gguf_implied_size(h) == lb_gguf_implied_size(full));
        const lb_gguf_tensor *t = lb_gguf_find_tensor(h, "output_norm.weight");
        CHECK(t && t->data == NULL && t->nbytes == lb_gguf_find_tensor(full, "output_norm.weight")->nbytes);
        lb_gguf_free(h);
        h = NULL;
    }
    /* open_memory still insists on the data. */
    CHECK(lb_gguf_open_memory(img, (size_t)doff, &h, &err) == LB_ERR_FORMAT);

    /* Short prefixes (every length near the start and the end of the header,
     * a sample in between) are LB_ERR_RANGE with a need beyond the prefix;
     * the first length that parses lies in the padding before the data. */
    size_t first_ok = 0;
    int bad = 0;
    for (size_t len = 0; len <= doff && bad < 5;
         len = len < 200 || len + 300 >= doff ? len + 1 : (len + 4099 < doff - 300 ? len + 4099 : doff - 300)) {
        uint64_t need = 0;
        lb_status st = lb_gguf_open_header(img, len, &h, &need, &err);
        if (st == LB_OK) {
            if (!first_ok)
                first_ok = len;
            lb_gguf_free(h);
            h = NULL;
        } else if (!(st == LB_ERR_RANGE && need > len && need <= doff)) {
            bad++;
            CHECKF(0, "prefix %zu: status %d need %" PRIu64 ": %s", len, (int)st, need, err.msg);
        }
    }
    CHECKF(first_ok > 0 && first_ok <= doff && first_ok + lb_gguf_alignment(full) > doff, "first_ok %zu doff %" PRIu64,
           first_ok, doff);

    /* Following the needs from an empty prefix converges. */
    size_t len = 0;
    int rounds = 0;
    for (;; rounds++) {
        uint64_t need = 0;
        lb_status st = lb_gguf_open_header(img, len, &h, &need, &err);
        if (st != LB_ERR_RANGE)
            break;
        CHECK(need > len);
        len = (size_t)need;
    }
    CHECK(h != NULL);
    lb_gguf_free(h);
    h = NULL;

    /* A corrupt header is a format error, not a request for more bytes. */
    unsigned char *bad_img = malloc((size_t)doff);
    memcpy(bad_img, img, (size_t)doff);
    bad_img[5] = 0x7f;   /* version */
    CHECK(lb_gguf_open_header(bad_img, (size_t)doff, &h, NULL, &err) == LB_ERR_FORMAT);
    bad_img[0] = 'X';
    CHECK(lb_gguf_open_header(bad_img, 2, &h, NULL, &err) == LB_ERR_RANGE);
    CHECK(lb_gguf_open_header(bad_img, 4, &h, NULL, &err) == LB_ERR_FORMAT);
    free(bad_img);
    lb_gguf_free(full);
    free(img);
}

static void test_open_errors(void)
{
    lb_err err = {0};
    lb_gguf *g = NULL;
    CHECK(lb_gguf_open_file("/nonexistent/x.gguf", true, &g, &err) == LB_ERR_IO);
    CHECKF(strstr(err.msg, "/nonexistent/x.gguf") != NULL, "%s", err.msg);
    CHECK(lb_gguf_open_file("/nonexistent/x.gguf", false, &g, &err) == LB_ERR_IO);
    CHECK(lb_gguf_open_file("/tmp", true, &g, &err) != LB_OK);
    CHECK(g == NULL);
    /* A text file is reported as such, with its path. */
    CHECK(lb_gguf_open_file(check_shared("models/README.md"), true, &g, &err) == LB_ERR_FORMAT);
    CHECKF(strstr(err.msg, "README.md") && strstr(err.msg, "magic"), "%s", err.msg);
    CHECK(lb_gguf_open_memory(NULL, 0, &g, &err) == LB_ERR_FORMAT);
}

int main(void)
{
    RUN(test_open_shared);
    RUN(test_techdocs_q4km);
    RUN(test_round_trip);
    RUN(test_empty);
    RUN(test_rewrite_techdocs);
    RUN(test_rewrite_vocab);
    RUN(test_open_errors);
    RUN(test_open_header);
    return check_done();
}
