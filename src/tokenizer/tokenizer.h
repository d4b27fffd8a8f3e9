/* Tokenizers built from GGUF metadata (tokenizer.ggml.*): SentencePiece-style
 * BPE (`llama`: score-ordered merges, byte fallback) and GPT-2 byte-level BPE
 * (`gpt2`: ranked merges, pre-tokenizer regex chosen by tokenizer.ggml.pre). */
#ifndef LB_TOKENIZER_TOKENIZER_H
#define LB_TOKENIZER_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "format/gguf.h"

typedef struct lb_tokenizer lb_tokenizer;

/* Builds the tokenizer from g's metadata.  Copies what it needs: g may be
 * freed afterwards.  Unknown tokenizer.ggml.model or .pre values give
 * LB_ERR_UNSUPPORTED naming the value. */
lb_status lb_tokenizer_new(const lb_gguf *g, lb_tokenizer **out, lb_err *err);
void lb_tokenizer_free(lb_tokenizer *t);

/* Encodes len bytes of text (need not be NUL-terminated; invalid UTF-8 is
 * tolerated and encoded byte-wise).  add_special: BOS/EOS as the metadata's
 * add_bos_token/add_eos_token ask (defaults: llama adds BOS, gpt2 does not).
 * parse_special: text equal to a control token becomes that token
 * (user-defined tokens are always matched, as in llama.cpp / HF tokenizers).
 * Invalid UTF-8: byte-level BPE keeps the raw bytes (llama.cpp would turn
 * them into U+FFFD); SentencePiece falls back to <0xXX> tokens.
 * Writes up to cap ids into out and returns the full count in *n_out.
 * The tokenizer is immutable once built: encode/decode may run concurrently. */
lb_status lb_tokenizer_encode(const lb_tokenizer *t, const char *text, size_t len,
                              bool add_special, bool parse_special,
                              int32_t *out, size_t cap, size_t *n_out, lb_err *err);

/* The bytes token id stands for in output text ("▁" becomes a space, <0x0A>
 * becomes one byte, GPT-2's byte characters map back to bytes, control
 * tokens are ""); NULL for an id out of range. */
const char *lb_tokenizer_piece(const lb_tokenizer *t, int32_t id, size_t *len);
/* The text of n ids: their pieces concatenated, except that for tokenizers
 * that prefix a space (SentencePiece) the leading space of the first text
 * token, and of the first after each special token, is dropped, so that
 * decode(encode(x)) == x.  Writes up to cap bytes (NUL-terminated when there
 * is room) and returns the full length in *n_out.  LB_ERR_RANGE for an id
 * out of range. */
lb_status lb_tokenizer_decode(const lb_tokenizer *t, const int32_t *ids, size_t n, char *out, size_t cap,
                              size_t *n_out, lb_err *err);

/* The token's text as stored in the vocabulary (for display). */
const char *lb_tokenizer_text(const lb_tokenizer *t, int32_t id, size_t *len);

int32_t lb_tokenizer_n_vocab(const lb_tokenizer *t);
int32_t lb_tokenizer_bos(const lb_tokenizer *t);   /* -1 when none */
int32_t lb_tokenizer_eos(const lb_tokenizer *t);
bool lb_tokenizer_add_bos(const lb_tokenizer *t);
bool lb_tokenizer_is_eog(const lb_tokenizer *t, int32_t id);  /* eos, eot, <|endoftext|>, <|im_end|>, ... */
bool lb_tokenizer_is_control(const lb_tokenizer *t, int32_t id);

#endif
