/* Tokenizer tests: llama.cpp's paired .inp/.out cases for SentencePiece and
 * byte-level BPE vocabularies, round trips, byte fallback, special tokens,
 * hostile metadata, and the size of the perplexity text in tokens. */
#include <stdint.h>
#include <time.h>

#include "check.h"
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    return buf;
}

static lb_tokenizer *load(const char *rel)
{
    lb_gguf *g = NULL;
    lb_tokenizer *t = NULL;
    lb_err err = {0};
    if (lb_gguf_open_file(check_shared(rel), true, &g, &err) != LB_OK) {
        fprintf(stderr, "cannot open %s: %s\n", rel, err.msg);
        return NULL;
    }
    if (lb_tokenizer_new(g, &t, &err) != LB_OK)
        fprintf(stderr, "tokenizer for %s: %s\n", rel, err.msg);
    lb_gguf_free(g);
    return t;
}

/* Encodes text into a malloc'ed array; NULL on error. */
static int32_t *enc(const lb_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                    size_t *n)
{
    lb_err err = {0};
    if (lb_tokenizer_encode(t, text, len, add_special, parse_special, NULL, 0, n, &err) != LB_OK) {
        fprintf(stderr, "encode: %s\n", err.msg);
        return NULL;
    }
    int32_t *ids = malloc((*n + 1) * sizeof *ids);
    size_t n2 = 0;
    if (lb_tokenizer_encode(t, text, len, add_special, parse_special, ids, *n, &n2, &err) != LB_OK || n2 != *n) {
        free(ids);
        return NULL;
    }
    return ids;
}

static bool ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void print_ids(const char *label, const int32_t *v, size_t n)
{
    fprintf(stderr, "    %s:", label);
    for (size_t i = 0; i < n && i < 64; i++)
        fprintf(stderr, " %d", v[i]);
    fprintf(stderr, n > 64 ? " ...\n" : "\n");
}

/* Runs every case of tokenizers/NAME.gguf.{inp,out} with the vocabulary in
 * gguf_rel (default: the case's own); returns the number that failed (-1: files missing). */
static int run_vocab_cases_with(const char *name, const char *gguf_rel, int *n_cases)
{
    char rel[256];
    size_t li, lo;
    snprintf(rel, sizeof rel, "tokenizers/%s.gguf.inp", name);
    char *inp = slurp(check_shared(rel), &li);
    snprintf(rel, sizeof rel, "tokenizers/%s.gguf.out", name);
    char *out = slurp(check_shared(rel), &lo);
    snprintf(rel, sizeof rel, "tokenizers/%s.gguf", name);
    lb_tokenizer *t = load(gguf_rel ? gguf_rel : rel);
    *n_cases = 0;
    if (!inp || !out || !t) {
        free(inp);
        free(out);
        lb_tokenizer_free(t);
        return -1;
    }
    /* Inputs end with "\n__ggml_vocab_test__\n"; the newline before the marker is not part of the input. */
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int failed = 0;
    char *ip = inp, *op = out;
    for (;;) {
        char *hit = strstr(ip, sep);
        char *nl = strchr(op, '\n');
        if (!hit || !nl)
            break;
        size_t want_n = 0;
        int32_t want[1024];
        for (char *p = op; p < nl;) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p)
                break;
            if (want_n < 1024)
                want[want_n++] = (int32_t)v;
            p = e;
        }
        size_t got_n = 0;
        int32_t *got = enc(t, ip, (size_t)(hit - ip), false, false, &got_n);
        if (!got || !ids_equal(got, got_n, want, want_n)) {
            if (failed == 0) {
                fprintf(stderr, "  %s case %d mismatch, input '%.*s'\n", name, *n_cases, (int)(hit - ip), ip);
                print_ids("expected", want, want_n);
                print_ids("got     ", got, got ? got_n : 0);
            }
            failed++;
        }
        free(got);
        (*n_cases)++;
        ip = hit + strlen(sep);
        op = nl + 1;
    }
    printf("  %s: %d/%d cases match\n", name, *n_cases - failed, *n_cases);
    free(inp);
    free(out);
    lb_tokenizer_free(t);
    return failed;
}

