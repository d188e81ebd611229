#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "backup.h"
#include "crypto.h"
#include "parse.h"
#include "state.h"

/* the associated data binds a blob to its format and to vault or Managed HSM */
#define AAD_VAULT "akv-emulator key backup 1 vault"
#define AAD_MHSM "akv-emulator key backup 1 mhsm"

static int secret(struct emu_world *w)
{
	if (!w->backup_key_set) {
		if (emu_random(w->backup_key, sizeof(w->backup_key)))
			return -1;
		w->backup_key_set = true;
	}
	return 0;
}

char *emu_backup_seal(struct emu_world *w, bool mhsm, const struct emu_key *k)
{
	const char *aad = mhsm ? AAD_MHSM : AAD_VAULT;
	cJSON *j;
	char *text, *blob = NULL;
	uint8_t *sealed;
	size_t n;

	if (secret(w))
		return NULL;
	j = emu_state_key_json(k);
	text = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (!text)
		return NULL;
	if (emu_aead_seal(w->backup_key, (const uint8_t *)aad, strlen(aad), (const uint8_t *)text,
			  strlen(text), &sealed, &n) == 0) {
		blob = emu_b64url_encode(sealed, n);
		free(sealed);
	}
	OPENSSL_clear_free(text, strlen(text));
	return blob;
}

struct emu_key *emu_backup_open(struct emu_world *w, bool mhsm, const char *blob)
{
	const char *aad = mhsm ? AAD_MHSM : AAD_VAULT;
	uint8_t *raw, *plain = NULL;
	size_t n, pn = 0;
	struct emu_key *k = NULL;
	cJSON *j;

	if (!w->backup_key_set || !(raw = emu_b64url_decode(blob, &n)))
		return NULL;
	if (emu_aead_open(w->backup_key, (const uint8_t *)aad, strlen(aad), raw, n, &plain, &pn) == 0) {
		if ((j = cJSON_ParseWithLength((const char *)plain, pn))) {
			k = emu_state_key_from(j);
			cJSON_Delete(j);
		}
		OPENSSL_clear_free(plain, pn);
	}
	free(raw);
	return k;
}
