/* Pre-tokenizers for byte-level BPE: tokenizer.ggml.pre names the list of
 * regexes llama.cpp applies in turn, each splitting every piece left by the
 * previous one into its matches and the gaps between them. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

#define MAX_REGEX 6

/* The patterns are the ones the models' tokenizer.json files specify, in the
 * form llama.cpp runs them (contractions spelled [sS] instead of (?i:...)). */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_CONTRACT "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3 RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN35 RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_UPPER "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]"
#define RE_LOWER "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"
#define RE_GPT4O "[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "*" RE_LOWER "+" RE_CONTRACT "?|[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "+" \
    RE_LOWER "*" RE_CONTRACT "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_TEKKEN "[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "*" RE_LOWER "+|[^\\r\\n\\p{L}\\p{N}]?" RE_UPPER "+" RE_LOWER \
    "*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_BLOOM " ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+"

typedef struct {
    const char *names;            /* space-separated tokenizer.ggml.pre values */
    const char *re[MAX_REGEX];
} pre_def;

static const pre_def k_pre[] = {
    {"default",
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    {"gpt-2 phi-2 mpt olmo jais trillion granite-docling exaone4 jina-es jina-de jina-v2-es jina-v2-de "
     "jina-v1-en jina-v2-code roberta-bpe gigachat a.x-4.0 mellum modern-bert",
     {RE_GPT2}},
    {"llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 dbrx smaug-bpe", {RE_LLAMA3}},
    {"qwen2 deepseek-r1-qwen kormo f2llmv2 megrez stablelm2 hunyuan solar-open", {RE_QWEN2}},
    {"qwen35", {RE_QWEN35}},
    {"starcoder refact command-r smollm codeshell exaone minerva-7b mellum2", {"\\p{N}", RE_GPT2}},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    {"deepseek-coder", {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+", "\\p{N}"}},
    {"gpt-4o llama4 kanana2 talkie minimax-m2", {RE_GPT4O}},
    {"tekken", {RE_TEKKEN}},
    {"poro-chat bloom gpt3-finnish", {RE_BLOOM}},
    {"viking", {RE_BLOOM, "\\p{N}"}},
};

struct lb__pretok {
    lb__regex *re[MAX_REGEX];
    int n;
};

static bool name_in(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ' ');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && memcmp(p, name, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

lb_status lb__pretok_new(const char *name, lb__pretok **out, lb_err *err)
{
    if (!name || !*name)
        name = "default";
    const pre_def *def = NULL;
    for (size_t i = 0; i < sizeof k_pre / sizeof *k_pre && !def; i++)
        if (name_in(k_pre[i].names, name))
            def = &k_pre[i];
    if (!def)
        return lb__errf(err, LB_ERR_UNSUPPORTED, "tokenizer.ggml.pre = '%s' is not a pre-tokenizer lowbit knows", name);
    lb__pretok *p = calloc(1, sizeof *p);
    if (!p)
        return lb__errf(err, LB_ERR_NOMEM, "pre-tokenizer: out of memory");
    for (int i = 0; i < MAX_REGEX && def->re[i]; i++) {
        lb_status st = lb__regex_compile(def->re[i], &p->re[i], err);
        if (st) {
            lb__err_prefix(err, "pre-tokenizer '%s'", name);
            lb__pretok_free(p);
            return st;
        }
        p->n = i + 1;
    }
    *out = p;
    return LB_OK;
}

void lb__pretok_free(lb__pretok *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++)
        lb__regex_free(p->re[i]);
    free(p);
}

typedef struct { size_t off, len; } piece;
typedef struct {
    piece *v;
    size_t n, cap;
    bool oom;
    size_t base, prev;  /* while splitting one piece: its offset, and the end of the last match */
} piece_list;

static void push_piece(piece_list *l, size_t off, size_t len)
{
    if (l->oom || len == 0)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        piece *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (piece){off, len};
}

static void on_match(size_t s, size_t e, void *user)
{
    piece_list *l = user;
    push_piece(l, l->base + l->prev, s - l->prev);  /* the unmatched gap stays a piece of its own */
    push_piece(l, l->base + s, e - s);
    l->prev = e;
}

lb_status lb__pretok_split(const lb__pretok *p, const char *text, size_t len, lb__word_cb cb, void *user, lb_err *err)
{
    piece_list cur = {0}, next = {0};
    lb_status st = LB_OK;
    push_piece(&cur, 0, len);
    for (int r = 0; r < p->n && !cur.oom && !st; r++) {
        next.n = 0;
        for (size_t i = 0; i < cur.n && !st; i++) {
            next.base = cur.v[i].off;
            next.prev = 0;
            st = lb__regex_each(p->re[r], text + cur.v[i].off, cur.v[i].len, on_match, &next, err);
            push_piece(&next, next.base + next.prev, cur.v[i].len - next.prev);
        }
        if (next.oom)
            cur.oom = true;
        piece_list tmp = cur;
        cur = next;
        next = tmp;
    }
    if (!st && cur.oom)
        st = lb__errf(err, LB_ERR_NOMEM, "pre-tokenizer: out of memory");
    for (size_t i = 0; i < cur.n && !st; i++)
        cb(text + cur.v[i].off, cur.v[i].len, user);
    free(cur.v);
    free(next.v);
    return st;
}
