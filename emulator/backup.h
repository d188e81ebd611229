/*
 * backup.h: key backups (POST /keys/{name}/backup, POST /keys/restore).
 *
 * A backup holds every version of a key with its private material and its
 * rotation policy, sealed with AES-256-GCM under a secret of this emulator
 * instance (kept in --state, so it survives a restart). It therefore
 * restores only into this emulator, and only into the kind it came from
 * (vault or Managed HSM), as Azure's restores only within its geography.
 * world->lock held.
 */
#ifndef EMU_BACKUP_H
#define EMU_BACKUP_H

#include "emu.h"

/* emu_backup_seal returns the base64url backup of k (malloc'd), or NULL. */
char *emu_backup_seal(struct emu_world *w, bool mhsm, const struct emu_key *k);

/*
 * emu_backup_open returns the key a backup holds, on no vault's list (free it
 * with emu_store_free_key), or NULL if the blob was not sealed by this
 * emulator for this kind, or is damaged.
 */
struct emu_key *emu_backup_open(struct emu_world *w, bool mhsm, const char *blob);

#endif