static int run_vocab_cases(const char *name, int *n_cases)
{
    return run_vocab_cases_with(name, NULL, n_cases);
}

/* The real Llama-2 vocabulary in a model file (no add_bos key: the default applies) gives the same ids. */
static void test_llama2_model_vocab(void)
{
    int n, f = run_vocab_cases_with("ggml-vocab-llama-spm", "models/llama-2-tiny-random.gguf", &n);
    CHECKF(f == 0 && n >= 40, "%d of %d failed", f, n);
    lb_tokenizer *t = load("models/llama-2-tiny-random.gguf");
    CHECK(t && lb_tokenizer_add_bos(t) && lb_tokenizer_bos(t) == 1 && lb_tokenizer_eos(t) == 2);
    lb_tokenizer_free(t);
}

static void test_vocab_llama_spm(void)
{
    int n, f = run_vocab_cases("ggml-vocab-llama-spm", &n);
    CHECKF(f == 0 && n >= 40, "%d of %d failed", f, n);
}

static void test_vocab_phi3(void)
{
    int n, f = run_vocab_cases("ggml-vocab-phi-3", &n);
    CHECKF(f == 0 && n >= 40, "%d of %d failed", f, n);
}

static void test_vocab_gpt2(void)
{
    int n, f = run_vocab_cases("ggml-vocab-gpt-2", &n);
    CHECKF(f == 0 && n >= 40, "%d of %d failed", f, n);
}

static void test_vocab_starcoder(void)
{
    int n, f = run_vocab_cases("ggml-vocab-starcoder", &n);
    CHECKF(f == 0 && n >= 40, "%d of %d failed", f, n);
}

static void test_vocab_falcon(void)
{
    int n, f = run_vocab_cases("ggml-vocab-falcon", &n);
    CHECKF(f == 0 && n >= 40, "%d of %d failed", f, n);
}

static bool round_trip(const lb_tokenizer *t, const char *text, size_t len, bool add_special)
{
    size_t n = 0, m = 0;
    int32_t *ids = enc(t, text, len, add_special, false, &n);
    if (!ids)
        return false;
    char *back = malloc(len + 16);
    lb_err err = {0};
    bool ok = lb_tokenizer_decode(t, ids, n, back, len + 16, &m, &err) == LB_OK && m == len &&
              memcmp(back, text, len) == 0;
    if (!ok && m <= len + 16) {
        size_t i = 0;
        while (i < m && i < len && back[i] == text[i])
            i++;
        fprintf(stderr, "  round trip differs at byte %zu of %zu (decoded %zu)\n", i, len, m);
    }
    free(back);
    free(ids);
    return ok;
}

