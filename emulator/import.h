/*
 * import.h: bring your own key (PUT /keys/{name}): a JSON Web Key with its
 * private part becomes a key version. RSA needs n, e, d, p, q, dp, dq, qi
 * (on a vault and a Managed HSM); oct needs k and is Managed HSM only.
 */
#ifndef EMU_IMPORT_H
#define EMU_IMPORT_H

#include "emu.h"

enum emu_import_rc {
	EMU_IMPORT_OK,
	EMU_IMPORT_BAD_KEY,    /* malformed or inconsistent JWK: 400 BadParameter */
	EMU_IMPORT_BAD_KTY,    /* a key type this host does not hold: 400 KeyTypeNotSupported */
};

/*
 * emu_import_jwk makes a new version (not attached, no dates) from jwk on a
 * vault or (mhsm) Managed HSM; hsm asks for an HSM-protected key on a vault.
 * Returns an enum emu_import_rc, with the reason in err.
 */
int emu_import_jwk(const cJSON *jwk, bool mhsm, bool hsm, struct emu_version **out, char *err, size_t errlen);

#endif
