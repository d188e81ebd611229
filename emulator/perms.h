/*
 * perms.h: principals and their permissions on vaults, Managed HSMs and keys.
 *
 * A principal has default permissions, vault-scope entries ("vault/NAME",
 * "mhsm/NAME") and key-scope entries ("vault/NAME/KEY"). The most specific
 * entry wins. Changing a vault-scope entry also changes every key-scope entry
 * under it, so revoking at the vault always takes effect. Callers hold
 * world->lock, except for the config loader, which runs before serving.
 */
#ifndef EMU_PERMS_H
#define EMU_PERMS_H

#include "emu.h"

/*
 * emu_perm_parse_list parses names separated by spaces or commas ("all" or
 * "*" for every one) into *out. Returns 0, or -1 naming the bad word in bad.
 */
int emu_perm_parse_list(const char *s, unsigned *out, char *bad, size_t badlen);

/* emu_perm_name returns the name of one permission bit ("unwrapKey"). */
const char *emu_perm_name(unsigned bit);

/* emu_perm_json returns the names of the bits in perms as a JSON array. */
cJSON *emu_perm_json(unsigned perms);

/* emu_scope writes the scope string for a vault or key (key may be NULL). */
void emu_scope(char *out, size_t cap, bool mhsm, const char *vault, const char *key);

struct emu_principal *emu_principal_find(struct emu_world *w, const char *id);

/* emu_principal_add adds a principal with every default permission; NULL on error. */
struct emu_principal *emu_principal_add(struct emu_world *w, const char *id);

/* emu_grant_put sets the entry for scope to perms exactly; -1 on ENOMEM. */
int emu_grant_put(struct emu_principal *p, const char *scope, unsigned perms);

/* emu_perms_effective returns what p may do on vault (and key, if not NULL). */
unsigned emu_perms_effective(const struct emu_principal *p, bool mhsm, const char *vault,
			     const char *key);

/*
 * emu_perms_change grants (grant true) or revokes bits for p on a vault or,
 * with key, one key. Returns 0 or -1 on ENOMEM.
 */
int emu_perms_change(struct emu_principal *p, bool mhsm, const char *vault, const char *key,
		     unsigned bits, bool grant);

#endif
