/* Internal layout of lb_tokenizer shared by the tokenizer's source files
 * (vocabulary loading, SentencePiece merges, byte-level BPE, pre-tokenizer). */
#ifndef LB_TOKENIZER_TOK_INTERNAL_H
#define LB_TOKENIZER_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "tokenizer/tokenizer.h"

/* Per-token attribute bits (from tokenizer.ggml.token_type plus fix-ups). */
enum {
    LB_TA_NORMAL = 1 << 0,
    LB_TA_UNKNOWN = 1 << 1,
    LB_TA_CONTROL = 1 << 2,
    LB_TA_USER_DEFINED = 1 << 3,
    LB_TA_UNUSED = 1 << 4,
    LB_TA_BYTE = 1 << 5,
    LB_TA_UNDEFINED = 1 << 6,
    LB_TA_LSTRIP = 1 << 7,
    LB_TA_RSTRIP = 1 << 8,
    LB_TA_EOG = 1 << 9,
};

typedef enum lb_tok_kind { LB_TOK_SPM, LB_TOK_BPE } lb_tok_kind;

/* Open-addressing hash set of ids keyed by some byte string the owner knows
 * how to fetch (token text or merge pair); slots hold id+1, 0 = empty. */
typedef struct lb__idmap {
    uint32_t *slots;  /* [cap] */
    uint32_t cap;     /* power of two, >= 2 * count */
} lb__idmap;

typedef struct lb__merge {
    uint32_t off;     /* into merge_arena: "left right" */
    uint32_t llen, rlen;
} lb__merge;

typedef struct lb__pretok lb__pretok;  /* compiled pre-tokenizer (pretokenize.c) */

struct lb_tokenizer {
    lb_tok_kind kind;
    int32_t n_vocab;
    char *arena;            /* all token texts, each NUL-terminated */
    uint32_t *text_off;     /* [n_vocab] offset of token i's text in arena */
    uint32_t *text_len;     /* [n_vocab] */
    float *score;           /* [n_vocab] */
    uint16_t *attr;         /* [n_vocab] LB_TA_* bits */
    char *piece_arena;      /* all output pieces, NUL-terminated */
    uint32_t *piece_off;    /* [n_vocab] */
    uint32_t *piece_len;    /* [n_vocab] */
    lb__idmap tok_map;      /* token text -> id */

    lb__merge *merges;      /* [n_merges], index = rank */
    uint32_t n_merges;
    char *merge_arena;
    lb__idmap merge_map;    /* (left, right) -> rank */

    int32_t bos, eos, eot, eom, unk;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    int32_t byte_token[256];      /* SPM: <0xXX> token per byte (or -1); BPE: token of the byte's character */

    int32_t *special;       /* [n_special] control/user-defined/unknown ids, longest text first */
    int32_t n_special;

    lb__pretok *pretok;     /* BPE only */
    char pre_name[64];
};

/* ---- utf8.c */
/* Bytes in the UTF-8 sequence a lead byte announces (1 for stray continuation bytes). */
size_t lb__utf8_len(unsigned char lead);
/* GPT-2's byte-to-character table: the UTF-8 of the character standing for byte b (1-2 bytes). */
const char *lb__byte_char(unsigned char b, size_t *len);
/* Inverse: the byte a GPT-2 byte character stands for, or -1; *used gets the bytes consumed. */
int lb__char_byte(const char *s, size_t len, size_t *used);

/* ---- vocab.c */
uint64_t lb__hash_bytes(const char *s, size_t n);
/* Id of the token whose text is exactly s[0..n), or -1. */
int32_t lb__tok_find(const lb_tokenizer *t, const char *s, size_t n);
/* Rank of merge (left, right), or -1. */
int32_t lb__merge_rank(const lb_tokenizer *t, const char *l, size_t ln, const char *r, size_t rn);

/* Growable output buffer of ids. */
typedef struct lb__ids {
    int32_t *v;
    size_t n, cap;
    bool oom;
} lb__ids;
void lb__ids_push(lb__ids *ids, int32_t id);

/* ---- spm.c: text already has spaces replaced by U+2581 */
void lb__spm_encode(const lb_tokenizer *t, const char *text, size_t len, lb__ids *out);

/* ---- bpe.c: one pre-tokenized word, raw bytes (byte-encoded inside).
 * The scratch buffers are reused across words; free with lb__bpe_scratch_free. */
typedef struct lb__bpe_scratch {
    char *enc;     /* [enc_cap] the word in GPT-2 byte characters */
    void *sym;     /* [sym_cap] symbols */
    void *heap;    /* [heap_cap] queued pairs */
    size_t enc_cap, sym_cap, heap_cap;
} lb__bpe_scratch;
void lb__bpe_encode_word(const lb_tokenizer *t, const char *word, size_t len, lb__bpe_scratch *s, lb__ids *out);
void lb__bpe_scratch_free(lb__bpe_scratch *s);

/* ---- pretokenize.c */
/* Builds the pre-tokenizer for a tokenizer.ggml.pre name (NULL or "" = "default"). */
lb_status lb__pretok_new(const char *name, lb__pretok **out, lb_err *err);
void lb__pretok_free(lb__pretok *p);
typedef void (*lb__word_cb)(const char *word, size_t len, void *user);
/* Splits text into words (in order, covering every byte) and calls cb for each. */
lb_status lb__pretok_split(const lb__pretok *p, const char *text, size_t len, lb__word_cb cb, void *user,
                           lb_err *err);

/* ---- pretokenize_pcre2.c: the one place a regex engine is used */
typedef struct lb__regex lb__regex;
lb_status lb__regex_compile(const char *pattern, lb__regex **out, lb_err *err);
void lb__regex_free(lb__regex *re);
/* Calls cb(start, end) for each successive non-empty, non-overlapping match
 * in text[0..len), treated as a whole subject.  Invalid UTF-8 never matches. */
typedef void (*lb__match_cb)(size_t start, size_t end, void *user);
lb_status lb__regex_each(const lb__regex *re, const char *text, size_t len, lb__match_cb cb, void *user,
                         lb_err *err);

#endif
