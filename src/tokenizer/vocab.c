/* Builds an lb_tokenizer from GGUF tokenizer.ggml.* metadata: tokens,
 * scores, types, merges and special ids, each validated before use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

uint64_t lb__hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;  /* FNV-1a, then a final mix for the low bits */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 31;
    h *= 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

static bool idmap_init(lb__idmap *m, uint64_t count)
{
    uint64_t cap = 16;
    while (cap < 2 * count + 1)
        cap <<= 1;
    if (cap > (1ull << 31))
        return false;
    m->slots = calloc(cap, sizeof *m->slots);
    m->cap = (uint32_t)cap;
    return m->slots != NULL;
}

static const char *tok_text(const lb_tokenizer *t, int32_t id, size_t *n)
{
    *n = t->text_len[id];
    return t->arena + t->text_off[id];
}

int32_t lb__tok_find(const lb_tokenizer *t, const char *s, size_t n)
{
    uint32_t mask = t->tok_map.cap - 1;
    for (uint32_t i = (uint32_t)lb__hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        uint32_t v = t->tok_map.slots[i];
        if (!v)
            return -1;
        size_t tn;
        const char *ts = tok_text(t, (int32_t)(v - 1), &tn);
        if (tn == n && memcmp(ts, s, n) == 0)
            return (int32_t)(v - 1);
    }
}

static uint64_t pair_hash(const char *l, size_t ln, const char *r, size_t rn)
{
    return lb__hash_bytes(l, ln) * 31u + lb__hash_bytes(r, rn);
}

int32_t lb__merge_rank(const lb_tokenizer *t, const char *l, size_t ln, const char *r, size_t rn)
{
    if (!t->merge_map.cap)
        return -1;
    uint32_t mask = t->merge_map.cap - 1;
    for (uint32_t i = (uint32_t)pair_hash(l, ln, r, rn) & mask;; i = (i + 1) & mask) {
        uint32_t v = t->merge_map.slots[i];
        if (!v)
            return -1;
        const lb__merge *m = &t->merges[v - 1];
        const char *ms = t->merge_arena + m->off;
        if (m->llen == ln && m->rlen == rn && memcmp(ms, l, ln) == 0 && memcmp(ms + ln + 1, r, rn) == 0)
            return (int32_t)(v - 1);
    }
}

void lb__ids_push(lb__ids *ids, int32_t id)
{
    if (ids->oom)
        return;
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v) {
            ids->oom = true;
            return;
        }
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
}

/* ---------------------------------------------------------------- loading */

static const char K_MODEL[] = "tokenizer.ggml.model";
static const char K_PRE[] = "tokenizer.ggml.pre";
static const char K_TOKENS[] = "tokenizer.ggml.tokens";
static const char K_SCORES[] = "tokenizer.ggml.scores";
static const char K_TYPES[] = "tokenizer.ggml.token_type";
static const char K_MERGES[] = "tokenizer.ggml.merges";

/* Looks up an array key; -1 if absent.  A present key of the wrong shape is an error. */
static lb_status find_array(const lb_gguf *g, const char *key, lb_gguf_vtype want1, lb_gguf_vtype want2,
                            int64_t *idx, uint64_t *n, lb_err *err)
{
    *idx = lb_gguf_find_key(g, key);
    *n = 0;
    if (*idx < 0)
        return LB_OK;
    lb_gguf_vtype et = lb_gguf_kv_arr_type(g, *idx);
    if (lb_gguf_kv_type(g, *idx) != LB_GGUF_ARRAY || (et != want1 && et != want2))
        return lb__errf(err, LB_ERR_TYPE, "%s: expected an array of %s, found %s%s%s", key, lb_gguf_vtype_name(want1),
                        lb_gguf_kv_type(g, *idx) == LB_GGUF_ARRAY ? "an array of " : "",
                        lb_gguf_kv_type(g, *idx) == LB_GGUF_ARRAY ? lb_gguf_vtype_name(et) : "",
                        lb_gguf_kv_type(g, *idx) == LB_GGUF_ARRAY ? "" : lb_gguf_vtype_name(lb_gguf_kv_type(g, *idx)));
    *n = lb_gguf_kv_arr_n(g, *idx);
    return LB_OK;
}

