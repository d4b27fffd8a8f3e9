/* Status names and the formatting of error messages. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *lb_status_str(lb_status s)
{
    switch (s) {
    case LB_OK: return "ok";
    case LB_ERR_INVALID_ARG: return "invalid argument";
    case LB_ERR_IO: return "I/O error";
    case LB_ERR_FORMAT: return "format error";
    case LB_ERR_UNSUPPORTED: return "unsupported";
    case LB_ERR_NOT_FOUND: return "not found";
    case LB_ERR_TYPE: return "wrong type";
    case LB_ERR_NOMEM: return "out of memory";
    case LB_ERR_RANGE: return "out of range";
    case LB_ERR_CANCELLED: return "cancelled";
    case LB_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

lb_status lb__errf(lb_err *err, lb_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = status;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

void lb__err_prefix(lb_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    char head[LB_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(head, sizeof head - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t hl = strlen(head);
    memcpy(head + hl, ": ", 3);
    hl += 2;
    /* Shift the old message right to make room; what does not fit is cut. */
    size_t ol = strlen(err->msg);
    if (hl >= sizeof err->msg)
        hl = sizeof err->msg - 1;
    if (hl + ol >= sizeof err->msg)
        ol = sizeof err->msg - 1 - hl;
    memmove(err->msg + hl, err->msg, ol);
    memcpy(err->msg, head, hl);
    err->msg[hl + ol] = '\0';
}

void lb__err_clear(lb_err *err)
{
    if (err) {
        err->status = LB_OK;
        err->msg[0] = '\0';
    }
}
