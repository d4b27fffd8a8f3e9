/* The regex engine behind the pre-tokenizers: PCRE2 in UTF + Unicode-property
 * mode.  Kept alone in this file so another build (WebAssembly) can swap in a
 * different engine behind the same lb__regex_* interface. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

struct lb__regex {
    pcre2_code *code;
    bool jit;
};

lb_status lb__regex_compile(const char *pattern, lb__regex **out, lb_err *err)
{
    int ec;
    PCRE2_SIZE eo;
    /* MATCH_INVALID_UTF: invalid UTF-8 in the input simply never matches
     * (the splitter keeps such bytes as their own pieces) instead of failing. */
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &ec,
                                     &eo, NULL);
    if (!code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return lb__errf(err, LB_ERR_INTERNAL, "pre-tokenizer regex does not compile at offset %zu: %s", (size_t)eo,
                        (const char *)msg);
    }
    lb__regex *re = malloc(sizeof *re);
    if (!re) {
        pcre2_code_free(code);
        return lb__errf(err, LB_ERR_NOMEM, "pre-tokenizer: out of memory");
    }
    re->code = code;
    re->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;  /* the interpreter still works without JIT */
    *out = re;
    return LB_OK;
}

void lb__regex_free(lb__regex *re)
{
    if (!re)
        return;
    pcre2_code_free(re->code);
    free(re);
}

lb_status lb__regex_each(const lb__regex *re, const char *text, size_t len, lb__match_cb cb, void *user, lb_err *err)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md)
        return lb__errf(err, LB_ERR_NOMEM, "pre-tokenizer: out of memory");
    lb_status st = LB_OK;
    size_t off = 0;
    while (off < len) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)text, len, off, 0, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re->code, (PCRE2_SPTR)text, len, off, PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            st = lb__errf(err, LB_ERR_RANGE, "pre-tokenizer regex failed at byte %zu: %s", off, (const char *)msg);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e > s) {
            cb(s, e, user);
            off = e;
        } else {
            /* An empty match yields nothing; step over one character to make progress. */
            size_t cl = lb__utf8_len((unsigned char)text[s]);
            off = s + (cl <= len - s ? cl : 1);
        }
    }
    pcre2_match_data_free(md);
    return st;
}
