/*
 * clock.h: the one monotonic clock of the daemon and its backends.
 *
 * Timeouts, TTLs, deadlines and latencies all read it, so they agree; it
 * never goes back when the wall clock is set.
 */
#ifndef KB_CLOCK_H
#define KB_CLOCK_H

#include <stdint.h>

/* kb_now_ms and kb_now_us read CLOCK_MONOTONIC in milliseconds and microseconds. */
int64_t kb_now_ms(void);
int64_t kb_now_us(void);

#endif