static int32_t rd_i32(const void *base, uint64_t i)
{
    int32_t v;
    memcpy(&v, (const char *)base + i * 4, 4);
    return v;
}

static float rd_f32(const void *base, uint64_t i)
{
    float v;
    memcpy(&v, (const char *)base + i * 4, 4);
    return v;
}

/* Reads an optional special-token id: absent keeps *id; present must lie in the vocabulary. */
static lb_status get_special(const lb_gguf *g, const char *key, int32_t n_vocab, int32_t *id, lb_err *err)
{
    if (lb_gguf_find_key(g, key) < 0)
        return LB_OK;
    int64_t v;
    lb_status st = lb_gguf_get_int(g, key, &v, err);
    if (st)
        return st;
    if (v < 0 || v >= n_vocab)
        return lb__errf(err, LB_ERR_FORMAT, "%s = %lld is outside the vocabulary (%d tokens)", key, (long long)v,
                        (int)n_vocab);
    *id = (int32_t)v;
    return LB_OK;
}

static lb_status get_flag(const lb_gguf *g, const char *key, bool *flag, lb_err *err)
{
    if (lb_gguf_find_key(g, key) < 0)
        return LB_OK;
    return lb_gguf_get_bool(g, key, flag, err);
}

static uint16_t attr_from_type(int32_t type)
{
    switch (type) {
    case 1: return LB_TA_NORMAL;
    case 2: return LB_TA_UNKNOWN;
    case 3: return LB_TA_CONTROL;
    case 4: return LB_TA_USER_DEFINED;
    case 5: return LB_TA_UNUSED;
    case 6: return LB_TA_BYTE;
    default: return LB_TA_UNDEFINED;
    }
}

/* Token texts that end a generation whatever their declared type (as llama.cpp treats them). */
static const char *const k_eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
    "<|end_of_text|>", "<end_of_utterance>", "</s>", "<|return|>", "<|call|>",
};

