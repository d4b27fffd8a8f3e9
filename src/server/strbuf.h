/* A growing NUL-terminated string for the server's text builders (chat
 * prompts, streamed chunks): appends never fail loudly, a failed allocation
 * only marks the buffer, which its owner then drops. */
#ifndef LB_SERVER_STRBUF_H
#define LB_SERVER_STRBUF_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct lb_strbuf {
    char *p;       /* [n] text, NUL after it; capacity cap */
    size_t n, cap;
    bool failed;   /* an allocation failed (or the owner gave up): the text is incomplete */
} lb_strbuf;

static inline void lb_strbuf_add(lb_strbuf *b, const char *s, size_t k)
{
    if (b->failed)
        return;
    if (b->n + k + 1 > b->cap) {
        const size_t cap = (b->n + k + 1) * 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, k);
    b->n += k;
    b->p[b->n] = '\0';
}

#endif