static void test_techdocs_spm(void)
{
    lb_tokenizer *t = load("models/techdocs-28M-f16.gguf");
    CHECK(t != NULL);
    if (!t)
        return;
    CHECK(lb_tokenizer_n_vocab(t) == 4096);
    CHECK(lb_tokenizer_bos(t) == 1 && lb_tokenizer_eos(t) == 2 && lb_tokenizer_add_bos(t));
    CHECK(lb_tokenizer_is_eog(t, 2) && !lb_tokenizer_is_eog(t, 1) && lb_tokenizer_is_control(t, 1));

    /* BOS, then the text with a space prefix, merged by score: "▁H" "ell" "o" "▁wor" "ld".
     * The expected ids come from a separate naive (quadratic) merge loop written in Python. */
    size_t n;
    int32_t *ids = enc(t, "Hello world", 11, true, false, &n);
    static const int32_t want_hello[] = {1, 508, 699, 3102, 2673, 1105};
    CHECK(ids && ids_equal(ids, n, want_hello, 6));
    free(ids);
    ids = enc(t, "The kernel scheduler", 20, true, false, &n);
    static const int32_t want_sched[] = {1, 398, 787, 821, 779, 345, 261};
    CHECK(ids && ids_equal(ids, n, want_sched, 7));
    free(ids);

    /* An emoji the vocabulary lacks falls back to its four UTF-8 bytes as <0xXX> tokens. */
    ids = enc(t, "\xF0\x9F\x98\x80", 4, false, false, &n);
    CHECK(ids && n == 5 && ids[0] == 3099 && ids[1] == 3 + 0xF0 && ids[2] == 3 + 0x9F && ids[3] == 3 + 0x98 && ids[4] == 3 + 0x80);
    size_t pl;
    const char *p = lb_tokenizer_piece(t, 3 + 0x0A, &pl);
    CHECK(p && pl == 1 && p[0] == '\n');
    p = lb_tokenizer_piece(t, 1, &pl);
    CHECK(p && pl == 0);  /* control tokens print nothing */
    CHECK(lb_tokenizer_piece(t, 4096, &pl) == NULL && lb_tokenizer_piece(t, -1, &pl) == NULL);
    free(ids);

    /* Special tokens in the text count only with parse_special. */
    ids = enc(t, "a</s>b", 6, false, true, &n);
    CHECK(ids && n >= 3);
    bool has_eos = false;
    for (size_t i = 0; ids && i < n; i++)
        has_eos |= ids[i] == 2;
    CHECK(has_eos);
    free(ids);
    ids = enc(t, "a</s>b", 6, false, false, &n);
    has_eos = false;
    for (size_t i = 0; ids && i < n; i++)
        has_eos |= ids[i] == 2;
    CHECK(ids && !has_eos);
    free(ids);

    /* cap smaller than the count: the count is still complete. */
    int32_t two[2];
    lb_err err = {0};
    CHECK(lb_tokenizer_encode(t, "Hello world", 11, true, false, two, 2, &n, &err) == LB_OK && n == 6 && two[0] == 1 &&
          two[1] == 508);

    CHECK(round_trip(t, "  two leading spaces,\ttabs\nand a \xC3\xA9 and \xF0\x9F\x98\x80 ", 44, true));
    CHECK(round_trip(t, "", 0, false));
    lb_tokenizer_free(t);
}

static void test_techdocs_text(void)
{
    size_t len;
    char *text = slurp(check_shared("text/techdocs-valid.txt"), &len);
    CHECK(text != NULL);
    if (!text)
        return;
    lb_tokenizer *spm = load("models/techdocs-28M-f16.gguf");
    lb_tokenizer *bpe = load("models/techdocs-qwen-22M-f16.gguf");
    CHECK(spm && bpe);
    if (spm && bpe) {
        size_t n = 0;
        clock_t c0 = clock();
        int32_t *ids = enc(spm, text, len, true, false, &n);
        double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
        printf("  techdocs-valid.txt: %zu bytes -> %zu tokens with BOS (techdocs-28M), %.2f s\n", len, n, secs);
        CHECK(ids && ids[0] == 1);
        CHECKF(n >= 512 * 80, "%zu tokens are fewer than 80 chunks of 512", n);
        free(ids);
        CHECK(round_trip(spm, text, len, true));

        c0 = clock();
        ids = enc(bpe, text, len, true, false, &n);
        secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
        printf("  techdocs-valid.txt: %zu tokens (techdocs-qwen-22M, no BOS), %.2f s\n", n, secs);
        CHECK(ids && n > 0 && ids[0] != 0);
        free(ids);
        CHECK(round_trip(bpe, text, len, false));
    }
    lb_tokenizer_free(spm);
    lb_tokenizer_free(bpe);
    free(text);
}

static void test_qwen_bpe(void)
{
    lb_tokenizer *t = load("models/techdocs-qwen-22M-f16.gguf");
    CHECK(t != NULL);
    if (!t)
        return;
    CHECK(!lb_tokenizer_add_bos(t));
    CHECK(lb_tokenizer_is_eog(t, 0) && lb_tokenizer_is_control(t, 0));
    size_t n;
    int32_t *ids = enc(t, "<|endoftext|>", 13, false, true, &n);
    CHECK(ids && n == 1 && ids[0] == 0);
    free(ids);
    ids = enc(t, "<|endoftext|>", 13, false, false, &n);
    CHECK(ids && n > 1);
    free(ids);
    /* Invalid UTF-8 goes through byte-wise and comes back unchanged. */
    static const char bad[] = "ok \xFF\xC3 \x80x\xE2\x82";
    CHECK(round_trip(t, bad, sizeof bad - 1, false));
    size_t pl;
    const char *p = lb_tokenizer_piece(t, 0, &pl);
    CHECK(p && pl == 0);
    lb_tokenizer_free(t);
}

