/*
 * store.h: vaults, Managed HSMs, keys and key versions in memory.
 *
 * Every function here expects world->lock held, except emu_version_generate,
 * which makes key material (slow for RSA-4096) and touches no shared state.
 */
#ifndef EMU_STORE_H
#define EMU_STORE_H

#include "emu.h"

/* emu_store_vault finds a vault (mhsm false) or Managed HSM by name, or NULL. */
struct emu_vault *emu_store_vault(struct emu_world *w, bool mhsm, const char *name);

/* emu_store_add_vault returns the named vault, adding it if new; NULL on ENOMEM. */
struct emu_vault *emu_store_add_vault(struct emu_world *w, bool mhsm, const char *name);

/*
 * emu_store_recovery_level is the recoveryLevel that v's soft-delete settings
 * give its keys: "Recoverable" with purge protection, "Recoverable+Purgeable"
 * without, each with "Customized" in front when retention is under 90 days.
 */
const char *emu_store_recovery_level(const struct emu_vault *v);

/* emu_store_key finds a key by name (case-insensitive, as Key Vault), deleted or not. */
struct emu_key *emu_store_key(struct emu_vault *v, const char *name);

/* emu_store_add_key adds an empty key; NULL on ENOMEM. */
struct emu_key *emu_store_add_key(struct emu_vault *v, const char *name);

/* emu_store_put_key adds the made key k to v (takes ownership); -1 on ENOMEM. */
int emu_store_put_key(struct emu_vault *v, struct emu_key *k);

/* emu_store_free_key frees a key on no vault's list, with its versions. */
void emu_store_free_key(struct emu_key *k);

/* emu_store_remove_key removes k from v and frees it (purge). */
void emu_store_remove_key(struct emu_vault *v, struct emu_key *k);

/*
 * emu_store_resolve returns the version named version (case-insensitive) or,
 * for "", the newest version, enabled or not: Azure keeps a disabled current
 * version current, and a versionless request to it gets 403. NULL if none.
 */
struct emu_version *emu_store_resolve(struct emu_key *k, const char *version);

/* emu_store_latest returns the newest version, or NULL. */
struct emu_version *emu_store_latest(const struct emu_key *k);

/* emu_store_attach appends v to k (takes ownership); -1 on ENOMEM. */
int emu_store_attach(struct emu_key *k, struct emu_version *v);

/*
 * emu_version_generate makes a new enabled version with fresh key material:
 * RSA of bits with exponent e, or an AES key of bits. NULL on failure.
 */
struct emu_version *emu_version_generate(enum emu_kty kty, int bits, unsigned long e, unsigned ops);

void emu_version_free(struct emu_version *v);

const char *emu_kty_name(enum emu_kty kty);
/* emu_kty_parse returns 0 and sets *kty for "RSA", "RSA-HSM", "oct-HSM"; -1 otherwise. */
int emu_kty_parse(const char *s, enum emu_kty *kty);

/* emu_kop_parse returns the emu_kop bit for a key_ops name, or 0. */
unsigned emu_kop_parse(const char *s);
const char *emu_kop_name(unsigned bit);

/* The key_ops a new key gets when the request names none. */
unsigned emu_kops_default(enum emu_kty kty);

#endif
