/* The prompt store of `lowbit serve`: keys and values of token sequences a
 * slot's cache held before the slot was given to another request, kept in
 * memory up to a byte budget (least recently used out first), so that a
 * later prompt beginning with one of them starts from it (docs/server.md,
 * "Prompt cache").  Used by the decode thread only: no locking. */
#ifndef LB_SERVER_PROMPT_STORE_H
#define LB_SERVER_PROMPT_STORE_H

#include <stddef.h>

#include "lowbit.h"

/* Tokens a[0..na) and b[0..nb) have in common at their start. */
static inline int lb_tokens_common(const lb_token *a, int na, const lb_token *b, int nb)
{
    int k = 0;
    while (k < na && k < nb && a[k] == b[k])
        k++;
    return k;
}

typedef struct lb_prompt_store lb_prompt_store;
typedef struct lb_prompt_entry lb_prompt_entry;

/* A store of at most budget bytes of keys and values; NULL on allocation failure. */
lb_prompt_store *lb_prompt_store_new(size_t budget);
void lb_prompt_store_free(lb_prompt_store *ps);

/* Keeps the first n positions of s, whose tokens are toks[0..n), unless an
 * entry already holds them; entries that are prefixes of them are dropped,
 * the least recently used ones too until they fit.  Sequences larger than
 * the budget, or that s's cache cannot save, are not kept. */
void lb_prompt_store_put(lb_prompt_store *ps, const lb_session *s, const lb_token *toks, int n);

/* The longest prefix of toks[0..n) an entry holds: its length, and the entry in *e (NULL when 0). */
int lb_prompt_store_match(lb_prompt_store *ps, const lb_token *toks, int n, lb_prompt_entry **e);

/* Starts s's context with the first n positions of e (n <= what
 * lb_prompt_store_match returned for it); returns n, or 0 with s's context
 * empty. */
int lb_prompt_store_load(lb_prompt_store *ps, lb_prompt_entry *e, lb_session *s, int n);

/* Entries and bytes held (for /metrics). */
void lb_prompt_store_usage(const lb_prompt_store *ps, int *entries, size_t *bytes);

#endif
