/* Human-readable names and values of GGUF metadata, for `lowbit info` and messages. */
#include "format/gguf.h"

#include <inttypes.h>
#include <string.h>

const char *lb_gguf_vtype_name(lb_gguf_vtype t)
{
    static const char *const names[LB_GGUF_VTYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
    };
    return (unsigned)t < LB_GGUF_VTYPE_COUNT ? names[t] : "unknown";
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Appends a string value, escaping bytes a terminal should not interpret;
 * truncation is marked with "..." so a long chat template stays one line. */
static void put_str(char *buf, size_t cap, lb_gguf_str s)
{
    size_t n = 0;
    for (uint64_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        char tmp[5];
        size_t k;
        if (ch == '\n') { memcpy(tmp, "\\n", 2); k = 2; }
        else if (ch == '\t') { memcpy(tmp, "\\t", 2); k = 2; }
        else if (ch == '\r') { memcpy(tmp, "\\r", 2); k = 2; }
        else if (ch == '\\') { memcpy(tmp, "\\\\", 2); k = 2; }
        else if (ch < 0x20 || ch == 0x7f) { snprintf(tmp, sizeof tmp, "\\x%02x", ch); k = 4; }
        else { tmp[0] = (char)ch; k = 1; }
        if (n + k + 4 > cap) {
            if (n + 4 <= cap) {
                memcpy(buf + n, "...", 3);
                n += 3;
            }
            break;
        }
        memcpy(buf + n, tmp, k);
        n += k;
    }
    buf[n] = '\0';
}

void lb_gguf_kv_format(const lb_gguf *g, int64_t i, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return;
    buf[0] = '\0';
    uint64_t len;
    const uint8_t *p = lb_gguf_kv_raw(g, i, &len);
    if (!p)
        return;
    lb_gguf_vtype t = lb_gguf_kv_type(g, i);
    switch (t) {
    case LB_GGUF_U8: snprintf(buf, cap, "%u", (unsigned)p[0]); break;
    case LB_GGUF_I8: snprintf(buf, cap, "%d", (int)(int8_t)p[0]); break;
    case LB_GGUF_U16: snprintf(buf, cap, "%u", (unsigned)le(p, 2)); break;
    case LB_GGUF_I16: snprintf(buf, cap, "%d", (int)(int16_t)(uint16_t)le(p, 2)); break;
    case LB_GGUF_U32: snprintf(buf, cap, "%" PRIu32, (uint32_t)le(p, 4)); break;
    case LB_GGUF_I32: snprintf(buf, cap, "%" PRId32, (int32_t)(uint32_t)le(p, 4)); break;
    case LB_GGUF_U64: snprintf(buf, cap, "%" PRIu64, le(p, 8)); break;
    case LB_GGUF_I64: snprintf(buf, cap, "%" PRId64, (int64_t)le(p, 8)); break;
    case LB_GGUF_BOOL: snprintf(buf, cap, "%s", p[0] ? "true" : "false"); break;
    case LB_GGUF_F32: {
        uint32_t u = (uint32_t)le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        snprintf(buf, cap, "%.9g", (double)f);
        break;
    }
    case LB_GGUF_F64: {
        uint64_t u = le(p, 8);
        double d;
        memcpy(&d, &u, 8);
        snprintf(buf, cap, "%.17g", d);
        break;
    }
    case LB_GGUF_STRING:
        put_str(buf, cap, (lb_gguf_str){(const char *)p + 8, le(p, 8)});
        break;
    case LB_GGUF_ARRAY:
        snprintf(buf, cap, "[array of %" PRIu64 " %s]", lb_gguf_kv_arr_n(g, i),
                 lb_gguf_vtype_name(lb_gguf_kv_arr_type(g, i)));
        break;
    default:
        break;
    }
}