static lb_status load_tokens(lb_tokenizer *t, const lb_gguf *g, lb_err *err)
{
    int64_t ti, si, yi;
    uint64_t n, ns, ny;
    lb_status st;
    if ((st = find_array(g, K_TOKENS, LB_GGUF_STRING, LB_GGUF_STRING, &ti, &n, err)))
        return st;
    if (ti < 0)
        return lb__errf(err, LB_ERR_NOT_FOUND, "%s is missing", K_TOKENS);
    if (n == 0 || n > (uint64_t)INT32_MAX / 2)
        return lb__errf(err, LB_ERR_FORMAT, "%s: %llu tokens is not a usable vocabulary size", K_TOKENS,
                        (unsigned long long)n);
    if ((st = find_array(g, K_SCORES, LB_GGUF_F32, LB_GGUF_I32, &si, &ns, err)))
        return st;
    if (si >= 0 && ns != n)
        return lb__errf(err, LB_ERR_FORMAT, "%s has %llu entries but %s has %llu", K_SCORES, (unsigned long long)ns,
                        K_TOKENS, (unsigned long long)n);
    if ((st = find_array(g, K_TYPES, LB_GGUF_I32, LB_GGUF_I32, &yi, &ny, err)))
        return st;
    if (yi >= 0 && ny != n)
        return lb__errf(err, LB_ERR_FORMAT, "%s has %llu entries but %s has %llu", K_TYPES, (unsigned long long)ny,
                        K_TOKENS, (unsigned long long)n);

    t->n_vocab = (int32_t)n;
    /* Empty tokens get a placeholder text (as llama.cpp does) so lookups stay unambiguous. */
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        lb_gguf_str s = lb_gguf_arr_str(g, ti, i);
        total += (s.len ? s.len : 24) + 1;
        if (total > UINT32_MAX - 64)
            return lb__errf(err, LB_ERR_FORMAT, "%s: token texts exceed 4 GiB", K_TOKENS);
    }
    t->arena = malloc(total);
    t->piece_arena = malloc(total);
    t->text_off = malloc(n * sizeof *t->text_off);
    t->text_len = malloc(n * sizeof *t->text_len);
    t->piece_off = malloc(n * sizeof *t->piece_off);
    t->piece_len = malloc(n * sizeof *t->piece_len);
    t->score = malloc(n * sizeof *t->score);
    t->attr = malloc(n * sizeof *t->attr);
    if (!t->arena || !t->piece_arena || !t->text_off || !t->text_len || !t->piece_off || !t->piece_len || !t->score ||
        !t->attr || !idmap_init(&t->tok_map, n))
        return lb__errf(err, LB_ERR_NOMEM, "tokenizer: out of memory for %llu tokens", (unsigned long long)n);

    const void *sdata = si >= 0 ? lb_gguf_arr_data(g, si) : NULL;
    bool sint = si >= 0 && lb_gguf_kv_arr_type(g, si) == LB_GGUF_I32;
    const void *ydata = yi >= 0 ? lb_gguf_arr_data(g, yi) : NULL;
    uint32_t off = 0;
    uint32_t mask = t->tok_map.cap - 1;
    for (uint64_t i = 0; i < n; i++) {
        lb_gguf_str s = lb_gguf_arr_str(g, ti, i);
        t->text_off[i] = off;
        if (s.len) {
            memcpy(t->arena + off, s.ptr, s.len);
            t->text_len[i] = (uint32_t)s.len;
        } else {
            t->text_len[i] = (uint32_t)snprintf(t->arena + off, 24, "[EMPTY_%llu]", (unsigned long long)i);
        }
        t->arena[off + t->text_len[i]] = '\0';
        off += t->text_len[i] + 1;

        t->score[i] = sdata ? (sint ? (float)rd_i32(sdata, i) : rd_f32(sdata, i)) : 0.0f;
        t->attr[i] = ydata ? attr_from_type(rd_i32(ydata, i)) : LB_TA_NORMAL;

        size_t tn;
        const char *ts = tok_text(t, (int32_t)i, &tn);
        uint32_t h = (uint32_t)lb__hash_bytes(ts, tn) & mask;
        for (;; h = (h + 1) & mask) {
            uint32_t v = t->tok_map.slots[h];
            if (!v) {
                t->tok_map.slots[h] = (uint32_t)i + 1;
                break;
            }
            size_t on;
            const char *os = tok_text(t, (int32_t)(v - 1), &on);
            if (on == tn && memcmp(os, ts, tn) == 0)
                return lb__errf(err, LB_ERR_FORMAT, "%s: duplicate token '%.*s' at ids %u and %llu", K_TOKENS,
                                (int)(tn > 64 ? 64 : tn), ts, v - 1, (unsigned long long)i);
        }
    }
    return LB_OK;
}

static lb_status load_merges(lb_tokenizer *t, const lb_gguf *g, lb_err *err)
{
    int64_t mi;
    uint64_t n;
    lb_status st = find_array(g, K_MERGES, LB_GGUF_STRING, LB_GGUF_STRING, &mi, &n, err);
    if (st)
        return st;
    if (mi < 0)
        return lb__errf(err, LB_ERR_NOT_FOUND, "%s is missing (required by the gpt2 tokenizer)", K_MERGES);
    if (n > (uint64_t)INT32_MAX / 2)
        return lb__errf(err, LB_ERR_FORMAT, "%s: %llu merges is too many", K_MERGES, (unsigned long long)n);
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        total += lb_gguf_arr_str(g, mi, i).len + 1;
        if (total > UINT32_MAX - 64)
            return lb__errf(err, LB_ERR_FORMAT, "%s: merge texts exceed 4 GiB", K_MERGES);
    }
    t->merges = malloc((n ? n : 1) * sizeof *t->merges);
    t->merge_arena = malloc(total + 1);
    if (!t->merges || !t->merge_arena || !idmap_init(&t->merge_map, n))
        return lb__errf(err, LB_ERR_NOMEM, "tokenizer: out of memory for %llu merges", (unsigned long long)n);
    uint32_t off = 0, mask = t->merge_map.cap - 1;
    for (uint64_t i = 0; i < n; i++) {
        lb_gguf_str s = lb_gguf_arr_str(g, mi, i);
        /* The separator is the first space after the first byte, so a left part may itself be a space. */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp)
            return lb__errf(err, LB_ERR_FORMAT, "%s[%llu] = '%.*s' is not two parts separated by a space", K_MERGES,
                            (unsigned long long)i, (int)(s.len > 64 ? 64 : s.len), s.ptr ? s.ptr : "");
        lb__merge *m = &t->merges[i];
        m->off = off;
        m->llen = (uint32_t)(sp - s.ptr);
        m->rlen = (uint32_t)(s.len - m->llen - 1);
        memcpy(t->merge_arena + off, s.ptr, s.len);
        t->merge_arena[off + s.len] = '\0';
        off += (uint32_t)s.len + 1;
        const char *l = t->merge_arena + m->off, *r = l + m->llen + 1;
        /* A repeated pair keeps its first (best) rank. */
        if (lb__merge_rank(t, l, m->llen, r, m->rlen) >= 0)
            continue;
        uint32_t h = (uint32_t)pair_hash(l, m->llen, r, m->rlen) & mask;
        while (t->merge_map.slots[h])
            h = (h + 1) & mask;
        t->merge_map.slots[h] = (uint32_t)i + 1;
    }
    t->n_merges = (uint32_t)n;
    return LB_OK;
}

