/* Aligned allocation and overflow-checked size arithmetic, the two things
 * every buffer-sizing computation in lowbit needs. */
#ifndef LB_BASE_ALLOC_H
#define LB_BASE_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Allocates size bytes aligned to align, which must be a power of two
 * (values below sizeof(void *) are rounded up to it).  size 0 still returns a
 * unique pointer.  Returns NULL when align is not a power of two or the memory
 * is not available.  Release with lb_aligned_free (never plain free: some
 * hosts need a different release call). */
void *lb_aligned_alloc(size_t align, size_t size);

/* Releases a block from lb_aligned_alloc; NULL is accepted. */
void lb_aligned_free(void *ptr);

/* *out = a * b.  Returns true when the product overflowed size_t; *out is then
 * unspecified.  Typical use: `if (lb_mul_overflow_size(n, sz, &bytes)) return
 * lb__errf(err, LB_ERR_FORMAT, ...)`. */
static inline bool lb_mul_overflow_size(size_t a, size_t b, size_t *out)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_mul_overflow(a, b, out);
#else
    *out = a * b;
    return a != 0 && *out / a != b;
#endif
}

/* *out = a + b.  Returns true when the sum overflowed size_t. */
static inline bool lb_add_overflow_size(size_t a, size_t b, size_t *out)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_add_overflow(a, b, out);
#else
    *out = a + b;
    return *out < a;
#endif
}

/* The same for the signed 64-bit element counts used by tensor shapes. */
static inline bool lb_mul_overflow_i64(int64_t a, int64_t b, int64_t *out)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_mul_overflow(a, b, out);
#else
    bool ovf;   /* the four sign cases of CERT INT32-C */
    if (a > 0)
        ovf = b > 0 ? a > INT64_MAX / b : b < INT64_MIN / a;
    else
        ovf = b > 0 ? a < INT64_MIN / b : (a != 0 && b < INT64_MAX / a);
    if (ovf)
        return true;
    *out = a * b;
    return false;
#endif
}

#endif
