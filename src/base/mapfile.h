/* Host layer for whole-file access: map a file read-only, or read it into
 * memory.  Under WebAssembly there is no mmap, so mapping falls back to a read. */
#ifndef LB_BASE_MAPFILE_H
#define LB_BASE_MAPFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/status.h"

typedef struct lb_mapfile {
    const void *data;   /* size bytes of the file; never NULL after a successful open */
    size_t size;
    bool mapped;        /* true: data is an mmap; false: data is a malloc'd buffer */
} lb_mapfile;

/* Opens path and makes its whole content available in out->data.  With
 * use_mmap the file is mapped read-only (natively; reading is used when mmap
 * is unavailable); otherwise it is read into a buffer.  On failure returns
 * LB_ERR_IO or LB_ERR_NOMEM with the path and the system's reason in err, and
 * leaves out zeroed. */
lb_status lb_mapfile_open(const char *path, bool use_mmap, lb_mapfile *out, lb_err *err);

/* Releases the mapping or buffer; accepts a zeroed or already-closed struct. */
void lb_mapfile_close(lb_mapfile *m);

#endif
