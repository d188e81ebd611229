/*
 * lifecycle.h: what happens to keys as the emulator's clock passes, the
 * service's own doing rather than a client's: soft-deleted keys are purged
 * when their retention ends, rotation policies rotate keys and log their
 * Notify. Runs lazily, before each keys request and after the admin moves
 * the clock, so it needs no timer thread. world->lock held on entry and exit.
 */
#ifndef EMU_LIFECYCLE_H
#define EMU_LIFECYCLE_H

#include "emu.h"

/* At most this many versions one key gets from catching up on a clock jump. */
#define EMU_CATCH_UP_MAX 100

/*
 * emu_lifecycle_stamp dates a new version of k made at time at: created and
 * updated, and exp from the key's policy expiryTime if it has one.
 */
void emu_lifecycle_stamp(const struct emu_key *k, struct emu_version *v, int64_t at);

/*
 * emu_lifecycle_tick brings every key up to the clock: each rotation the
 * policy asked for in the meantime happens (dated when it was due), and each
 * deleted key past its scheduledPurgeDate is purged. Returns true if
 * anything changed (the caller saves the state).
 *
 * Key generation (RSA-4096 takes up to seconds, and a jump over many periods
 * makes many versions) runs with world->lock released, so every other
 * request is served meanwhile; the caller must hold no pointer into the
 * store across the call (vaults and principals stay). One thread makes the
 * rotations at a time: a tick that finds another at it leaves the rotations
 * to that one, and a request meanwhile sees the key as it was.
 */
bool emu_lifecycle_tick(struct emu_world *w);

#endif
