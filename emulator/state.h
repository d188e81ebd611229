/*
 * state.h: --state FILE persistence of vaults, keys and versions.
 *
 * The file is JSON and holds private key material (mode 0600), the clock's
 * offset, the secret that seals key backups, the key that signs access
 * tokens and each principal's token generation. It is written
 * whole after every change: a temp file in the same directory, fsync, rename,
 * then fsync of the directory, so a crash at any point leaves either the old
 * or the new state, never a torn one.
 */
#ifndef EMU_STATE_H
#define EMU_STATE_H

#include "emu.h"

/*
 * emu_state_key_json / emu_state_key_from: one key with every version, its
 * private material and its rotation policy, as the state file and key
 * backups hold it. key_from returns a key on no vault's list, or NULL.
 */
cJSON *emu_state_key_json(const struct emu_key *k);
struct emu_key *emu_state_key_from(const cJSON *ko);

/* emu_state_save writes the state file (world->lock held). 0 (also with no --state), or -1. */
int emu_state_save(struct emu_world *w);

/*
 * emu_state_load reads the state file if it exists, adding its vaults and
 * keys. Returns 0 (also when there is no file yet) or -1 with a reason in err.
 */
int emu_state_load(struct emu_world *w, char *err, size_t errlen);

#endif
