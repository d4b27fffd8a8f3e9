/* The text filter between sampled tokens and the token callback: whole UTF-8
 * characters only, and stop strings cut out before anyone sees them. */
#ifndef LB_GENERATE_UTF8_STREAM_H
#define LB_GENERATE_UTF8_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "lowbit.h"

/* Bytes go in token by token; after each push, out[0..n_out) is the text that
 * is safe to release.  Text is held back while it could still be the start of
 * a character (at most 3 bytes) or of a stop string (shorter than the longest
 * stop string), so the hold stays small.  Invalid bytes become U+FFFD, one per
 * maximal ill-formed subsequence (Unicode's "substitution of maximal subparts"),
 * so everything released is valid UTF-8 — what JSON encoders require. */
typedef struct lb__text_stream {
    const char *const *stop;   /* n_stop strings, borrowed; empty ones are ignored */
    int n_stop;
    unsigned char partial[4];  /* [n_partial] bytes of a character not yet complete */
    int n_partial;
    char *hold;                /* [n_hold] valid text that may begin a stop string; capacity cap_hold */
    size_t n_hold, cap_hold;
    char *out;                 /* [n_out] text released by the last push/finish; capacity cap_out */
    size_t n_out, cap_out;
    bool stopped;              /* a stop string was found: nothing more is released */
} lb__text_stream;

void lb__text_stream_init(lb__text_stream *ts, const char *const *stop, int n_stop);
void lb__text_stream_free(lb__text_stream *ts);

/* Feeds len bytes.  LB_ERR_NOMEM on allocation failure (the stream is then unusable). */
lb_status lb__text_stream_push(lb__text_stream *ts, const char *bytes, size_t len);

/* The end of the input: releases everything held (an unfinished character becomes U+FFFD). */
lb_status lb__text_stream_finish(lb__text_stream *ts);

#endif
