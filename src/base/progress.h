/* A one-line progress bar on stderr for long jobs (loading a model,
 * computing perplexity).  It draws only when its stream is a terminal, so
 * logs and pipes stay clean; redraws are limited to 10 per second. */
#ifndef LB_BASE_PROGRESS_H
#define LB_BASE_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

typedef struct lb_progress_params {
    const char *label;  /* shown before the bar ("loading model.gguf"); copied; NULL = "" */
    double total;       /* units of work (bytes, chunks); 0 = unknown: lb_progress_update gets a 0..1 fraction */
    const char *unit;   /* with total > 0: shows "done/total unit", a rate and an ETA.  "B" shows
                           sizes as KiB/MiB/GiB; NULL shows only the percentage and ETA.  Not copied. */
    bool summary;       /* when the stream is not a terminal, print one line at lb_progress_finish */
    FILE *out;          /* NULL = stderr */
    int tty;            /* -1 = ask isatty(out); 0 or 1 force it (tests, --progress flags) */
} lb_progress_params;

typedef struct lb_progress {
    lb_progress_params p;
    char label[48];
    char note[48];
    double t0, t_drawn;  /* ms (lb_time_ms) at start and at the last draw */
    double done;         /* units done, or the fraction when total is 0 */
    int width;           /* characters of the last drawn line, to blank it */
    int draws;           /* lines drawn so far */
    bool tty, active;
    bool drawn_full;     /* the last draw showed 100% */
} lb_progress;

/* Defaults: no label, unknown total, no unit, no summary, stderr, tty auto. */
lb_progress_params lb_progress_default_params(void);

/* Starts a bar (draws nothing until the first update).  pr is caller-owned
 * storage; no allocation happens, so there is nothing to free. */
void lb_progress_start(lb_progress *pr, const lb_progress_params *p);

/* Records progress: units done (or a 0..1 fraction when total is 0).  Redraws
 * at most every 100 ms, and always when the job reaches its total. */
void lb_progress_update(lb_progress *pr, double done);

/* Sets a short note shown after the bar ("ppl 8.41"); printf-style, cut to
 * fit.  Shown at the next redraw. */
void lb_progress_note(lb_progress *pr, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Ends the bar.  On a terminal, keep = true redraws it in its final state and
 * ends the line; keep = false erases it.  Not on a terminal, prints the
 * summary line ("label: 100% 1.2 GiB in 3.4 s (350 MiB/s) note") when the
 * params asked for one.  Further updates are ignored. */
void lb_progress_finish(lb_progress *pr, bool keep);

#endif