typedef struct { uint32_t len; int32_t id; } lb__special_key;

/* Longest text first so that a special token never loses to its own prefix; ties by id. */
static int cmp_special(const void *a, const void *b)
{
    const lb__special_key *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static bool contains_ci(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++) {
        size_t j = 0;
        while (j < k && (hay[i + j] | 0x20) == (needle[j] | 0x20))
            j++;
        if (j == k)
            return true;
    }
    return false;
}

static void set_attr_by_text(lb_tokenizer *t, const char *text, uint16_t bits, bool on)
{
    int32_t id = lb__tok_find(t, text, strlen(text));
    if (id >= 0)
        t->attr[id] = (uint16_t)(on ? (t->attr[id] | bits) : (t->attr[id] & ~bits));
}

static void build_special(lb_tokenizer *t, const lb_gguf *g)
{
    for (size_t k = 0; k < sizeof k_eog_texts / sizeof *k_eog_texts; k++) {
        int32_t id = lb__tok_find(t, k_eog_texts[k], strlen(k_eog_texts[k]));
        if (id >= 0)
            t->attr[id] |= LB_TA_EOG | LB_TA_CONTROL;
    }
    /* Harmony-style vocabularies end a turn with <|end|> but keep generating; it is not EOG there. */
    if (lb__tok_find(t, "<|return|>", 10) >= 0 && lb__tok_find(t, "<|call|>", 8) >= 0) {
        int32_t id = lb__tok_find(t, "<|end|>", 7);
        if (id >= 0)
            t->attr[id] = LB_TA_USER_DEFINED;
    }
    if (t->eos >= 0)
        t->attr[t->eos] |= LB_TA_EOG;
    if (t->eot >= 0)
        t->attr[t->eot] |= LB_TA_EOG;
    if (t->eom >= 0)
        t->attr[t->eom] |= LB_TA_EOG;

    int32_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        n += (t->attr[i] & (LB_TA_CONTROL | LB_TA_USER_DEFINED | LB_TA_UNKNOWN)) != 0;
    t->special = malloc((n ? (size_t)n : 1) * sizeof *t->special);
    lb__special_key *keys = malloc((n ? (size_t)n : 1) * sizeof *keys);  /* [n] */
    if (!t->special || !keys) {
        free(keys);
        free(t->special);
        t->special = NULL;
        return;
    }
    t->n_special = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & (LB_TA_CONTROL | LB_TA_USER_DEFINED | LB_TA_UNKNOWN))
            keys[t->n_special++] = (lb__special_key){t->text_len[i], i};
    qsort(keys, (size_t)t->n_special, sizeof *keys, cmp_special);
    for (int32_t i = 0; i < t->n_special; i++)
        t->special[i] = keys[i].id;
    free(keys);

    /* Phi-3's added tokens swallow the whitespace after them (llama.cpp keys this on the model name). */
    lb_gguf_str name = {0};
    if (lb_gguf_find_key(g, "general.name") >= 0 && lb_gguf_get_str(g, "general.name", &name, NULL) == LB_OK &&
        (contains_ci(name.ptr, name.len, "phi-3") || contains_ci(name.ptr, name.len, "phi3"))) {
        for (int32_t i = 0; i < t->n_special; i++)
            t->attr[t->special[i]] |= LB_TA_RSTRIP;
        set_attr_by_text(t, "</s>", LB_TA_RSTRIP, true);
        set_attr_by_text(t, "<unk>", LB_TA_RSTRIP, false);
        set_attr_by_text(t, "<s>", LB_TA_RSTRIP, false);
        set_attr_by_text(t, "<|endoftext|>", LB_TA_RSTRIP, false);
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The byte a "<0xXX>" token stands for, or -1. */
static int byte_of_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>' || hexval(s[3]) < 0 || hexval(s[4]) < 0)
        return -1;
    return hexval(s[3]) * 16 + hexval(s[4]);
}