/* ---- hostile metadata: small GGUFs built in memory */

typedef struct { lb_gguf *g; char *bytes; } mem_gguf;

static bool to_gguf(lb_gguf_writer *w, mem_gguf *m)
{
    lb_err err = {0};
    FILE *f = tmpfile();
    bool ok = f && lb_gguf_writer_write_fp(w, f, &err) == LB_OK;
    lb_gguf_writer_free(w);
    m->g = NULL;
    m->bytes = NULL;
    if (ok) {
        long n = ftell(f);
        m->bytes = malloc((size_t)n);
        fseek(f, 0, SEEK_SET);
        ok = m->bytes && fread(m->bytes, 1, (size_t)n, f) == (size_t)n &&
             lb_gguf_open_memory(m->bytes, (size_t)n, &m->g, &err) == LB_OK;
    }
    if (f)
        fclose(f);
    if (!ok)
        fprintf(stderr, "  building a test GGUF failed: %s\n", err.msg);
    return ok;
}

static lb_gguf_writer *spm_writer(int n_tok, int n_scores)
{
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "\xE2\x96\x81\x61" /* "▁a" */, "ab"};
    lb_gguf_str s[8];
    float sc[8] = {0, 0, 0, -1, -2, -3, -0.5f, -0.25f};
    for (int i = 0; i < 8; i++)
        s[i] = (lb_gguf_str){toks[i], strlen(toks[i])};
    lb_gguf_writer *w = lb_gguf_writer_new();
    lb_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    lb_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", s, (uint64_t)n_tok);
    lb_gguf_writer_set_arr(w, "tokenizer.ggml.scores", LB_GGUF_F32, sc, (uint64_t)n_scores);
    return w;
}

static lb_gguf_writer *bpe_writer(const char *merge, const char *pre)
{
    char chars[256][3];
    lb_gguf_str s[258];
    for (int b = 0; b < 256; b++) {
        /* GPT-2's byte characters: printable bytes as themselves, the rest from U+0100 on. */
        static int moved = 0;
        if (b == 0)
            moved = 0;
        int cp = ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) ? b : 256 + moved++;
        if (cp < 0x80) {
            chars[b][0] = (char)cp;
            s[b] = (lb_gguf_str){chars[b], 1};
        } else {
            chars[b][0] = (char)(0xC0 | (cp >> 6));
            chars[b][1] = (char)(0x80 | (cp & 0x3F));
            s[b] = (lb_gguf_str){chars[b], 2};
        }
    }
    s[256] = (lb_gguf_str){"ab", 2};
    s[257] = (lb_gguf_str){"<|endoftext|>", 13};
    int32_t types[258];
    for (int i = 0; i < 258; i++)
        types[i] = i == 257 ? 3 : 1;
    lb_gguf_writer *w = lb_gguf_writer_new();
    lb_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (pre)
        lb_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    lb_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", s, 258);
    lb_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", LB_GGUF_I32, types, 258);
    if (merge) {
        lb_gguf_str m = {merge, strlen(merge)};
        lb_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", &m, 1);
    }
    lb_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 257);
    return w;
}

/* Builds a tokenizer from w; returns its status and leaves the message in err. */
static lb_status try_build(lb_gguf_writer *w, lb_tokenizer **t, lb_err *err)
{
    mem_gguf m;
    *t = NULL;
    if (!to_gguf(w, &m))
        return LB_ERR_INTERNAL;
    lb_status st = lb_tokenizer_new(m.g, t, err);
    lb_gguf_free(m.g);
    free(m.bytes);
    return st;
}

