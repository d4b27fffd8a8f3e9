/* Encoding and decoding: special tokens are cut out of the text first, then
 * each remaining fragment goes through SentencePiece merges or the
 * pre-tokenizer + byte-level BPE. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* Longest input accepted: keeps every offset (and SentencePiece's 3-byte
 * space escape of it) inside 32 bits. */
#define LB_TOK_MAX_INPUT ((size_t)1 << 30)

typedef struct { int32_t id; size_t off, len; } frag;  /* id >= 0: a special token; else raw text */
typedef struct { frag *v; size_t n, cap; bool oom; } frag_list;

static void push_frag(frag_list *l, int32_t id, size_t off, size_t len)
{
    if (l->oom)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        frag *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (frag){id, off, len};
}

/* Splits raw fragments around every occurrence of each special token, longest
 * tokens first.  Without parse_special only user-defined tokens are cut out
 * (they are part of the vocabulary's normal text handling, as in HF tokenizers). */
static bool partition(const lb_tokenizer *t, const char *text, size_t len, bool parse_special, frag_list *out)
{
    frag_list cur = {0}, next = {0};
    if (len)
        push_frag(&cur, -1, 0, len);
    for (int32_t k = 0; k < t->n_special && !cur.oom; k++) {
        int32_t id = t->special[k];
        uint16_t a = t->attr[id];
        if (!parse_special && (a & (LB_TA_CONTROL | LB_TA_UNKNOWN)))
            continue;
        const char *tt = t->arena + t->text_off[id];
        size_t tl = t->text_len[id];
        next.n = 0;
        bool changed = false;
        for (size_t i = 0; i < cur.n; i++) {
            frag f = cur.v[i];
            if (f.id >= 0) {
                push_frag(&next, f.id, f.off, f.len);
                continue;
            }
            size_t off = f.off, end = f.off + f.len;
            while (off < end) {
                const char *m = memmem(text + off, end - off, tt, tl);
                if (!m)
                    break;
                changed = true;
                size_t mpos = (size_t)(m - text), lend = mpos;
                if (a & LB_TA_LSTRIP)
                    while (lend > off && isspace((unsigned char)text[lend - 1]))
                        lend--;
                if (lend > off)
                    push_frag(&next, -1, off, lend - off);
                push_frag(&next, id, mpos, tl);
                off = mpos + tl;
                if (a & LB_TA_RSTRIP)
                    while (off < end && isspace((unsigned char)text[off]))
                        off++;
            }
            if (off < end)
                push_frag(&next, -1, off, end - off);
        }
        if (changed || next.oom) {
            frag_list tmp = cur;
            cur = next;
            next = tmp;
            cur.oom |= next.oom;
        }
    }
    free(next.v);
    *out = cur;
    return !cur.oom;
}

typedef struct {
    const lb_tokenizer *t;
    lb__bpe_scratch scratch;
    lb__ids *ids;
} bpe_ctx;

static void on_word(const char *word, size_t len, void *user)
{
    bpe_ctx *c = user;
    lb__bpe_encode_word(c->t, word, len, &c->scratch, c->ids);
}

static lb_status encode_fragments(const lb_tokenizer *t, const char *text, const frag_list *fr, lb__ids *ids,
                                  lb_err *err)
{
    if (t->kind == LB_TOK_SPM) {
        char *buf = NULL;  /* [3 * (len + 1)] the fragment with spaces escaped as U+2581 */
        size_t cap = 0;
        bool prev_special = true;  /* the text's start counts as following a special token */
        for (size_t i = 0; i < fr->n && !ids->oom; i++) {
            const frag *f = &fr->v[i];
            if (f->id >= 0) {
                lb__ids_push(ids, f->id);
                prev_special = true;
                continue;
            }
            if (3 * (f->len + 1) > cap) {
                cap = 3 * (f->len + 1);
                char *nb = realloc(buf, cap);
                if (!nb) {
                    free(buf);
                    return lb__errf(err, LB_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", f->len);
                }
                buf = nb;
            }
            size_t n = 0;
            if (t->add_space_prefix && prev_special) {
                memcpy(buf, "\xE2\x96\x81", 3);
                n = 3;
            }
            for (size_t k = 0; k < f->len; k++) {
                char c = text[f->off + k];
                if (c == ' ') {
                    memcpy(buf + n, "\xE2\x96\x81", 3);
                    n += 3;
                } else {
                    buf[n++] = c;
                }
            }
            lb__spm_encode(t, buf, n, ids);
            prev_special = false;
        }
        free(buf);
        return LB_OK;
    }

    bpe_ctx c = {t, {0}, ids};
    lb_status st = LB_OK;
    for (size_t i = 0; i < fr->n && !ids->oom && !st; i++) {
        const frag *f = &fr->v[i];
        if (f->id >= 0)
            lb__ids_push(ids, f->id);
        else
            st = lb__pretok_split(t->pretok, text + f->off, f->len, on_word, &c, err);
    }
    lb__bpe_scratch_free(&c.scratch);
    return st;
}

lb_status lb_tokenizer_encode(const lb_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                              int32_t *out, size_t cap, size_t *n_out, lb_err *err)
{
    if (!t || (!text && len) || !n_out || (!out && cap))
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_tokenizer_encode: NULL argument");
    if (len > LB_TOK_MAX_INPUT)
        return lb__errf(err, LB_ERR_RANGE, "lb_tokenizer_encode: %zu bytes of text is more than the %zu accepted", len,
                        LB_TOK_MAX_INPUT);
    lb__ids ids = {0};
    frag_list fr;
    if (!partition(t, text, len, parse_special, &fr)) {
        free(fr.v);
        return lb__errf(err, LB_ERR_NOMEM, "tokenizer: out of memory");
    }
    if (add_special && t->add_bos)
        lb__ids_push(&ids, t->bos);
    lb_status st = encode_fragments(t, text, &fr, &ids, err);
    free(fr.v);
    if (!st && add_special && t->add_eos)
        lb__ids_push(&ids, t->eos);
    if (!st && ids.oom)
        st = lb__errf(err, LB_ERR_NOMEM, "tokenizer: out of memory for the token ids of %zu bytes", len);
    if (!st) {
        size_t k = ids.n < cap ? ids.n : cap;
        if (k)
            memcpy(out, ids.v, k * sizeof *out);
        *n_out = ids.n;
    }
    free(ids.v);
    return st;
}

lb_status lb_tokenizer_decode(const lb_tokenizer *t, const int32_t *ids, size_t n, char *out, size_t cap,
                              size_t *n_out, lb_err *err)
{
    if (!t || (!ids && n) || !n_out || (!out && cap))
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_tokenizer_decode: NULL argument");
    size_t total = 0;
    bool strip = t->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return lb__errf(err, LB_ERR_RANGE, "lb_tokenizer_decode: token %zu = %d is outside the vocabulary (%d)", i,
                            (int)ids[i], (int)t->n_vocab);
        size_t pl;
        const char *p = lb_tokenizer_piece(t, ids[i], &pl);
        if (t->attr[ids[i]] & (LB_TA_CONTROL | LB_TA_USER_DEFINED | LB_TA_UNKNOWN)) {
            strip = t->add_space_prefix;  /* encode put a space prefix after each special token */
        } else {
            if (strip && pl && p[0] == ' ') {
                p++;
                pl--;
            }
            strip = false;
        }
        if (total < cap)
            memcpy(out + total, p, pl < cap - total ? pl : cap - total);
        total += pl;
    }
    if (total < cap)
        out[total] = '\0';
    *n_out = total;
    return LB_OK;
}
