/* UTF-8-safe release of generated text with stop strings (see utf8_stream.h). */
#include "utf8_stream.h"

#include <stdlib.h>
#include <string.h>

static const char replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD};   /* U+FFFD */

void lb__text_stream_init(lb__text_stream *ts, const char *const *stop, int n_stop)
{
    memset(ts, 0, sizeof *ts);
    ts->stop = stop;
    ts->n_stop = stop ? n_stop : 0;
}

void lb__text_stream_free(lb__text_stream *ts)
{
    free(ts->hold);
    free(ts->out);
    memset(ts, 0, sizeof *ts);
}

static bool reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    char *nb = realloc(*buf, c);
    if (!nb)
        return false;
    *buf = nb;
    *cap = c;
    return true;
}

static bool hold_append(lb__text_stream *ts, const void *p, size_t n)
{
    if (!reserve(&ts->hold, &ts->cap_hold, ts->n_hold + n))
        return false;
    memcpy(ts->hold + ts->n_hold, p, n);
    ts->n_hold += n;
    return true;
}

/* Length of a character starting with lead byte c, and the allowed range of
 * its second byte (which rules out overlongs, surrogates and > U+10FFFF);
 * 0 for a byte that can never start a character. */
static int char_len(unsigned char c, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* Moves whole characters from partial+bytes into hold.  An unfinished
 * character at the end stays in partial unless at_end. */
static bool decode(lb__text_stream *ts, const char *bytes, size_t len, bool at_end)
{
    /* in: [n] the previous partial bytes followed by the new ones */
    size_t n = (size_t)ts->n_partial + len;
    unsigned char small[64];
    unsigned char *in = n <= sizeof small ? small : malloc(n);
    if (!in)
        return false;
    memcpy(in, ts->partial, (size_t)ts->n_partial);
    if (len)
        memcpy(in + ts->n_partial, bytes, len);
    ts->n_partial = 0;
    bool ok = true;
    size_t i = 0;
    while (ok && i < n) {
        unsigned char lo, hi;
        int need = char_len(in[i], &lo, &hi);
        if (need == 0) {
            ok = hold_append(ts, replacement, 3);
            i++;
            continue;
        }
        int got = 1;   /* bytes of this character that are valid so far */
        while (got < need && i + (size_t)got < n) {
            unsigned char b = in[i + (size_t)got];
            unsigned char l = got == 1 ? lo : 0x80, h = got == 1 ? hi : 0xBF;
            if (b < l || b > h)
                break;
            got++;
        }
        if (got == need) {
            ok = hold_append(ts, in + i, (size_t)need);
            i += (size_t)need;
        } else if (i + (size_t)got == n && !at_end) {
            memcpy(ts->partial, in + i, (size_t)got);   /* may still be completed by the next token */
            ts->n_partial = got;
            i = n;
        } else {
            ok = hold_append(ts, replacement, 3);   /* the maximal valid prefix counts as one error */
            i += (size_t)got;
        }
    }
    if (in != small)
        free(in);
    return ok;
}

static bool release(lb__text_stream *ts, size_t n)
{
    if (!reserve(&ts->out, &ts->cap_out, ts->n_out + n + 1))
        return false;
    if (!n)
        return true;   /* hold may still be NULL, and memcpy from NULL is undefined even for 0 bytes */
    memcpy(ts->out + ts->n_out, ts->hold, n);
    ts->n_out += n;
    memmove(ts->hold, ts->hold + n, ts->n_hold - n);
    ts->n_hold -= n;
    return true;
}

/* Releases what can no longer be part of a stop string; on a complete stop
 * string, releases the text before it and drops the rest. */
static bool settle(lb__text_stream *ts, bool at_end)
{
    size_t first = ts->n_hold;   /* earliest start of a complete stop string */
    for (int k = 0; k < ts->n_stop; k++) {
        const char *s = ts->stop[k];
        size_t sl = s ? strlen(s) : 0;
        if (!sl || sl > ts->n_hold)
            continue;
        const char *hit = memmem(ts->hold, ts->n_hold, s, sl);
        if (hit && (size_t)(hit - ts->hold) < first)
            first = (size_t)(hit - ts->hold);
    }
    if (first < ts->n_hold) {
        ts->n_hold = first;
        ts->stopped = true;
        return release(ts, first);
    }
    size_t keep = 0;   /* the longest suffix that is a proper prefix of some stop string */
    for (int k = 0; !at_end && k < ts->n_stop; k++) {
        const char *s = ts->stop[k];
        size_t sl = s ? strlen(s) : 0;
        size_t max = sl ? sl - 1 : 0;
        if (max > ts->n_hold)
            max = ts->n_hold;
        for (size_t l = max; l > keep; l--) {
            if (!memcmp(ts->hold + ts->n_hold - l, s, l)) {
                keep = l;
                break;
            }
        }
    }
    size_t n = ts->n_hold - keep;
    /* A stop string that starts inside a character must not split it. */
    while (n > 0 && n < ts->n_hold && ((unsigned char)ts->hold[n] & 0xC0) == 0x80)
        n--;
    return release(ts, n);
}

lb_status lb__text_stream_push(lb__text_stream *ts, const char *bytes, size_t len)
{
    ts->n_out = 0;
    if (ts->stopped)
        return LB_OK;
    if (!decode(ts, bytes, len, false) || !settle(ts, false))
        return LB_ERR_NOMEM;
    return LB_OK;
}

lb_status lb__text_stream_finish(lb__text_stream *ts)
{
    ts->n_out = 0;
    if (ts->stopped)
        return LB_OK;
    if (!decode(ts, NULL, 0, true) || !settle(ts, true))
        return LB_ERR_NOMEM;
    return LB_OK;
}