static void build_bytes_and_pieces(lb_tokenizer *t)
{
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        if (t->kind == LB_TOK_SPM) {
            char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            char one = (char)b;
            int32_t id = lb__tok_find(t, buf, 6);
            t->byte_token[b] = id >= 0 ? id : lb__tok_find(t, &one, 1);
        } else {
            size_t n;
            const char *s = lb__byte_char((unsigned char)b, &n);
            t->byte_token[b] = lb__tok_find(t, s, n);
        }
    }

    uint32_t off = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t n;
        const char *s = tok_text(t, id, &n);
        char *out = t->piece_arena + off;
        size_t k = 0;
        uint16_t a = t->attr[id];
        if (a & (LB_TA_CONTROL | LB_TA_UNKNOWN)) {
            /* control and unknown tokens print nothing */
        } else if (a & LB_TA_USER_DEFINED) {
            memcpy(out, s, n);
            k = n;
        } else if (a & LB_TA_NORMAL) {
            for (size_t i = 0; i < n;) {
                if (t->kind == LB_TOK_SPM) {
                    if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                        out[k++] = ' ';
                        i += 3;
                    } else {
                        out[k++] = s[i++];
                    }
                } else {
                    size_t used;
                    int b = lb__char_byte(s + i, n - i, &used);
                    if (used == 0)
                        used = 1;
                    if (b >= 0) {
                        out[k++] = (char)b;
                    } else {
                        memcpy(out + k, s + i, used);  /* not a byte character: keep it as written */
                        k += used;
                    }
                    i += used;
                }
            }
        } else if (a & LB_TA_BYTE) {
            int b = byte_of_token(s, n);
            if (b >= 0)
                out[k++] = (char)b;
        }
        out[k] = '\0';
        t->piece_off[id] = off;
        t->piece_len[id] = (uint32_t)k;
        off += (uint32_t)k + 1;
    }
}

/* Pre-tokenizer names whose models expect BOS by default (llama.cpp's list). */
static bool pre_adds_bos(const char *pre)
{
    static const char *const names[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                        "midm-2.0", "lfm2", "tekken", "chameleon"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(pre, names[i]) == 0)
            return true;
    return false;
}

static bool pre_ignores_merges(const char *pre)
{
    static const char *const names[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                        "midm-2.0", "lfm2", "tekken"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(pre, names[i]) == 0)
            return true;
    return false;
}

