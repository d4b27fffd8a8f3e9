/* Tests of the token stream: whole UTF-8 characters only, stop strings, finish reasons. */
#include <stdint.h>

#include "check.h"
#include "generate/utf8_stream.h"
#include "lowbit.h"

/* A growing string: [n] bytes of text collected from released pieces. */
typedef struct text {
    char buf[8192];
    size_t n;
    int events, flushes, bad_utf8;
    lb_token last_token;
    int cancel_after;   /* stop after this many events; 0 = never */
} text;

static bool valid_utf8(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        int len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!len || i + (size_t)len > n)
            return false;
        for (int k = 1; k < len; k++)
            if (((unsigned char)s[i + (size_t)k] & 0xC0) != 0x80)
                return false;
        if ((c == 0xE0 && (unsigned char)s[i + 1] < 0xA0) || (c == 0xED && (unsigned char)s[i + 1] > 0x9F) ||
            (c == 0xF0 && (unsigned char)s[i + 1] < 0x90) || (c == 0xF4 && (unsigned char)s[i + 1] > 0x8F))
            return false;
        i += (size_t)len;
    }
    return true;
}

static void add(text *t, const char *p, size_t n)
{
    if (t->n + n < sizeof t->buf) {
        memcpy(t->buf + t->n, p, n);
        t->n += n;
    }
    t->buf[t->n] = '\0';
}

/* Pushes each piece in turn, collecting what is released after every push. */
static void feed(lb__text_stream *ts, const char *const *pieces, int n, text *out, size_t *released_after)
{
    for (int i = 0; i < n; i++) {
        CHECK(lb__text_stream_push(ts, pieces[i], strlen(pieces[i])) == LB_OK);
        add(out, ts->out, ts->n_out);
        if (released_after)
            released_after[i] = out->n;
    }
}

static void test_split_character_held_back(void)
{
    const char *pieces[] = {"a", "\xF0", "\x9F", "\x98", "\x80", "b"};   /* U+1F600 in four pieces */
    size_t after[6];
    text t = {0};
    lb__text_stream ts;
    lb__text_stream_init(&ts, NULL, 0);
    feed(&ts, pieces, 6, &t, after);
    CHECK(after[0] == 1);
    CHECKF(after[1] == 1 && after[2] == 1 && after[3] == 1, "released %zu %zu %zu", after[1], after[2], after[3]);
    CHECK(after[4] == 5);
    CHECK(lb__text_stream_finish(&ts) == LB_OK);
    add(&t, ts.out, ts.n_out);
    CHECK(!strcmp(t.buf, "a\xF0\x9F\x98\x80" "b"));
    lb__text_stream_free(&ts);
}

static void test_invalid_bytes_become_replacement(void)
{
    /* A stray continuation, an invalid lead, a broken 3-byte sequence, a surrogate, then an unfinished tail. */
    const char *pieces[] = {"\x80", "x\xFF", "\xE2\x82", "A", "\xED\xA0\x80", "\xE2\x82"};
    text t = {0};
    lb__text_stream ts;
    lb__text_stream_init(&ts, NULL, 0);
    feed(&ts, pieces, 6, &t, NULL);
    CHECK(lb__text_stream_finish(&ts) == LB_OK);
    add(&t, ts.out, ts.n_out);
    const char *want = "\xEF\xBF\xBD" "x\xEF\xBF\xBD" "\xEF\xBF\xBD" "A"
                       "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "\xEF\xBF\xBD";
    CHECKF(!strcmp(t.buf, want), "got %zu bytes", t.n);
    CHECK(valid_utf8(t.buf, t.n));
    lb__text_stream_free(&ts);
}

static void test_stop_string_spanning_pieces(void)
{
    const char *stop[] = {"", "END", "zzz"};
    const char *pieces[] = {"abc E", "N", "D tail", "more"};
    size_t after[4];
    text t = {0};
    lb__text_stream ts;
    lb__text_stream_init(&ts, stop, 3);
    feed(&ts, pieces, 4, &t, after);
    CHECKF(after[0] == 4, "released %zu after 'abc E'", after[0]);   /* "E" may start "END" */
    CHECK(after[1] == 4);
    CHECK(ts.stopped);
    CHECK(!strcmp(t.buf, "abc "));
    CHECK(lb__text_stream_finish(&ts) == LB_OK && ts.n_out == 0);
    lb__text_stream_free(&ts);
}

