/* Handcrafted corrupt GGUF images, one per failure class: each must fail with
 * the right status and a message naming the offending key, tensor or offset. */
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "format/gguf.h"

/* A raw byte builder, so each case writes exactly the bytes it means. */
typedef struct rb {
    uint8_t d[8192];   /* [n] the image */
    size_t n;
} rb;

static void raw(rb *b, const void *p, size_t n)
{
    if (b->n + n > sizeof b->d) {
        fprintf(stderr, "test image too large\n");
        exit(2);
    }
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void le(rb *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        raw(b, &c, 1);
    }
}
static void u8_(rb *b, uint8_t v) { le(b, v, 1); }
static void u32_(rb *b, uint32_t v) { le(b, v, 4); }
static void u64_(rb *b, uint64_t v) { le(b, v, 8); }
static void str_(rb *b, const char *s) { u64_(b, strlen(s)); raw(b, s, strlen(s)); }
static void pad(rb *b, size_t a) { while (b->n % a) u8_(b, 0); }

static void header(rb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    b->n = 0;
    raw(b, "GGUF", 4);
    u32_(b, version);
    u64_(b, n_tensors);
    u64_(b, n_kv);
}
static void kv_u32(rb *b, const char *k, uint32_t v) { str_(b, k); u32_(b, LB_GGUF_U32); u32_(b, v); }
static void kv_str(rb *b, const char *k, const char *v) { str_(b, k); u32_(b, LB_GGUF_STRING); str_(b, v); }
static void tinfo(rb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off)
{
    str_(b, name);
    u32_(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        u64_(b, ne[d]);
    u32_(b, type);
    u64_(b, off);
}
static void data(rb *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        u8_(b, (uint8_t)i);
}

/* Opens the image and checks the status and that the message holds both needles. */
#define EXPECT(b, status, n1, n2) expect_(__LINE__, (b)->d, (b)->n, status, n1, n2)
static void expect_(int line, const uint8_t *d, size_t n, lb_status want, const char *n1, const char *n2)
{
    lb_gguf *g = (lb_gguf *)(uintptr_t)1;   /* must stay untouched on failure */
    lb_err err = {0};
    lb_status st = lb_gguf_open_memory(d, n, &g, &err);
    CHECKF(st == want, "line %d: status %s, want %s (%s)", line, lb_status_str(st), lb_status_str(want), err.msg);
    if (st == LB_OK) {
        lb_gguf_free(g);
        return;
    }
    CHECKF(g == (lb_gguf *)(uintptr_t)1, "line %d: out written on failure", line);
    CHECKF(err.status == st, "line %d: err.status", line);
    CHECKF(!n1 || strstr(err.msg, n1), "line %d: message lacks '%s': %s", line, n1, err.msg);
    CHECKF(!n2 || strstr(err.msg, n2), "line %d: message lacks '%s': %s", line, n2, err.msg);
}

/* A small valid file with every value type, a string array and two tensors
 * whose data ends exactly at the end of the file, so every proper prefix is invalid. */
static void build_valid(rb *b)
{
    header(b, 3, 2, 16);
    kv_u32(b, "general.alignment", 32);
    kv_str(b, "general.architecture", "llama");
    str_(b, "v.u8"); u32_(b, LB_GGUF_U8); u8_(b, 200);
    str_(b, "v.i8"); u32_(b, LB_GGUF_I8); u8_(b, 0x80);
    str_(b, "v.u16"); u32_(b, LB_GGUF_U16); le(b, 65535, 2);
    str_(b, "v.i16"); u32_(b, LB_GGUF_I16); le(b, 0x8000, 2);
    str_(b, "v.i32"); u32_(b, LB_GGUF_I32); u32_(b, (uint32_t)-5);
    str_(b, "v.f32"); u32_(b, LB_GGUF_F32); u32_(b, 0x3f800000);
    str_(b, "v.bool"); u32_(b, LB_GGUF_BOOL); u8_(b, 1);
    str_(b, "v.u64"); u32_(b, LB_GGUF_U64); u64_(b, 1ull << 40);
    str_(b, "v.i64"); u32_(b, LB_GGUF_I64); u64_(b, (uint64_t)-3);
    str_(b, "v.f64"); u32_(b, LB_GGUF_F64); u64_(b, 0x4000000000000000ull);
    str_(b, "v.arr_u32"); u32_(b, LB_GGUF_ARRAY); u32_(b, LB_GGUF_U32); u64_(b, 3); u32_(b, 1); u32_(b, 2); u32_(b, 3);
    str_(b, "v.arr_str"); u32_(b, LB_GGUF_ARRAY); u32_(b, LB_GGUF_STRING); u64_(b, 2); str_(b, "ab"); str_(b, "");
    str_(b, "v.arr_empty"); u32_(b, LB_GGUF_ARRAY); u32_(b, LB_GGUF_F32); u64_(b, 0);
    str_(b, "v.arr_bool"); u32_(b, LB_GGUF_ARRAY); u32_(b, LB_GGUF_BOOL); u64_(b, 2); u8_(b, 0); u8_(b, 1);
    tinfo(b, "a", 2, (uint64_t[]){4, 2}, LB_TYPE_F32, 0);
    tinfo(b, "b", 1, (uint64_t[]){32}, LB_TYPE_Q8_0, 32);
    pad(b, 32);
    data(b, 32 + 34);
}

static void test_valid_and_prefixes(void)
{
    rb b;
    build_valid(&b);
    lb_gguf *g = NULL;
    lb_err err = {0};
    CHECKF(lb_gguf_open_memory(b.d, b.n, &g, &err) == LB_OK, "%s", err.msg);
    if (!g)
        return;
    int64_t v;
    CHECK(lb_gguf_get_int(g, "v.u8", &v, &err) == LB_OK && v == 200);
    CHECK(lb_gguf_get_int(g, "v.i8", &v, &err) == LB_OK && v == -128);
    CHECK(lb_gguf_get_int(g, "v.u16", &v, &err) == LB_OK && v == 65535);
    CHECK(lb_gguf_get_int(g, "v.i16", &v, &err) == LB_OK && v == -32768);
    CHECK(lb_gguf_get_int(g, "v.i32", &v, &err) == LB_OK && v == -5);
    CHECK(lb_gguf_get_int(g, "v.u64", &v, &err) == LB_OK && v == (1ll << 40));
    CHECK(lb_gguf_get_int(g, "v.i64", &v, &err) == LB_OK && v == -3);
    CHECK(lb_gguf_get_int(g, "v.bool", &v, &err) == LB_OK && v == 1);
    float f;
    CHECK(lb_gguf_get_f32(g, "v.f32", &f, &err) == LB_OK && f == 1.0f);
    CHECK(lb_gguf_get_f32(g, "v.f64", &f, &err) == LB_OK && f == 2.0f);
    CHECK(lb_gguf_n_tensors(g) == 2 && lb_gguf_find_tensor(g, "b")->nbytes == 34);

    /* A getter asked for the wrong type names the key and both types. */
    lb_gguf_str s;
    bool bo;
    lb_gguf_vtype et;
    uint64_t n;
    CHECK(lb_gguf_get_int(g, "general.architecture", &v, &err) == LB_ERR_TYPE);
    CHECKF(strstr(err.msg, "'general.architecture'") && strstr(err.msg, "string") && strstr(err.msg, "integer"),
           "%s", err.msg);
    CHECK(lb_gguf_get_int(g, "v.f32", &v, &err) == LB_ERR_TYPE && strstr(err.msg, "v.f32"));
    CHECK(lb_gguf_get_int(g, "v.arr_u32", &v, &err) == LB_ERR_TYPE && strstr(err.msg, "array of u32"));
    CHECK(lb_gguf_get_str(g, "v.u8", &s, &err) == LB_ERR_TYPE && strstr(err.msg, "v.u8"));
    CHECK(lb_gguf_get_bool(g, "v.u8", &bo, &err) == LB_ERR_TYPE && strstr(err.msg, "v.u8"));
    CHECK(lb_gguf_get_f32(g, "v.i32", &f, &err) == LB_ERR_TYPE && strstr(err.msg, "v.i32"));
    CHECK(lb_gguf_get_arr(g, "v.u64", &et, &n, &err) == LB_ERR_TYPE && strstr(err.msg, "v.u64"));
    CHECK(lb_gguf_get_str(g, "nope", &s, &err) == LB_ERR_NOT_FOUND && strstr(err.msg, "nope"));
    lb_gguf_free(g);

    /* Every proper prefix fails cleanly (and LeakSanitizer checks nothing leaks). */
    int bad = 0;
    for (size_t k = 0; k < b.n; k++) {
        uint8_t *copy = malloc(k ? k : 1);   /* exact-size copy so ASan sees any over-read */
        memcpy(copy, b.d, k);
        g = NULL;
        lb_status st = lb_gguf_open_memory(copy, k, &g, &err);
        if (st != LB_ERR_FORMAT || g != NULL || err.msg[0] == '\0') {
            bad++;
            fprintf(stderr, "prefix %zu: %s %s\n", k, lb_status_str(st), err.msg);
        }
        lb_gguf_free(st ? NULL : g);
        free(copy);
    }
    CHECKF(bad == 0, "%d of %zu prefixes did not fail with a format error", bad, b.n);
}

static void test_header(void)
{
    rb b;
    build_valid(&b);
    b.d[3] = 'E';
    EXPECT(&b, LB_ERR_FORMAT, "magic", NULL);
    uint32_t versions[] = {0, 4, 0xffffffffu};
    for (int i = 0; i < 3; i++) {
        build_valid(&b);
        memcpy(b.d + 4, &versions[i], 4);
        EXPECT(&b, LB_ERR_FORMAT, "version", NULL);
    }
    build_valid(&b);
    b.d[4] = 1;
    EXPECT(&b, LB_ERR_UNSUPPORTED, "version 1", NULL);
    build_valid(&b);
    b.d[4] = 0, b.d[7] = 3;
    EXPECT(&b, LB_ERR_UNSUPPORTED, "big-endian", NULL);

    /* Counts far beyond what the bytes could hold fail before any allocation. */
    header(&b, 3, 0, 1ull << 60);
    EXPECT(&b, LB_ERR_FORMAT, "n_kv", NULL);
    header(&b, 3, 0, UINT64_MAX);
    EXPECT(&b, LB_ERR_FORMAT, "n_kv", NULL);
    header(&b, 3, 1ull << 60, 0);
    EXPECT(&b, LB_ERR_FORMAT, "n_tensors", NULL);
    header(&b, 3, UINT64_MAX, UINT64_MAX);
    EXPECT(&b, LB_ERR_FORMAT, "n_kv", NULL);
    header(&b, 2, UINT64_MAX / 2, 1);
    kv_u32(&b, "k", 1);
    EXPECT(&b, LB_ERR_FORMAT, "n_tensors", NULL);
    /* Plausible counts that the file does not honour. */
    header(&b, 3, 0, 3);
    kv_u32(&b, "k.one", 1);
    kv_u32(&b, "k.two", 2);
    data(&b, 30);
    EXPECT(&b, LB_ERR_FORMAT, "key #2", NULL);
    header(&b, 3, 2, 0);
    tinfo(&b, "a", 1, (uint64_t[]){8}, LB_TYPE_F32, 0);
    data(&b, 40);
    EXPECT(&b, LB_ERR_FORMAT, "tensor #1", NULL);
}

static void test_strings(void)
{
    rb b;
    header(&b, 3, 0, 1);
    u64_(&b, 1000);
    raw(&b, "k", 1);
    u32_(&b, 0);
    EXPECT(&b, LB_ERR_FORMAT, "key #0", "1000 bytes");
    header(&b, 3, 0, 1);
    u64_(&b, UINT64_MAX);
    data(&b, 16);
    EXPECT(&b, LB_ERR_FORMAT, "key #0", "string");
    header(&b, 3, 0, 1);
    str_(&b, "name");
    u32_(&b, LB_GGUF_STRING);
    u64_(&b, 1ull << 62);
    data(&b, 4);
    EXPECT(&b, LB_ERR_FORMAT, "'name'", "string");
    header(&b, 3, 0, 1);
    str_(&b, "");
    u32_(&b, LB_GGUF_U32);
    u32_(&b, 1);
    EXPECT(&b, LB_ERR_FORMAT, "key #0", "empty");
    header(&b, 3, 0, 1);
    u64_(&b, 3);
    raw(&b, "a\0b", 3);
    u32_(&b, LB_GGUF_U32);
    u32_(&b, 1);
    EXPECT(&b, LB_ERR_FORMAT, "NUL", NULL);
    /* Tensor name past the end. */
    header(&b, 3, 1, 0);
    u64_(&b, 500);
    data(&b, 40);
    EXPECT(&b, LB_ERR_FORMAT, "tensor #0", "500 bytes");
}

static void test_values(void)
{
    rb b;
    header(&b, 3, 0, 1);
    str_(&b, "t.bad");
    u32_(&b, 13);
    u32_(&b, 0);
    EXPECT(&b, LB_ERR_FORMAT, "'t.bad'", "unknown value type 13");
    header(&b, 3, 0, 1);
    str_(&b, "t.bad");
    u32_(&b, 0x80000000u);
    u32_(&b, 0);
    EXPECT(&b, LB_ERR_FORMAT, "'t.bad'", "unknown value type");
    header(&b, 3, 0, 1);
    str_(&b, "t.bool");
    u32_(&b, LB_GGUF_BOOL);
    u8_(&b, 2);
    EXPECT(&b, LB_ERR_FORMAT, "'t.bool'", "bool");
    header(&b, 3, 0, 1);
    str_(&b, "t.u64");
    u32_(&b, LB_GGUF_U64);
    u32_(&b, 7);   /* 4 of 8 bytes */
    EXPECT(&b, LB_ERR_FORMAT, "'t.u64'", "past the end");

    /* Arrays: huge counts, bad element types, nesting. */
    uint64_t counts[] = {1ull << 62, UINT64_MAX, 5};
    for (int i = 0; i < 3; i++) {
        header(&b, 3, 0, 1);
        str_(&b, "t.arr");
        u32_(&b, LB_GGUF_ARRAY);
        u32_(&b, LB_GGUF_U32);
        u64_(&b, counts[i]);
        u32_(&b, 1);
        u32_(&b, 2);
        EXPECT(&b, LB_ERR_FORMAT, "'t.arr'", "array");
        header(&b, 3, 0, 1);
        str_(&b, "t.sarr");
        u32_(&b, LB_GGUF_ARRAY);
        u32_(&b, LB_GGUF_STRING);
        u64_(&b, counts[i]);
        str_(&b, "x");
        str_(&b, "y");
        EXPECT(&b, LB_ERR_FORMAT, "'t.sarr'", NULL);
    }
    header(&b, 3, 0, 1);
    str_(&b, "t.sarr");
    u32_(&b, LB_GGUF_ARRAY);
    u32_(&b, LB_GGUF_STRING);
    u64_(&b, 2);
    str_(&b, "x");
    u64_(&b, 99);
    raw(&b, "yy", 2);
    EXPECT(&b, LB_ERR_FORMAT, "'t.sarr'", "element 1");
    header(&b, 3, 0, 1);
    str_(&b, "t.arr");
    u32_(&b, LB_GGUF_ARRAY);
    u32_(&b, 13);
    u64_(&b, 1);
    u32_(&b, 0);
    EXPECT(&b, LB_ERR_FORMAT, "'t.arr'", "element type 13");
    header(&b, 3, 0, 1);
    str_(&b, "t.nest");
    u32_(&b, LB_GGUF_ARRAY);
    u32_(&b, LB_GGUF_ARRAY);
    u64_(&b, 1);
    u32_(&b, LB_GGUF_U8);
    u64_(&b, 1);
    u8_(&b, 0);
    EXPECT(&b, LB_ERR_UNSUPPORTED, "'t.nest'", "arrays of arrays");
    header(&b, 3, 0, 1);
    str_(&b, "t.barr");
    u32_(&b, LB_GGUF_ARRAY);
    u32_(&b, LB_GGUF_BOOL);
    u64_(&b, 2);
    u8_(&b, 1);
    u8_(&b, 7);
    EXPECT(&b, LB_ERR_FORMAT, "'t.barr'", "element 1");

    /* Duplicate key, with both positions. */
    header(&b, 3, 0, 3);
    kv_u32(&b, "dup.key", 1);
    kv_u32(&b, "other", 1);
    kv_str(&b, "dup.key", "x");
    EXPECT(&b, LB_ERR_FORMAT, "duplicate key 'dup.key'", "first at byte 24");
}

static void test_alignment(void)
{
    rb b;
    uint32_t bad[] = {0, 3, 48, 0xffffffffu};
    for (int i = 0; i < 4; i++) {
        header(&b, 3, 0, 1);
        kv_u32(&b, "general.alignment", bad[i]);
        EXPECT(&b, LB_ERR_FORMAT, "'general.alignment'", "power of two");
    }
    header(&b, 3, 0, 1);
    kv_str(&b, "general.alignment", "32");
    EXPECT(&b, LB_ERR_FORMAT, "'general.alignment' at byte 24", "expected u32, found string");
    header(&b, 3, 0, 1);
    str_(&b, "general.alignment");
    u32_(&b, LB_GGUF_U64);
    u64_(&b, 32);
    EXPECT(&b, LB_ERR_FORMAT, "'general.alignment'", "found u64");
    /* A valid non-default alignment is honoured: offset 64 is fine at 64, 32 is not. */
    header(&b, 3, 1, 1);
    kv_u32(&b, "general.alignment", 64);
    tinfo(&b, "w", 1, (uint64_t[]){4}, LB_TYPE_F32, 64);
    pad(&b, 64);
    data(&b, 80);
    EXPECT(&b, LB_OK, NULL, NULL);
    header(&b, 3, 1, 1);
    kv_u32(&b, "general.alignment", 64);
    tinfo(&b, "w", 1, (uint64_t[]){4}, LB_TYPE_F32, 32);
    pad(&b, 64);
    data(&b, 80);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "offset 32");
}

