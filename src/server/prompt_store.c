/* The prompt store: a list of entries searched linearly (a few hundred at
 * most: a budget of megabytes over a few KB a position) with an LRU stamp. */
#include "prompt_store.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "generate/session.h"

struct lb_prompt_entry {
    lb_token *toks;   /* [n] */
    int n;
    void *kv;         /* [bytes] lb__session_save_prefix's buffer of n positions */
    size_t bytes;
    uint64_t used;    /* the store's clock when last put or matched */
    lb_prompt_entry *next;
};

struct lb_prompt_store {
    size_t budget, bytes;
    int n_entries;
    uint64_t clock;
    lb_prompt_entry *head;
};

lb_prompt_store *lb_prompt_store_new(size_t budget)
{
    lb_prompt_store *ps = calloc(1, sizeof *ps);
    if (ps)
        ps->budget = budget;
    return ps;
}

static void entry_free(lb_prompt_entry *e)
{
    free(e->toks);
    free(e->kv);
    free(e);
}

/* Unlinks and frees the entry *pp points to. */
static void drop(lb_prompt_store *ps, lb_prompt_entry **pp)
{
    lb_prompt_entry *e = *pp;
    *pp = e->next;
    ps->bytes -= e->bytes;
    ps->n_entries--;
    entry_free(e);
}

void lb_prompt_store_free(lb_prompt_store *ps)
{
    if (!ps)
        return;
    while (ps->head)
        drop(ps, &ps->head);
    free(ps);
}

void lb_prompt_store_put(lb_prompt_store *ps, const lb_session *s, const lb_token *toks, int n)
{
    const size_t bytes = lb__session_prefix_bytes(s, n);
    if (!ps || !bytes || bytes > ps->budget)
        return;
    for (lb_prompt_entry **pp = &ps->head; *pp;) {
        lb_prompt_entry *e = *pp;
        const int k = lb_tokens_common(e->toks, e->n, toks, n);
        if (k == n) {   /* already held (maybe with more after it) */
            e->used = ++ps->clock;
            return;
        }
        if (k == e->n)   /* a prefix of the new one: superseded */
            drop(ps, pp);
        else
            pp = &e->next;
    }
    while (ps->head && ps->bytes + bytes > ps->budget) {
        lb_prompt_entry **lru = &ps->head;
        for (lb_prompt_entry **pp = &ps->head; *pp; pp = &(*pp)->next)
            if ((*pp)->used < (*lru)->used)
                lru = pp;
        drop(ps, lru);
    }
    lb_prompt_entry *e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->toks = malloc((size_t)n * sizeof *e->toks);
    e->kv = malloc(bytes);
    if (!e->toks || !e->kv || !lb__session_save_prefix(s, n, e->kv)) {
        entry_free(e);
        return;   /* out of memory: the store is only a cache */
    }
    memcpy(e->toks, toks, (size_t)n * sizeof *toks);
    e->n = n;
    e->bytes = bytes;
    e->used = ++ps->clock;
    e->next = ps->head;
    ps->head = e;
    ps->bytes += bytes;
    ps->n_entries++;
}

int lb_prompt_store_match(lb_prompt_store *ps, const lb_token *toks, int n, lb_prompt_entry **out)
{
    int best = 0;
    *out = NULL;
    for (lb_prompt_entry *e = ps ? ps->head : NULL; e; e = e->next) {
        const int k = lb_tokens_common(e->toks, e->n, toks, n);
        if (k > best) {
            best = k;
            *out = e;
        }
    }
    return best;
}

int lb_prompt_store_load(lb_prompt_store *ps, lb_prompt_entry *e, lb_session *s, int n)
{
    if (!e || n > e->n)
        return lb__session_load_prefix(s, NULL, 0, 0);
    e->used = ++ps->clock;
    return lb__session_load_prefix(s, e->kv, e->n, n);
}

void lb_prompt_store_usage(const lb_prompt_store *ps, int *entries, size_t *bytes)
{
    *entries = ps ? ps->n_entries : 0;
    *bytes = ps ? ps->bytes : 0;
}