static void test_hostile_metadata(void)
{
    lb_tokenizer *t;
    lb_err err = {0};

    CHECK(try_build(spm_writer(8, 8), &t, &err) == LB_OK);
    if (t) {
        size_t n;
        int32_t *ids = enc(t, "ab a", 4, false, false, &n);
        /* "▁ab▁a": "ab" scores best, then "▁a"; "▁" before "ab" stays alone. */
        static const int32_t want[] = {3, 7, 6};
        CHECK(ids && ids_equal(ids, n, want, 3));
        free(ids);
        /* 'c' has no token and no byte token: it becomes <unk>. */
        ids = enc(t, "c", 1, false, false, &n);
        CHECK(ids && n == 2 && ids[0] == 3 && ids[1] == 0);
        free(ids);
        lb_tokenizer_free(t);
    }

    err.msg[0] = 0;
    CHECK(try_build(spm_writer(8, 7), &t, &err) == LB_ERR_FORMAT && t == NULL);
    CHECKF(strstr(err.msg, "tokenizer.ggml.scores") != NULL, "%s", err.msg);

    lb_gguf_writer *w = spm_writer(8, 8);
    lb_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 99);
    CHECK(try_build(w, &t, &err) == LB_ERR_FORMAT);
    CHECKF(strstr(err.msg, "bos_token_id") != NULL, "%s", err.msg);

    w = spm_writer(8, 8);
    lb_gguf_writer_set_str(w, "tokenizer.ggml.model", "wordpiece9");
    CHECK(try_build(w, &t, &err) == LB_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "wordpiece9") != NULL, "%s", err.msg);

    w = spm_writer(8, 8);
    static const lb_gguf_str dup[] = {{"x", 1}, {"y", 1}, {"x", 1}};
    lb_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", dup, 3);
    lb_gguf_writer_set_arr(w, "tokenizer.ggml.scores", LB_GGUF_F32, (float[3]){0, 0, 0}, 3);
    CHECK(try_build(w, &t, &err) == LB_ERR_FORMAT);
    CHECKF(strstr(err.msg, "duplicate") != NULL, "%s", err.msg);

    w = spm_writer(8, 8);
    lb_gguf_writer_set_arr(w, "tokenizer.ggml.tokens", LB_GGUF_I32, (int32_t[2]){1, 2}, 2);
    CHECK(try_build(w, &t, &err) == LB_ERR_TYPE);

    w = spm_writer(8, 8);
    lb_gguf_writer_remove(w, "tokenizer.ggml.tokens");
    CHECK(try_build(w, &t, &err) == LB_ERR_NOT_FOUND);

    /* Byte-level BPE: one merge "a b" makes "ab" a single token. */
    CHECK(try_build(bpe_writer("a b", "gpt-2"), &t, &err) == LB_OK);
    if (t) {
        size_t n;
        int32_t *ids = enc(t, "ab ab<|endoftext|>", 18, false, true, &n);
        CHECK(ids && n == 4 && ids[0] == 256 && ids[2] == 256 && ids[3] == 257);
        free(ids);
        CHECK(lb_tokenizer_is_eog(t, 257) && lb_tokenizer_eos(t) == 257 && !lb_tokenizer_add_bos(t));
        lb_tokenizer_free(t);
    }
    CHECK(try_build(bpe_writer("ab", "gpt-2"), &t, &err) == LB_ERR_FORMAT);
    CHECKF(strstr(err.msg, "merges") != NULL, "%s", err.msg);
    CHECK(try_build(bpe_writer(NULL, "gpt-2"), &t, &err) == LB_ERR_NOT_FOUND);
    CHECK(try_build(bpe_writer("a b", "no-such-pre"), &t, &err) == LB_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "no-such-pre") != NULL, "%s", err.msg);
    CHECK(try_build(bpe_writer("a b", NULL), &t, &err) == LB_OK);  /* missing pre: llama.cpp's default */
    lb_tokenizer_free(t);
}

int main(void)
{
    RUN(test_vocab_llama_spm);
    RUN(test_llama2_model_vocab);
    RUN(test_vocab_phi3);
    RUN(test_vocab_gpt2);
    RUN(test_vocab_starcoder);
    RUN(test_vocab_falcon);
    RUN(test_techdocs_spm);
    RUN(test_qwen_bpe);
    RUN(test_techdocs_text);
    RUN(test_hostile_metadata);
    return check_done();
}
