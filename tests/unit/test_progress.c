/* Tests of the progress bar: nothing on a non-terminal unless a summary is
 * asked for, throttled redraws on a terminal, the final line and its
 * erasure, and the formatting of amounts. */
#include <time.h>

#include "base/progress.h"
#include "check.h"

/* Runs the bar against a temporary file and returns what it wrote. */
static char captured[8192];
static FILE *open_capture(void)
{
    FILE *f = tmpfile();
    CHECK(f != NULL);
    return f;
}
static const char *read_capture(FILE *f)
{
    fflush(f);
    rewind(f);
    size_t n = fread(captured, 1, sizeof captured - 1, f);
    captured[n] = '\0';
    fclose(f);
    return captured;
}

static int count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_not_a_tty(void)
{
    FILE *f = open_capture();
    lb_progress_params p = lb_progress_default_params();
    p.out = f;
    p.tty = 0;
    p.label = "loading";
    p.total = 100;
    lb_progress pr;
    lb_progress_start(&pr, &p);
    for (int i = 0; i <= 100; i++)
        lb_progress_update(&pr, i);
    lb_progress_finish(&pr, true);
    CHECK(read_capture(f)[0] == '\0');

    f = open_capture();
    p.out = f;
    p.summary = true;
    p.unit = "B";
    p.total = 3.0 * 1024 * 1024 * 1024;
    lb_progress_start(&pr, &p);
    lb_progress_update(&pr, p.total);
    lb_progress_note(&pr, "ppl %.2f", 8.4123);
    lb_progress_finish(&pr, false);
    lb_progress_update(&pr, 5);   /* ignored after finish */
    lb_progress_finish(&pr, true);
    const char *out = read_capture(f);
    CHECKF(count_char(out, '\n') == 1 && strchr(out, '\r') == NULL, "%s", out);
    CHECKF(strncmp(out, "loading 100% 3.0 GiB/3.0 GiB", 28) == 0, "%s", out);
    CHECKF(strstr(out, " in ") && strstr(out, "ppl 8.41\n"), "%s", out);
}

static void test_tty_throttled(void)
{
    FILE *f = open_capture();
    lb_progress_params p = lb_progress_default_params();
    p.out = f;
    p.tty = 1;
    p.label = "perplexity";
    p.total = 1000;
    p.unit = "chunks";
    lb_progress pr;
    lb_progress_start(&pr, &p);
    for (int i = 0; i < 999; i++)   /* far faster than 10 per second */
        lb_progress_update(&pr, i);
    int after_burst = pr.draws;
    sleep_ms(120);
    lb_progress_update(&pr, 999);
    int after_sleep = pr.draws;
    lb_progress_update(&pr, 1000);   /* reaching the total always shows */
    lb_progress_update(&pr, 1000);   /* but only once */
    int at_end = pr.draws;
    lb_progress_finish(&pr, true);
    const char *out = read_capture(f);
    CHECKF(after_burst == 1, "%d draws in a burst", after_burst);
    CHECK(after_sleep == 2);
    CHECK(at_end == 3);
    CHECK(count_char(out, '\r') == 4 && count_char(out, '\n') == 1);
    const char *last = strrchr(out, '\r') + 1;
    CHECKF(strncmp(last, "perplexity [########################] 100% 1000 chunks/1000 chunks", 66) == 0, "%s", last);
    /* Every drawn line fits in 100 columns. */
    for (const char *s = out; (s = strchr(s, '\r')); s++) {
        size_t n = strcspn(s + 1, "\r\n");
        CHECKF(n <= 100, "line of %zu chars", n);
    }
}

static void test_tty_clear_and_fraction(void)
{
    FILE *f = open_capture();
    lb_progress_params p = lb_progress_default_params();
    p.out = f;
    p.tty = 1;
    p.label = "a label much longer than the space a label gets on the line, cut";
    lb_progress pr;
    lb_progress_start(&pr, &p);
    lb_progress_update(&pr, 0.5);   /* total 0: a fraction */
    lb_progress_finish(&pr, false);
    const char *out = read_capture(f);
    CHECKF(strstr(out, "[############............]  50%") != NULL, "%s", out);
    CHECK(strstr(out, ", cut") == NULL);
    /* Erased: the last thing written is spaces then a carriage return. */
    size_t n = strlen(out);
    CHECK(n > 2 && out[n - 1] == '\r' && out[n - 2] == ' ' && strchr(out, '\n') == NULL);

    /* Finish without any draw writes nothing. */
    f = open_capture();
    p.out = f;
    lb_progress_start(&pr, &p);
    lb_progress_finish(&pr, false);
    CHECK(read_capture(f)[0] == '\0');
}

int main(void)
{
    RUN(test_not_a_tty);
    RUN(test_tty_throttled);
    RUN(test_tty_clear_and_fraction);
    return check_done();
}