static void test_held_prefix_flushed_at_end(void)
{
    const char *stop[] = {"</answer>"};
    const char *pieces[] = {"42 </ans", "w"};
    text t = {0};
    lb__text_stream ts;
    lb__text_stream_init(&ts, stop, 1);
    feed(&ts, pieces, 2, &t, NULL);
    CHECK(!strcmp(t.buf, "42 "));
    CHECK(!ts.stopped);
    CHECK(lb__text_stream_finish(&ts) == LB_OK);
    add(&t, ts.out, ts.n_out);
    CHECK(!strcmp(t.buf, "42 </answ"));
    lb__text_stream_free(&ts);
}

static void test_earliest_stop_wins(void)
{
    const char *stop[] = {"cd", "b"};
    const char *pieces[] = {"abcd"};
    text t = {0};
    lb__text_stream ts;
    lb__text_stream_init(&ts, stop, 2);
    feed(&ts, pieces, 1, &t, NULL);
    CHECK(ts.stopped && !strcmp(t.buf, "a"));
    lb__text_stream_free(&ts);
}

/* ------------------------------------------------------- with the model */

static lb_model *model;
static lb_session *session;

static bool collect(const lb_token_event *ev, void *user)
{
    text *t = user;
    if (!valid_utf8(ev->piece, ev->piece_len))
        t->bad_utf8++;
    add(t, ev->piece, ev->piece_len);
    t->events++;
    if (ev->token < 0)
        t->flushes++;
    t->last_token = ev->token;
    return !(t->cancel_after && t->events >= t->cancel_after);
}

/* The model has no token for U+1F600, so it is spelled with byte-fallback
 * tokens, one byte each: the stream must release it whole, once. */
static void test_emoji_from_byte_tokens(void)
{
    const char *emoji = "\xF0\x9F\x98\x80";
    lb_token toks[16];
    size_t n = 0;
    CHECK(lb_tokenize(model, emoji, 4, false, false, toks, 16, &n) == LB_OK);
    int byte_tokens = 0;
    const char *pieces[16];
    char bytes[16][8];
    for (size_t i = 0; i < n && i < 16; i++) {
        size_t len = 0;
        const char *p = lb_token_piece(model, toks[i], &len);
        byte_tokens += len == 1 && (unsigned char)p[0] >= 0x80;
        memcpy(bytes[i], p, len < 7 ? len : 7);
        bytes[i][len < 7 ? len : 7] = '\0';
        pieces[i] = bytes[i];
    }
    CHECKF(byte_tokens == 4, "the emoji became %zu tokens, %d of them single high bytes", n, byte_tokens);
    text t = {0};
    size_t after[16];
    lb__text_stream ts;
    lb__text_stream_init(&ts, NULL, 0);
    feed(&ts, pieces, (int)n, &t, after);
    for (size_t i = 0; i + 1 < n; i++)
        CHECKF(after[i] == 0 || after[i] == 1, "released %zu bytes after token %zu", after[i], i);   /* 1: a leading space */
    CHECK(lb__text_stream_finish(&ts) == LB_OK);
    add(&t, ts.out, ts.n_out);
    CHECK(strstr(t.buf, emoji) != NULL);
    lb__text_stream_free(&ts);
}

/* Hot sampling picks byte tokens often (256 of 4096 ids), so it produces split
 * and broken characters: every piece must still be valid UTF-8, and the pieces
 * together must equal the whole raw text filtered in one go. */
static void test_generate_pieces_are_whole_characters(void)
{
    lb_gen_params g = lb_gen_default_params();
    g.max_tokens = 160;
    g.stop_at_eog = false;
    g.sampler.temperature = 3.0f;
    g.sampler.top_k = 0;
    g.sampler.top_p = 1.0f;
    g.sampler.min_p = 0.0f;
    g.sampler.seed = 7;
    text t = {0};
    lb_gen_stats st;
    CHECK(lb_generate(session, "The driver", &g, collect, &t, &st) == LB_OK);
    CHECK(t.bad_utf8 == 0);
    CHECK(st.n_gen == 160);
    CHECK(!strcmp(st.finish_reason, "length"));
    CHECK(t.events - t.flushes == st.n_gen);
    CHECK(t.flushes <= 1);
}

