/* Aligned allocation on top of the host's posix_memalign (also provided by
 * emscripten's libc). */
#include "base/alloc.h"

#include <stdlib.h>

void *lb_aligned_alloc(size_t align, size_t size)
{
    if (align == 0 || (align & (align - 1)) != 0)
        return NULL;
    if (align < sizeof(void *))
        align = sizeof(void *);
    /* posix_memalign(…, 0) may return NULL, which callers would take for an
     * allocation failure. */
    if (size == 0)
        size = align;
    void *p = NULL;
    if (posix_memalign(&p, align, size) != 0)
        return NULL;
    return p;
}

void lb_aligned_free(void *ptr) { free(ptr); }
