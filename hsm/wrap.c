/*
 * wrap.c: the backend's wrap, which doctor uses too: local for RSA keys
 * (unless local_wrap = no), on the service otherwise.
 */
#include <string.h>

#include "az.h"

const char *az_pinned(const az_key *k)
{
	return k->conf.url.version[0] ? k->conf.url.version : NULL;
}

kb_code az_wrap_op(az_key *k, int slot, const char *version, kb_alg alg, const uint8_t *pt,
		   size_t ptlen, uint8_t *ct, size_t *ctlen, char version_out[KB_VERSION_MAX + 1],
		   kb_alg *alg_out, kb_err *err)
{
	kb_alg use = alg == KB_ALG_NONE ? k->alg : alg;
	az_keymat m;
	kb_code rc = az_check_alg(k, k->rsa, use, err);

	if (rc != KB_OK)
		return rc;
	if (ptlen == 0 || ptlen > KB_SECRET_MAX)
		return kb_err_set(err, KB_E_BAD_REQUEST, "key %s wraps 1 to %d bytes, not %zu", k->name, KB_SECRET_MAX,
				  ptlen);
	if ((use == KB_ALG_A128KW || use == KB_ALG_A192KW || use == KB_ALG_A256KW) && (ptlen < 16 || ptlen % 8))
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "%s (RFC 3394) wraps a multiple of 8 bytes, at least 16, not %zu: use CKM_AES_KEY_WRAP_PAD for other sizes",
				  kb_alg_name(use), ptlen);
	if (version == NULL)
		version = az_pinned(k);
	if (k->rsa && k->conf.local_wrap) {
		rc = version && version != az_pinned(k) ? az_keymat_fetch(k, slot, version, &m, err) :
		     az_keymat_current(k, slot, &m, err);
		if (rc != KB_OK)
			return rc;
		rc = az_local_wrap(k, &m, use, pt, ptlen, ct, ctlen, err);
		if (rc == KB_OK)
			memcpy(version_out, m.version, sizeof(m.version));
		az_keymat_clear(&m);
	} else {
		rc = az_service_wrap(k, slot, version, use, pt, ptlen, ct, ctlen, version_out, err);
	}
	if (rc == KB_OK)
		*alg_out = use;
	return rc;
}
