/*
 * import.h: bring your own key (PUT /keys/{name}): a JSON Web Key with its
 * private part becomes a key version. RSA needs n, e, d, p, q, dp, dq, qi
 * (on a vault and a Managed HSM); oct needs k and is Managed HSM only.
 * Sizes are checked before any arithmetic: an RSA modulus Azure refuses
 * (other than 2048, 3072 or 4096 bits) is refused without validating the
 * key, which for 16,384 bits takes half a minute. A BYOK transfer blob
 * (key.t, wrapped for an HSM's key exchange key) is refused as unsupported.
 * No lock needed: the caller releases world->lock around it.
 */
#ifndef EMU_IMPORT_H
#define EMU_IMPORT_H

#include "emu.h"

enum emu_import_rc {
	EMU_IMPORT_OK,
	EMU_IMPORT_BAD_KEY,    /* malformed or inconsistent JWK: 400 BadParameter */
	EMU_IMPORT_BAD_KTY,    /* a key type this host does not hold: 400 KeyTypeNotSupported */
	EMU_IMPORT_TRANSFER,   /* a BYOK transfer blob (key.t): 400 OperationNotSupported */
};

/*
 * emu_import_jwk makes a new version (not attached, no dates) from jwk on a
 * vault or (mhsm) Managed HSM; hsm asks for an HSM-protected key on a vault.
 * Returns an enum emu_import_rc, with the reason in err.
 */
int emu_import_jwk(const cJSON *jwk, bool mhsm, bool hsm, struct emu_version **out, char *err, size_t errlen);

#endif
