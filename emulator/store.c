#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "store.h"

static const char *const kop_names[] = {
	"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export",
};

unsigned emu_kop_parse(const char *s)
{
	for (unsigned i = 0; i < sizeof(kop_names) / sizeof(kop_names[0]); i++)
		if (strcmp(s, kop_names[i]) == 0)
			return 1u << i;
	return 0;
}

const char *emu_kop_name(unsigned bit)
{
	for (unsigned i = 0; i < sizeof(kop_names) / sizeof(kop_names[0]); i++)
		if (bit == 1u << i)
			return kop_names[i];
	return "";
}

unsigned emu_kops_default(enum emu_kty kty)
{
	unsigned ops = EMU_KOP_ENCRYPT | EMU_KOP_DECRYPT | EMU_KOP_WRAP | EMU_KOP_UNWRAP;

	return kty == EMU_KTY_OCT_HSM ? ops : ops | EMU_KOP_SIGN | EMU_KOP_VERIFY;
}

const char *emu_kty_name(enum emu_kty kty)
{
	switch (kty) {
	case EMU_KTY_RSA: return "RSA";
	case EMU_KTY_RSA_HSM: return "RSA-HSM";
	case EMU_KTY_OCT_HSM: return "oct-HSM";
	}
	return "";
}

int emu_kty_parse(const char *s, enum emu_kty *kty)
{
	if (strcmp(s, "RSA") == 0)
		*kty = EMU_KTY_RSA;
	else if (strcmp(s, "RSA-HSM") == 0)
		*kty = EMU_KTY_RSA_HSM;
	else if (strcmp(s, "oct-HSM") == 0)
		*kty = EMU_KTY_OCT_HSM;
	else
		return -1;
	return 0;
}

struct emu_vault *emu_store_vault(struct emu_world *w, bool mhsm, const char *name)
{
	for (size_t i = 0; i < w->nvaults; i++)
		if (w->vaults[i]->mhsm == mhsm && strcasecmp(w->vaults[i]->name, name) == 0)
			return w->vaults[i];
	return NULL;
}

struct emu_vault *emu_store_add_vault(struct emu_world *w, bool mhsm, const char *name)
{
	struct emu_vault *v = emu_store_vault(w, mhsm, name), **grown;

	if (v)
		return v;
	if (strlen(name) >= sizeof(v->name))
		return NULL;
	grown = realloc(w->vaults, (w->nvaults + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	w->vaults = grown;
	v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	strcpy(v->name, name);
	v->mhsm = mhsm;
	v->retention_days = EMU_RETENTION_DEFAULT;
	v->window_ms = EMU_THROTTLE_WINDOW_MS;
	v->retry_style = EMU_RETRY_SECONDS;
	w->vaults[w->nvaults++] = v;
	return v;
}

struct emu_key *emu_store_key(struct emu_vault *v, const char *name)
{
	for (size_t i = 0; i < v->nkeys; i++)
		if (strcasecmp(v->keys[i]->name, name) == 0)
			return v->keys[i];
	return NULL;
}

int emu_store_put_key(struct emu_vault *v, struct emu_key *k)
{
	struct emu_key **grown = realloc(v->keys, (v->nkeys + 1) * sizeof(*grown));

	if (!grown)
		return -1;
	v->keys = grown;
	v->keys[v->nkeys++] = k;
	return 0;
}

struct emu_key *emu_store_add_key(struct emu_vault *v, const char *name)
{
	struct emu_key *k;

	if (strlen(name) >= sizeof(k->name) || !(k = calloc(1, sizeof(*k))))
		return NULL;
	strcpy(k->name, name);
	if (emu_store_put_key(v, k)) {
		free(k);
		return NULL;
	}
	return k;
}

void emu_store_free_key(struct emu_key *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->nv; i++)
		emu_version_free(k->v[i]);
	free(k->v);
	free(k);
}

void emu_store_remove_key(struct emu_vault *v, struct emu_key *k)
{
	for (size_t i = 0; i < v->nkeys; i++) {
		if (v->keys[i] != k)
			continue;
		memmove(&v->keys[i], &v->keys[i + 1], (v->nkeys - i - 1) * sizeof(*v->keys));
		v->nkeys--;
		break;
	}
	emu_store_free_key(k);
}

struct emu_version *emu_store_latest(const struct emu_key *k)
{
	return k->nv ? k->v[k->nv - 1] : NULL;
}

struct emu_version *emu_store_resolve(struct emu_key *k, const char *version)
{
	/* as in Azure, a disabled current version stays current: callers answer 403 */
	if (!version || !*version)
		return emu_store_latest(k);
	for (size_t i = 0; i < k->nv; i++)
		if (strcasecmp(k->v[i]->id, version) == 0)
			return k->v[i];
	return NULL;
}

int emu_store_attach(struct emu_key *k, struct emu_version *v)
{
	struct emu_version **grown = realloc(k->v, (k->nv + 1) * sizeof(*grown));

	if (!grown)
		return -1;
	k->v = grown;
	k->v[k->nv++] = v;
	return 0;
}

struct emu_version *emu_version_generate(enum emu_kty kty, int bits, unsigned long e, unsigned ops)
{
	struct emu_version *v = calloc(1, sizeof(*v));

	if (!v || emu_random_hex(v->id, EMU_VERSION_LEN / 2))
		goto fail;
	v->kty = kty;
	v->bits = bits;
	v->ops = ops;
	v->enabled = true;
	v->created = v->updated = emu_now();
	if (kty == EMU_KTY_OCT_HSM) {
		v->aes_len = (size_t)bits / 8;
		if (v->aes_len > sizeof(v->aes) || emu_random(v->aes, v->aes_len))
			goto fail;
	} else if (emu_rsa_generate(bits, e, &v->pkey)) {
		goto fail;
	}
	return v;
fail:
	emu_version_free(v);
	return NULL;
}

void emu_version_free(struct emu_version *v)
{
	if (!v)
		return;
	EVP_PKEY_free(v->pkey);
	cJSON_Delete(v->tags);
	OPENSSL_cleanse(v, sizeof(*v));
	free(v);
}

const char *emu_store_recovery_level(const struct emu_vault *v)
{
	bool custom = v->retention_days < EMU_RETENTION_DEFAULT;

	if (v->purge_protection)
		return custom ? "CustomizedRecoverable" : "Recoverable";
	return custom ? "CustomizedRecoverable+Purgeable" : "Recoverable+Purgeable";
}
