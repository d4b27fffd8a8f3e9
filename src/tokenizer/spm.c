/* SentencePiece-style BPE as llama.cpp runs it: start from UTF-8 characters,
 * repeatedly merge the adjacent pair whose joined text is the vocabulary
 * token with the highest score (ties: leftmost), then fall back to <0xXX>
 * byte tokens for whatever is left without a token. */
#include <stdlib.h>

#include "tokenizer/tok_internal.h"

typedef struct { uint32_t start, n; int32_t prev, next; } spm_sym;
typedef struct { float score; int32_t left, right; uint32_t size; } spm_bigram;

/* Max-heap order: higher score first, then the leftmost pair. */
static bool better(const spm_bigram *a, const spm_bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct { spm_bigram *v; size_t n, cap; bool oom; } spm_heap;

static void heap_push(spm_heap *h, spm_bigram e)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        spm_bigram *v = realloc(h->v, cap * sizeof *v);
        if (!v) {
            h->oom = true;
            return;
        }
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && better(&e, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = e;
}

static spm_bigram heap_pop(spm_heap *h)
{
    spm_bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && better(&h->v[c + 1], &h->v[c]))
            c++;
        if (!better(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}

static void try_pair(const lb_tokenizer *t, const char *text, const spm_sym *sym, int32_t l, int32_t r, spm_heap *h)
{
    if (l < 0 || r < 0)
        return;
    uint32_t size = sym[l].n + sym[r].n;
    int32_t id = lb__tok_find(t, text + sym[l].start, size);  /* adjacent symbols are contiguous */
    if (id < 0)
        return;
    heap_push(h, (spm_bigram){t->score[id], l, r, size});
}

void lb__spm_encode(const lb_tokenizer *t, const char *text, size_t len, lb__ids *out)
{
    if (len == 0)
        return;
    spm_sym *sym = malloc(len * sizeof *sym);  /* [at most len] one per UTF-8 character */
    spm_heap h = {0};
    if (!sym) {
        out->oom = true;
        return;
    }
    int32_t n = 0;
    for (size_t off = 0; off < len;) {
        size_t cl = lb__utf8_len((unsigned char)text[off]);
        if (cl > len - off)
            cl = len - off;
        sym[n] = (spm_sym){(uint32_t)off, (uint32_t)cl, n - 1, off + cl == len ? -1 : n + 1};
        off += cl;
        n++;
    }
    for (int32_t i = 1; i < n; i++)
        try_pair(t, text, sym, i - 1, i, &h);

    while (h.n && !h.oom) {
        spm_bigram b = heap_pop(&h);
        spm_sym *l = &sym[b.left], *r = &sym[b.right];
        /* Stale entry: one side was merged away since it was queued. */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = b.left;
        try_pair(t, text, sym, l->prev, b.left, &h);
        try_pair(t, text, sym, b.left, l->next, &h);
    }
    if (h.oom)
        out->oom = true;

    for (int32_t i = 0; i != -1 && !out->oom; i = sym[i].next) {
        const char *s = text + sym[i].start;
        int32_t id = lb__tok_find(t, s, sym[i].n);
        if (id >= 0) {
            lb__ids_push(out, id);
            continue;
        }
        for (uint32_t k = 0; k < sym[i].n; k++) {
            int32_t bt = t->byte_token[(unsigned char)s[k]];
            if (bt < 0)
                bt = t->unk;
            if (bt >= 0)
                lb__ids_push(out, bt);
        }
    }
    free(h.v);
    free(sym);
}