static void test_generate_stop_string(void)
{
    lb_gen_params g = lb_gen_default_params();
    g.max_tokens = 40;
    g.sampler.temperature = 0;
    g.stop_at_eog = false;
    text full = {0};
    lb_gen_stats st;
    CHECK(lb_generate(session, "The kernel", &g, collect, &full, &st) == LB_OK);
    CHECK(!strcmp(st.finish_reason, "length"));
    CHECKF(full.n > 12, "only %zu bytes generated", full.n);
    if (full.n <= 12)
        return;
    /* A stop string taken from the middle of the greedy text: the same text up to it, and no more. */
    char stop_buf[8];
    size_t at = full.n / 2;
    while (at < full.n && ((unsigned char)full.buf[at] & 0xC0) == 0x80)
        at++;
    memcpy(stop_buf, full.buf + at, 5);
    stop_buf[5] = '\0';
    const char *stops[] = {"never appears", stop_buf};
    g.stop = stops;
    g.n_stop = 2;
    text cut = {0};
    CHECK(lb_generate(session, "The kernel", &g, collect, &cut, &st) == LB_OK);
    CHECK(!strcmp(st.finish_reason, "stop"));
    const char *first = strstr(full.buf, stop_buf);
    CHECKF(first && cut.n == (size_t)(first - full.buf) && !memcmp(cut.buf, full.buf, cut.n),
           "cut at %zu, expected %td", cut.n, first ? first - full.buf : -1);
    CHECK(st.n_gen < 40);
    CHECK(cut.flushes == 0);
}

static void test_generate_cancel_and_eog(void)
{
    lb_gen_params g = lb_gen_default_params();
    g.max_tokens = 30;
    g.sampler.temperature = 0;
    text t = {0};
    t.cancel_after = 3;
    lb_gen_stats st;
    CHECK(lb_generate(session, "The kernel", &g, collect, &t, &st) == LB_ERR_CANCELLED);
    CHECK(!strcmp(st.finish_reason, "cancelled"));
    CHECK(st.n_gen == 3 && t.events == 3);
    /* A held-back stop prefix at max_tokens comes out in the flush event. */
    text full = {0};
    g.max_tokens = 8;
    g.stop_at_eog = false;
    CHECK(lb_generate(session, "The kernel", &g, collect, &full, &st) == LB_OK);
    if (full.n >= 2) {
        char tail[3] = {full.buf[full.n - 1], 'Q', 0};   /* the last char plus one that never follows */
        const char *stops[] = {tail};
        g.stop = stops;
        g.n_stop = 1;
        text held = {0};
        CHECK(lb_generate(session, "The kernel", &g, collect, &held, &st) == LB_OK);
        CHECK(!strcmp(st.finish_reason, "length"));
        CHECK(held.flushes == 1 && held.last_token == -1);
        CHECK(held.n == full.n && !memcmp(held.buf, full.buf, full.n));
    }
}

int main(void)
{
    RUN(test_split_character_held_back);
    RUN(test_invalid_bytes_become_replacement);
    RUN(test_stop_string_spanning_pieces);
    RUN(test_held_prefix_flushed_at_end);
    RUN(test_earliest_stop_wins);
    lb_status st = lb_model_load(check_shared("models/techdocs-28M-Q4_K_M.gguf"), NULL, &model);
    CHECKF(st == LB_OK, "load: %s", lb_last_load_error());
    if (st == LB_OK) {
        lb_session_params sp = lb_session_default_params();
        sp.n_ctx = 256;
        sp.n_threads = 2;
        CHECK(lb_session_new(model, &sp, &session) == LB_OK);
        if (session) {
            RUN(test_emoji_from_byte_tokens);
            RUN(test_generate_pieces_are_whole_characters);
            RUN(test_generate_stop_string);
            RUN(test_generate_cancel_and_eog);
        }
    }
    lb_session_free(session);
    lb_model_free(model);
    return check_done();
}
