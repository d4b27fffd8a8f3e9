/* GPT-2 byte-level BPE on one pre-tokenized word: map bytes to GPT-2's
 * byte characters, then repeatedly apply the lowest-ranked merge among
 * adjacent pairs (ties: leftmost), as llama.cpp does. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

typedef struct { uint32_t start, n; int32_t prev, next; } bpe_sym;
typedef struct { int32_t rank, left, right; uint32_t size; } bpe_pair;

/* Min-heap order: lower rank first, then the leftmost pair. */
static bool better(const bpe_pair *a, const bpe_pair *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

typedef struct { bpe_pair *v; size_t n; lb__bpe_scratch *s; bool oom; } bpe_heap;

static void heap_push(bpe_heap *h, bpe_pair e)
{
    if (!grow(&h->s->heap, &h->s->heap_cap, h->n + 1, sizeof(bpe_pair))) {
        h->oom = true;
        return;
    }
    h->v = h->s->heap;
    size_t i = h->n++;
    while (i > 0 && better(&e, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = e;
}

static bpe_pair heap_pop(bpe_heap *h)
{
    bpe_pair top = h->v[0], last = h->v[--h->n];
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

static void try_pair(const lb_tokenizer *t, const char *enc, const bpe_sym *sym, int32_t l, int32_t r, bpe_heap *h)
{
    if (l < 0 || r < 0)
        return;
    int32_t rank = lb__merge_rank(t, enc + sym[l].start, sym[l].n, enc + sym[r].start, sym[r].n);
    if (rank >= 0)
        heap_push(h, (bpe_pair){rank, l, r, sym[l].n + sym[r].n});
}

void lb__bpe_encode_word(const lb_tokenizer *t, const char *word, size_t len, lb__bpe_scratch *s, lb__ids *out)
{
    if (len == 0)
        return;
    if (!grow((void **)&s->enc, &s->enc_cap, 2 * len, 1) || !grow(&s->sym, &s->sym_cap, len, sizeof(bpe_sym))) {
        out->oom = true;
        return;
    }
    char *enc = s->enc;
    size_t n_enc = 0;
    for (size_t i = 0; i < len; i++) {
        size_t cl;
        const char *c = lb__byte_char((unsigned char)word[i], &cl);
        memcpy(enc + n_enc, c, cl);
        n_enc += cl;
    }

    if (t->ignore_merges) {
        int32_t id = lb__tok_find(t, enc, n_enc);
        if (id >= 0) {
            lb__ids_push(out, id);
            return;
        }
    }

    bpe_sym *sym = s->sym;
    int32_t n = 0;
    for (size_t off = 0; off < n_enc;) {
        size_t cl = lb__utf8_len((unsigned char)enc[off]);
        if (cl > n_enc - off)
            cl = n_enc - off;
        sym[n] = (bpe_sym){(uint32_t)off, (uint32_t)cl, n - 1, off + cl == n_enc ? -1 : n + 1};
        off += cl;
        n++;
    }

    bpe_heap h = {s->heap, 0, s, false};
    for (int32_t i = 1; i < n; i++)
        try_pair(t, enc, sym, i - 1, i, &h);
    while (h.n && !h.oom) {
        bpe_pair p = heap_pop(&h);
        bpe_sym *l = &sym[p.left], *r = &sym[p.right];
        /* Stale entry: a side was merged into something else since it was queued. */
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = p.left;
        try_pair(t, enc, sym, l->prev, p.left, &h);
        try_pair(t, enc, sym, p.left, l->next, &h);
    }
    if (h.oom) {
        out->oom = true;
        return;
    }

    for (int32_t i = 0; i != -1; i = sym[i].next) {
        const char *str = enc + sym[i].start;
        int32_t id = lb__tok_find(t, str, sym[i].n);
        if (id >= 0) {
            lb__ids_push(out, id);
            continue;
        }
        /* No token for the merged text: llama.cpp emits single-byte tokens where they exist. */
        for (uint32_t k = 0; k < sym[i].n; k++) {
            int32_t bt = lb__tok_find(t, str + k, 1);
            if (bt >= 0)
                lb__ids_push(out, bt);
        }
    }
}

void lb__bpe_scratch_free(lb__bpe_scratch *s)
{
    free(s->enc);
    free(s->sym);
    free(s->heap);
    memset(s, 0, sizeof *s);
}
