/*
 * clock.h: the emulator's clock, real time plus an offset that the admin
 * endpoint moves forward (POST /admin/clock), so a test sees a 90-day
 * rotation, an exp passing or a retention period ending without waiting.
 *
 * emu_now() (emu.h) reads it: created/updated, nbf/exp, deleted and purge
 * dates, rotation policies. Two things stay on real time, because the other
 * side measures them with its own clock: token lifetimes (emu_clock_real; a
 * client refreshes by expires_in/expires_on on its clock, so a token that
 * died when the emulator's clock jumped is a failure no real client meets)
 * and the throttle window and injected latency (emu_now_ms, about the rate a
 * client really sends).
 */
#ifndef EMU_CLOCK_H
#define EMU_CLOCK_H

#include <stdint.h>

/* The most one POST /admin/clock may move the clock: 100 years. */
#define EMU_CLOCK_STEP_MAX (100LL * 366 * 86400)

/* emu_clock_real returns real unix seconds, for what stays on real time. */
int64_t emu_clock_real(void);

/* emu_clock_offset returns how many seconds the clock is ahead of real time. */
int64_t emu_clock_offset(void);

/* emu_clock_set_offset sets the offset (from --state at startup); negative is taken as 0. */
void emu_clock_set_offset(int64_t seconds);

/*
 * emu_clock_advance moves the clock forward by seconds (0..EMU_CLOCK_STEP_MAX).
 * The clock never goes back: a key's created date stays in its past. 0, or -1
 * if seconds is out of range.
 */
int emu_clock_advance(int64_t seconds);

#endif
