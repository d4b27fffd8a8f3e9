/* Whole-file access for the host: mmap natively, read() everywhere else. */
#include "base/mapfile.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef __EMSCRIPTEN__
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define LB_HAVE_MMAP 1
#else
#define LB_HAVE_MMAP 0
#endif

/* Reads the whole stream; the size is learned by seeking, then verified by
 * the read itself, so a file that shrinks meanwhile is an error, not a crash. */
static lb_status read_all(const char *path, lb_mapfile *out, lb_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return lb__errf(err, LB_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    if (fseeko(f, 0, SEEK_END) != 0) {
        int e = errno;
        fclose(f);
        return lb__errf(err, LB_ERR_IO, "cannot seek in '%s': %s", path, strerror(e));
    }
    off_t end = ftello(f);
    if (end < 0 || fseeko(f, 0, SEEK_SET) != 0) {
        int e = errno;
        fclose(f);
        return lb__errf(err, LB_ERR_IO, "cannot size '%s': %s", path, strerror(e));
    }
    if ((uint64_t)end > (uint64_t)SIZE_MAX - 1) {
        fclose(f);
        return lb__errf(err, LB_ERR_NOMEM, "'%s' is %lld bytes, too large for this address space",
                        path, (long long)end);
    }
    size_t size = (size_t)end;
    /* One extra byte so an empty file still gets a non-NULL buffer. */
    unsigned char *buf = malloc(size + 1);
    if (!buf) {
        fclose(f);
        return lb__errf(err, LB_ERR_NOMEM, "cannot allocate %zu bytes to read '%s'", size, path);
    }
    size_t got = size ? fread(buf, 1, size, f) : 0;
    int bad = got != size || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return lb__errf(err, LB_ERR_IO, "short read of '%s': %zu of %zu bytes", path, got, size);
    }
    out->data = buf;
    out->size = size;
    out->mapped = false;
    return LB_OK;
}

#if LB_HAVE_MMAP
static lb_status map_file(const char *path, lb_mapfile *out, lb_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lb__errf(err, LB_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lb__errf(err, LB_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lb__errf(err, LB_ERR_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return lb__errf(err, LB_ERR_NOMEM, "'%s' is too large to map", path);
    }
    if (st.st_size == 0) {
        /* mmap rejects length 0; an empty buffer serves the same purpose. */
        close(fd);
        return read_all(path, out, err);
    }
    size_t size = (size_t)st.st_size;
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED)
        return lb__errf(err, LB_ERR_IO, "cannot map '%s' (%zu bytes): %s", path, size, strerror(e));
    out->data = p;
    out->size = size;
    out->mapped = true;
    return LB_OK;
}
#endif

lb_status lb_mapfile_open(const char *path, bool use_mmap, lb_mapfile *out, lb_err *err)
{
    if (!out)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_mapfile_open: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_mapfile_open: path is NULL");
#if LB_HAVE_MMAP
    if (use_mmap)
        return map_file(path, out, err);
#else
    (void)use_mmap;
#endif
    return read_all(path, out, err);
}

void lb_mapfile_close(lb_mapfile *m)
{
    if (!m || !m->data)
        return;
#if LB_HAVE_MMAP
    if (m->mapped)
        munmap((void *)(uintptr_t)m->data, m->size);
    else
#endif
        free((void *)(uintptr_t)m->data);
    m->data = NULL;
    m->size = 0;
    m->mapped = false;
}