/* One tensor "w" of the given shape/type/offset followed by enough data for small cases. */
static void one_tensor(rb *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off, size_t n_data)
{
    header(b, 3, 1, 0);
    tinfo(b, "w", n_dims, ne, type, off);
    pad(b, 32);
    data(b, n_data);
}

static void test_tensors(void)
{
    rb b;
    one_tensor(&b, 1, (uint64_t[]){4}, LB_TYPE_F32, 0, 16);
    EXPECT(&b, LB_OK, NULL, NULL);
    one_tensor(&b, 1, (uint64_t[]){4}, 4, 0, 16);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "unknown tensor type 4");
    one_tensor(&b, 1, (uint64_t[]){4}, 1000, 0, 16);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "unknown tensor type 1000");
    one_tensor(&b, 1, (uint64_t[]){32}, LB_TYPE_A8_32, 0, 64);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "unknown tensor type");
    one_tensor(&b, 0, NULL, LB_TYPE_F32, 0, 16);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "n_dims is 0");
    one_tensor(&b, 5, (uint64_t[]){1, 1, 1, 1, 1}, LB_TYPE_F32, 0, 16);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "n_dims is 5");
    one_tensor(&b, 2, (uint64_t[]){4, (uint64_t)-1}, LB_TYPE_F32, 0, 16);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "ne[1] = -1 is negative");
    one_tensor(&b, 1, (uint64_t[]){1ull << 63}, LB_TYPE_F32, 0, 16);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "negative");
    one_tensor(&b, 3, (uint64_t[]){1ull << 31, 1ull << 31, 1ull << 31}, LB_TYPE_F32, 0, 16);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "element count overflows");
    one_tensor(&b, 1, (uint64_t[]){1ull << 62}, LB_TYPE_F32, 0, 16);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "byte size overflows");
    one_tensor(&b, 2, (uint64_t[]){1ull << 31, 1ull << 31}, LB_TYPE_F64, 0, 16);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "byte size overflows");
    one_tensor(&b, 1, (uint64_t[]){33}, LB_TYPE_Q8_0, 0, 64);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "block size 32");
    one_tensor(&b, 1, (uint64_t[]){4}, LB_TYPE_F32, 16, 48);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "offset 16");
    /* Data past the end: by one byte, by a huge offset, by a huge size. */
    one_tensor(&b, 1, (uint64_t[]){4}, LB_TYPE_F32, 0, 15);
    EXPECT(&b, LB_ERR_FORMAT, "tensor 'w': data at offset 64 + 16 bytes", "past the end of the file (79 bytes)");
    one_tensor(&b, 1, (uint64_t[]){4}, LB_TYPE_F32, (uint64_t)-32, 16);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "past the end");
    one_tensor(&b, 2, (uint64_t[]){1ull << 30, 1ull << 30}, LB_TYPE_F32, 0, 16);
    EXPECT(&b, LB_ERR_FORMAT, "'w'", "past the end");
    /* Tensors but no data section at all. */
    header(&b, 3, 1, 0);
    tinfo(&b, "w", 1, (uint64_t[]){0}, LB_TYPE_F32, 0);
    EXPECT(&b, LB_ERR_FORMAT, "data section", NULL);

    /* Overlaps, including one hidden behind a shorter neighbour. */
    header(&b, 3, 2, 0);
    tinfo(&b, "first", 1, (uint64_t[]){16}, LB_TYPE_F32, 0);
    tinfo(&b, "second", 1, (uint64_t[]){16}, LB_TYPE_F32, 32);
    pad(&b, 32);
    data(&b, 96);
    EXPECT(&b, LB_ERR_FORMAT, "overlaps", "'first'");
    header(&b, 3, 3, 0);
    tinfo(&b, "long", 1, (uint64_t[]){64}, LB_TYPE_F32, 0);
    tinfo(&b, "short", 1, (uint64_t[]){1}, LB_TYPE_F32, 0);
    tinfo(&b, "late", 1, (uint64_t[]){8}, LB_TYPE_F32, 128);
    pad(&b, 32);
    data(&b, 256);
    EXPECT(&b, LB_ERR_FORMAT, "overlaps", "'long'");
    header(&b, 3, 3, 0);
    tinfo(&b, "long", 1, (uint64_t[]){64}, LB_TYPE_F32, 0);
    tinfo(&b, "mid", 1, (uint64_t[]){8}, LB_TYPE_F32, 32);
    tinfo(&b, "late", 1, (uint64_t[]){8}, LB_TYPE_F32, 128);
    pad(&b, 32);
    data(&b, 256);
    EXPECT(&b, LB_ERR_FORMAT, "overlaps", "'long'");
    /* Adjacent tensors and an empty tensor inside another are fine. */
    header(&b, 3, 3, 0);
    tinfo(&b, "x", 1, (uint64_t[]){8}, LB_TYPE_F32, 0);
    tinfo(&b, "y", 1, (uint64_t[]){8}, LB_TYPE_F32, 32);
    tinfo(&b, "z", 2, (uint64_t[]){0, 8}, LB_TYPE_F32, 32);
    pad(&b, 32);
    data(&b, 64);
    EXPECT(&b, LB_OK, NULL, NULL);

    header(&b, 3, 3, 0);
    tinfo(&b, "blk.0.w", 1, (uint64_t[]){8}, LB_TYPE_F32, 0);
    tinfo(&b, "blk.1.w", 1, (uint64_t[]){8}, LB_TYPE_F32, 32);
    tinfo(&b, "blk.0.w", 1, (uint64_t[]){8}, LB_TYPE_F32, 64);
    pad(&b, 32);
    data(&b, 96);
    EXPECT(&b, LB_ERR_FORMAT, "duplicate tensor name 'blk.0.w'", "#0 and #2");
    header(&b, 3, 1, 0);
    tinfo(&b, "", 1, (uint64_t[]){8}, LB_TYPE_F32, 0);
    pad(&b, 32);
    data(&b, 32);
    EXPECT(&b, LB_ERR_FORMAT, "tensor #0", "empty name");
}

