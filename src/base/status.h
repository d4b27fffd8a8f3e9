/* Internal error reporting: a status plus a message with context, filled by
 * the code that detects the problem and carried up to the public object. */
#ifndef LB_BASE_STATUS_H
#define LB_BASE_STATUS_H

#include "lowbit.h"

#define LB_ERR_MSG_MAX 512

typedef struct lb_err {
    lb_status status;
    char msg[LB_ERR_MSG_MAX];
} lb_err;

/* Records status and a printf-style message in err (err may be NULL) and
 * returns status, so callers can write `return lb__errf(err, LB_ERR_FORMAT, ...)`. */
lb_status lb__errf(lb_err *err, lb_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prefixes an existing message with more context ("loading x.gguf: ..."). */
void lb__err_prefix(lb_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void lb__err_clear(lb_err *err);

#endif
