/*
 * keys_manage.h: the keys API calls a CMK operator makes besides using a key:
 * rotation policy (GET/PUT /keys/{name}/rotationpolicy), backup, restore,
 * import (BYOK), Managed HSM random bytes, and the answer to the operations
 * the emulator leaves out (docs/emulator.md). Each answers one request in
 * c->rep; world->lock held on entry and exit. Import releases it while it
 * validates the key, and set_policy while a policy's due rotation makes key
 * material (lifecycle.h), so neither holds up other requests.
 */
#ifndef EMU_KEYS_MANAGE_H
#define EMU_KEYS_MANAGE_H

#include "keys_ctx.h"

void emu_km_get_policy(struct emu_kctx *c);
void emu_km_set_policy(struct emu_kctx *c);
void emu_km_backup(struct emu_kctx *c);
void emu_km_restore(struct emu_kctx *c);
void emu_km_import(struct emu_kctx *c);
void emu_km_rng(struct emu_kctx *c);
void emu_km_unsupported(struct emu_kctx *c);

#endif