static lb_status build(lb_tokenizer *t, const lb_gguf *g, lb_err *err)
{
    lb_gguf_str model;
    lb_status st = lb_gguf_get_str(g, K_MODEL, &model, err);
    if (st)
        return st;
    if (model.len == 5 && memcmp(model.ptr, "llama", 5) == 0)
        t->kind = LB_TOK_SPM;
    else if (model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0)
        t->kind = LB_TOK_BPE;
    else
        return lb__errf(err, LB_ERR_UNSUPPORTED, "%s = '%.*s' is not supported (lowbit knows 'llama' and 'gpt2')",
                        K_MODEL, (int)(model.len > 64 ? 64 : model.len), model.ptr);

    strcpy(t->pre_name, "default");
    if (lb_gguf_find_key(g, K_PRE) >= 0) {
        lb_gguf_str pre;
        if ((st = lb_gguf_get_str(g, K_PRE, &pre, err)))
            return st;
        if (pre.len >= sizeof t->pre_name || memchr(pre.ptr, '\0', pre.len))
            return lb__errf(err, LB_ERR_UNSUPPORTED, "%s = '%.*s' is not a known pre-tokenizer", K_PRE,
                            (int)(pre.len > 64 ? 64 : pre.len), pre.ptr);
        if (pre.len) {
            memcpy(t->pre_name, pre.ptr, pre.len);
            t->pre_name[pre.len] = '\0';
        }
    }

    if ((st = load_tokens(t, g, err)))
        return st;
    if (t->kind == LB_TOK_BPE) {
        if ((st = load_merges(t, g, err)))
            return st;
        if ((st = lb__pretok_new(t->pre_name, &t->pretok, err)))
            return st;
    }

    /* Defaults as llama.cpp: SentencePiece models number <unk> <s> </s> as 0 1 2. */
    t->bos = t->eos = t->eot = t->eom = t->unk = -1;
    if (t->kind == LB_TOK_SPM) {
        t->unk = 0;
        t->bos = t->n_vocab > 1 ? 1 : -1;
        t->eos = t->n_vocab > 2 ? 2 : -1;
    }
    if ((st = get_special(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos, err)) ||
        (st = get_special(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos, err)) ||
        (st = get_special(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot, err)) ||
        (st = get_special(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom, err)) ||
        (st = get_special(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk, err)))
        return st;

    t->add_bos = t->kind == LB_TOK_SPM || pre_adds_bos(t->pre_name);
    t->add_eos = false;
    t->add_space_prefix = t->kind == LB_TOK_SPM;
    t->ignore_merges = t->kind == LB_TOK_BPE && pre_ignores_merges(t->pre_name);
    if ((st = get_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err)) ||
        (st = get_flag(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err)) ||
        (st = get_flag(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err)))
        return st;
    if (t->add_bos && t->bos < 0)
        return lb__errf(err, LB_ERR_FORMAT, "tokenizer.ggml.add_bos_token is true but there is no BOS token");
    if (t->add_eos && t->eos < 0)
        return lb__errf(err, LB_ERR_FORMAT, "tokenizer.ggml.add_eos_token is true but there is no EOS token");

    build_special(t, g);
    if (!t->special)
        return lb__errf(err, LB_ERR_NOMEM, "tokenizer: out of memory");
    build_bytes_and_pieces(t);
    return LB_OK;
}

lb_status lb_tokenizer_new(const lb_gguf *g, lb_tokenizer **out, lb_err *err)
{
    if (!g || !out)
        return lb__errf(err, LB_ERR_INVALID_ARG, "lb_tokenizer_new: NULL argument");
    lb_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return lb__errf(err, LB_ERR_NOMEM, "tokenizer: out of memory");
    lb_status st = build(t, g, err);
    if (st) {
        lb_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LB_OK;
}

void lb_tokenizer_free(lb_tokenizer *t)
{
    if (!t)
        return;
    free(t->arena);
    free(t->text_off);
    free(t->text_len);
    free(t->score);
    free(t->attr);
    free(t->piece_arena);
    free(t->piece_off);
    free(t->piece_len);
    free(t->tok_map.slots);
    free(t->merges);
    free(t->merge_arena);
    free(t->merge_map.slots);
    free(t->special);
    lb__pretok_free(t->pretok);
    free(t);
}

int32_t lb_tokenizer_n_vocab(const lb_tokenizer *t) { return t->n_vocab; }
int32_t lb_tokenizer_bos(const lb_tokenizer *t) { return t->bos; }
int32_t lb_tokenizer_eos(const lb_tokenizer *t) { return t->eos; }
bool lb_tokenizer_add_bos(const lb_tokenizer *t) { return t->add_bos; }

bool lb_tokenizer_is_eog(const lb_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && (t->attr[id] & LB_TA_EOG);
}

bool lb_tokenizer_is_control(const lb_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && (t->attr[id] & LB_TA_CONTROL);
}

const char *lb_tokenizer_piece(const lb_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = t->piece_len[id];
    return t->piece_arena + t->piece_off[id];
}

const char *lb_tokenizer_text(const lb_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = t->text_len[id];
    return t->arena + t->text_off[id];
}