/* Many tensors and keys go through the hash sets, not a quadratic scan; and
 * names that differ only late are still told apart. */
static void test_many(void)
{
    lb_gguf_writer *w = lb_gguf_writer_new();
    static float zero[4];
    char name[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", i);
        CHECK(lb_gguf_writer_add_tensor(w, name, LB_TYPE_F32, 1, (int64_t[]){4}, zero) == LB_OK);
        snprintf(name, sizeof name, "meta.%d", i);
        CHECK(lb_gguf_writer_set_u32(w, name, (uint32_t)i) == LB_OK);
    }
    FILE *f = tmpfile();
    lb_err err = {0};
    CHECK(lb_gguf_writer_write_fp(w, f, &err) == LB_OK);
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    rewind(f);
    uint8_t *img = malloc(n);
    CHECK(fread(img, 1, n, f) == n);
    fclose(f);
    lb_gguf *g = NULL;
    CHECKF(lb_gguf_open_memory(img, n, &g, &err) == LB_OK, "%s", err.msg);
    if (g) {
        CHECK(lb_gguf_n_tensors(g) == 3000 && lb_gguf_n_kv(g) == 3000);
        const lb_gguf_tensor *t = lb_gguf_find_tensor(g, "blk.2999.attn_q.weight");
        CHECK(t && t->offset == 2999 * 32);
        int64_t v;
        CHECK(lb_gguf_get_int(g, "meta.1234", &v, &err) == LB_OK && v == 1234);
        lb_gguf_free(g);
    }
    free(img);
    lb_gguf_writer_free(w);
}

int main(void)
{
    RUN(test_valid_and_prefixes);
    RUN(test_header);
    RUN(test_strings);
    RUN(test_values);
    RUN(test_alignment);
    RUN(test_tensors);
    RUN(test_many);
    return check_done();
}
