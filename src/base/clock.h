/* Monotonic wall-clock time for timing, throttling and timeouts (never the
 * calendar time: it must not jump when the system clock is set). */
#ifndef LB_BASE_CLOCK_H
#define LB_BASE_CLOCK_H

#include <stdint.h>

/* Milliseconds since an arbitrary fixed point (boot, or page load under
 * WebAssembly), with sub-microsecond resolution natively.  Only differences
 * are meaningful. */
double lb_time_ms(void);

/* The same clock in integer nanoseconds, for measuring very short intervals. */
uint64_t lb_time_ns(void);

#endif
