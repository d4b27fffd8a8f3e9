/* The terminal progress bar: formats one line of at most LINE_MAX_CHARS and
 * rewrites it in place with a carriage return. */
#include "base/progress.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"

#define REDRAW_MS 100.0
#define BAR_CELLS 24
#define LINE_MAX_CHARS 100

lb_progress_params lb_progress_default_params(void)
{
    lb_progress_params p = {NULL, 0.0, NULL, false, NULL, -1};
    return p;
}

void lb_progress_start(lb_progress *pr, const lb_progress_params *p)
{
    memset(pr, 0, sizeof *pr);
    pr->p = p ? *p : lb_progress_default_params();
    if (!pr->p.out)
        pr->p.out = stderr;
    if (pr->p.total < 0)
        pr->p.total = 0;
    snprintf(pr->label, sizeof pr->label, "%s", pr->p.label ? pr->p.label : "");
    pr->p.label = NULL;   /* the copy in label is used from now on */
    pr->tty = pr->p.tty >= 0 ? pr->p.tty != 0 : isatty(fileno(pr->p.out)) != 0;
    pr->t0 = lb_time_ms();
    pr->t_drawn = -1e30;
    pr->active = true;
}

void lb_progress_note(lb_progress *pr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pr->note, sizeof pr->note, fmt, ap);
    va_end(ap);
}

static double fraction(const lb_progress *pr)
{
    double f = pr->p.total > 0 ? pr->done / pr->p.total : pr->done;
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

/* An amount in the bar's unit: bytes get binary prefixes, anything else a
 * plain number. */
static void amount(char *buf, size_t cap, const char *unit, double v)
{
    if (unit && strcmp(unit, "B") == 0) {
        static const char *pre[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        int i = 0;
        while (v >= 1024.0 && i < 4) {
            v /= 1024.0;
            i++;
        }
        snprintf(buf, cap, i == 0 ? "%.0f %s" : "%.1f %s", v, pre[i]);
    } else {
        bool whole = v < 1e15 && v == (double)(long long)v;
        snprintf(buf, cap, whole ? "%.0f%s%s" : "%.2f%s%s", v, unit ? " " : "", unit ? unit : "");
    }
}

static void duration(char *buf, size_t cap, double s)
{
    if (s < 60)
        snprintf(buf, cap, "%.1fs", s);
    else if (s < 3600)
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

/* Appends printf output to line at *len, never beyond LINE_MAX_CHARS. */
static void add(char *line, int *len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void add(char *line, int *len, const char *fmt, ...)
{
    if (*len >= LINE_MAX_CHARS)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line + *len, (size_t)(LINE_MAX_CHARS + 1 - *len), fmt, ap);
    va_end(ap);
    if (k > 0)
        *len = *len + k > LINE_MAX_CHARS ? LINE_MAX_CHARS : *len + k;
}

/* The text after the label: bar or summary, amounts, rate, ETA or elapsed
 * time, note. */
static int format_line(const lb_progress *pr, char *line, bool with_bar, bool final)
{
    const double f = fraction(pr), elapsed = (lb_time_ms() - pr->t0) * 1e-3;
    int len = 0;
    line[0] = '\0';
    if (pr->label[0])
        add(line, &len, "%s ", pr->label);
    if (with_bar) {
        char bar[BAR_CELLS + 1];
        int full = (int)(f * BAR_CELLS + 0.5);
        for (int i = 0; i < BAR_CELLS; i++)
            bar[i] = i < full ? '#' : '.';
        bar[BAR_CELLS] = '\0';
        add(line, &len, "[%s] ", bar);
    }
    add(line, &len, "%3.0f%%", f * 100.0);
    char a[32], b[32];
    if (pr->p.total > 0 && pr->p.unit) {
        amount(a, sizeof a, pr->p.unit, pr->done);
        amount(b, sizeof b, pr->p.unit, pr->p.total);
        add(line, &len, " %s/%s", a, b);
        if (elapsed > 0.2) {
            amount(a, sizeof a, pr->p.unit, pr->done / elapsed);
            add(line, &len, " %s/s", a);
        }
    }
    if (final) {
        duration(a, sizeof a, elapsed);
        add(line, &len, " in %s", a);
    } else if (f > 0.0 && f < 1.0 && elapsed > 0.5) {
        duration(a, sizeof a, elapsed * (1.0 - f) / f);
        add(line, &len, " ETA %s", a);
    }
    if (pr->note[0])
        add(line, &len, " %s", pr->note);
    return len;
}

static void draw(lb_progress *pr, bool final)
{
    char line[LINE_MAX_CHARS + 1];
    int len = format_line(pr, line, true, final);
    /* Blank whatever the previous, longer line left behind. */
    int pad = pr->width > len ? pr->width - len : 0;
    fprintf(pr->p.out, "\r%s%*s", line, pad, "");
    fflush(pr->p.out);
    pr->width = len;
    pr->draws++;
    pr->t_drawn = lb_time_ms();
    pr->drawn_full = fraction(pr) >= 1.0;
}

void lb_progress_update(lb_progress *pr, double done)
{
    if (!pr->active)
        return;
    pr->done = done;
    if (!pr->tty)
        return;
    const double now = lb_time_ms();
    const bool full = fraction(pr) >= 1.0;
    if (now - pr->t_drawn >= REDRAW_MS || (full && !pr->drawn_full))
        draw(pr, false);
}

void lb_progress_finish(lb_progress *pr, bool keep)
{
    if (!pr->active)
        return;
    pr->active = false;
    if (pr->tty) {
        if (keep) {
            draw(pr, true);
            fputc('\n', pr->p.out);
        } else if (pr->draws > 0) {
            fprintf(pr->p.out, "\r%*s\r", pr->width, "");
        }
        fflush(pr->p.out);
    } else if (pr->p.summary) {
        char line[LINE_MAX_CHARS + 1];
        format_line(pr, line, false, true);
        fprintf(pr->p.out, "%s\n", line);
        fflush(pr->p.out);
    }
}
