/* UTF-8 helpers and GPT-2's reversible byte <-> printable-character table. */
#include <string.h>

#include "base/once.h"
#include "tokenizer/tok_internal.h"

size_t lb__utf8_len(unsigned char lead)
{
    /* Indexed by the high nibble; stray continuation bytes count as one. */
    static const unsigned char len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[lead >> 4];
}

/* GPT-2 keeps printable Latin-1 bytes as themselves and moves the rest
 * (controls, space, 0x7F-0xA0, 0xAD) to U+0100 onwards, in byte order, so
 * that every byte has a visible character. */
static int byte_is_kept(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

static unsigned byte_to_cp(unsigned b)
{
    if (byte_is_kept(b))
        return b;
    unsigned n = 0;  /* rank of b among the moved bytes */
    for (unsigned c = 0; c < b; c++)
        n += !byte_is_kept(c);
    return 256 + n;
}

typedef struct { char s[3]; unsigned char n; } lb__bchar;
static lb__bchar g_bchar[256];
static int g_cp_byte[324];  /* code point (< 0x144) -> byte, or -1 */
static lb_once g_tables_once = LB_ONCE_INIT;

static void build_tables(void)
{
    for (int i = 0; i < 324; i++)
        g_cp_byte[i] = -1;
    for (unsigned b = 0; b < 256; b++) {
        unsigned cp = byte_to_cp(b);
        if (cp < 0x80) {
            g_bchar[b].s[0] = (char)cp;
            g_bchar[b].n = 1;
        } else {
            g_bchar[b].s[0] = (char)(0xC0 | (cp >> 6));
            g_bchar[b].s[1] = (char)(0x80 | (cp & 0x3F));
            g_bchar[b].n = 2;
        }
        g_cp_byte[cp] = (int)b;
    }
}

static void ensure_tables(void)
{
    lb_once_run(&g_tables_once, build_tables);
}

const char *lb__byte_char(unsigned char b, size_t *len)
{
    ensure_tables();
    *len = g_bchar[b].n;
    return g_bchar[b].s;
}

int lb__char_byte(const char *s, size_t len, size_t *used)
{
    ensure_tables();
    const unsigned char *u = (const unsigned char *)s;
    if (len == 0) {
        *used = 0;
        return -1;
    }
    unsigned cp;
    if (u[0] < 0x80) {
        cp = u[0];
        *used = 1;
    } else if ((u[0] & 0xE0) == 0xC0 && len >= 2 && (u[1] & 0xC0) == 0x80) {
        cp = ((unsigned)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
        *used = 2;
    } else {
        size_t n = lb__utf8_len(u[0]);
        *used = n <= len ? n : len;
        return -1;
    }
    return cp < 324 ? g_cp_byte[cp] : -1;
}
