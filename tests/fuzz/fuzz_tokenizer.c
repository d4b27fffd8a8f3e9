/* libFuzzer target: arbitrary bytes through the SentencePiece (techdocs-28M)
 * and byte-level BPE (techdocs-qwen-22M) tokenizers, then decoded back; the
 * round trip must be exact where the tokenizers promise it. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

static lb_tokenizer *g_tok[2];

static lb_tokenizer *load(const char *rel)
{
    const char *root = getenv("LB_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root && *root ? root : "../shared", rel);
    lb_gguf *g = NULL;
    lb_tokenizer *t = NULL;
    lb_err err = {0};
    if (lb_gguf_open_file(path, true, &g, &err) != LB_OK || lb_tokenizer_new(g, &t, &err) != LB_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path, err.msg);
        abort();
    }
    lb_gguf_free(g);
    return t;
}

/* Strict UTF-8 check: SentencePiece only round-trips valid UTF-8 (invalid lead
 * bytes swallow the escaped spaces after them, as in llama.cpp). */
static bool valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n)
            return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
        i += k;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_tok[0]) {
        g_tok[0] = load("models/techdocs-28M-f16.gguf");
        g_tok[1] = load("models/techdocs-qwen-22M-f16.gguf");
    }
    if (size == 0)
        return 0;
    bool parse_special = data[0] & 1, add_special = data[0] & 2;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    for (int k = 0; k < 2; k++) {
        lb_tokenizer *t = g_tok[k];
        lb_err err = {0};
        size_t n = 0;
        if (lb_tokenizer_encode(t, text, len, add_special, parse_special, NULL, 0, &n, &err) != LB_OK)
            abort();
        int32_t *ids = malloc((n + 1) * sizeof *ids);
        size_t n2 = 0;
        if (lb_tokenizer_encode(t, text, len, add_special, parse_special, ids, n, &n2, &err) != LB_OK || n2 != n)
            abort();
        for (size_t i = 0; i < n; i++) {
            size_t pl;
            if (!lb_tokenizer_piece(t, ids[i], &pl))
                abort();
        }
        size_t m = 0;
        char *back = malloc(len + 8);
        if (lb_tokenizer_decode(t, ids, n, back, len + 8, &m, &err) != LB_OK)
            abort();
        bool exact = !parse_special &&
                     (k == 1 || (valid_utf8((const uint8_t *)text, len) && !memmem(text, len, "\xE2\x96\x81", 3)));
        if (exact && (m != len || memcmp(back, text, len) != 0)) {
            fprintf(stderr, "round trip failed for tokenizer %d: %zu bytes in, %zu out\n", k, len, m);
            abort();
        }
        free(back);
        free(ids);
    }
    return 0;
}
