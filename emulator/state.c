#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "clock.h"
#include "crypto.h"
#include "parse.h"
#include "perms.h"
#include "rotation.h"
#include "state.h"
#include "store.h"

#define STATE_FORMAT 1
#define STATE_MAX (64u << 20)

static void add_secret_b64(cJSON *o, const char *name, const uint8_t *p, size_t n)
{
	char *s = emu_b64url_encode(p, n);

	cJSON_AddStringToObject(o, name, s ? s : "");
	if (s)
		OPENSSL_cleanse(s, strlen(s));
	free(s);
}

static cJSON *version_json(const struct emu_version *v)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", v->id);
	cJSON_AddStringToObject(o, "kty", emu_kty_name(v->kty));
	cJSON_AddNumberToObject(o, "bits", v->bits);
	if (v->pkey) {
		uint8_t *der = NULL;
		size_t n = 0;

		if (emu_pkey_to_der(v->pkey, &der, &n) == 0) {
			add_secret_b64(o, "pkcs8", der, n);
			OPENSSL_clear_free(der, n);
		}
	} else {
		add_secret_b64(o, "k", v->aes, v->aes_len);
	}
	cJSON_AddNumberToObject(o, "ops", v->ops);
	cJSON_AddBoolToObject(o, "enabled", v->enabled);
	cJSON_AddNumberToObject(o, "nbf", (double)v->nbf);
	cJSON_AddNumberToObject(o, "exp", (double)v->exp);
	cJSON_AddNumberToObject(o, "created", (double)v->created);
	cJSON_AddNumberToObject(o, "updated", (double)v->updated);
	if (v->tags)
		cJSON_AddItemToObject(o, "tags", cJSON_Duplicate(v->tags, 1));
	return o;
}

cJSON *emu_state_key_json(const struct emu_key *k)
{
	cJSON *ko = cJSON_CreateObject(), *vers, *pol;

	cJSON_AddStringToObject(ko, "name", k->name);
	cJSON_AddBoolToObject(ko, "deleted", k->deleted);
	cJSON_AddNumberToObject(ko, "deleted_at", (double)k->deleted_at);
	cJSON_AddNumberToObject(ko, "purge_at", (double)k->purge_at);
	if ((pol = emu_policy_state(&k->policy)))
		cJSON_AddItemToObject(ko, "policy", pol);
	vers = cJSON_AddArrayToObject(ko, "versions");
	for (size_t n = 0; n < k->nv; n++)
		cJSON_AddItemToArray(vers, version_json(k->v[n]));
	return ko;
}

static cJSON *world_json(const struct emu_world *w)
{
	cJSON *root = cJSON_CreateObject(), *vaults = cJSON_AddArrayToObject(root, "vaults"), *gens;

	cJSON_AddNumberToObject(root, "format", STATE_FORMAT);
	cJSON_AddNumberToObject(root, "clock_offset_s", (double)emu_clock_offset());
	if (w->backup_key_set)
		add_secret_b64(root, "backup_key", w->backup_key, sizeof(w->backup_key));
	if (w->token_key_set)
		add_secret_b64(root, "token_key", w->token_key, sizeof(w->token_key));
	gens = cJSON_AddObjectToObject(root, "token_generations");
	for (size_t i = 0; i < w->nprincipals; i++)
		if (w->principals[i].token_gen)
			cJSON_AddNumberToObject(gens, w->principals[i].id, w->principals[i].token_gen);
	for (size_t i = 0; i < w->nvaults; i++) {
		const struct emu_vault *v = w->vaults[i];
		cJSON *vo = cJSON_CreateObject(), *keys = cJSON_AddArrayToObject(vo, "keys");

		cJSON_AddStringToObject(vo, "kind", v->mhsm ? "mhsm" : "vault");
		cJSON_AddStringToObject(vo, "name", v->name);
		for (size_t j = 0; j < v->nkeys; j++)
			cJSON_AddItemToArray(keys, emu_state_key_json(v->keys[j]));
		cJSON_AddItemToArray(vaults, vo);
	}
	return root;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int fsync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, rc = -1;

	if (!copy)
		return -1;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		rc = fsync(fd);
		close(fd);
	}
	free(copy);
	return rc;
}

int emu_state_save(struct emu_world *w)
{
	char tmp[sizeof(w->cfg.state) + 16];
	cJSON *root;
	char *text;
	int fd, rc = -1;

	if (!w->cfg.state[0])
		return 0;
	root = world_json(w);
	text = cJSON_Print(root);
	cJSON_Delete(root);
	if (!text)
		return -1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", w->cfg.state);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	if (write_all(fd, text, strlen(text)) || fsync(fd)) {
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, w->cfg.state)) {
		unlink(tmp);
		goto out;
	}
	fsync_dir(w->cfg.state);
	rc = 0;
out:
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	return rc;
}

static const char *str(const cJSON *o, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(f) ? f->valuestring : NULL;
}

static double num(const cJSON *o, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsNumber(f) ? f->valuedouble : 0;
}

static struct emu_version *version_from(const cJSON *o)
{
	struct emu_version *v = calloc(1, sizeof(*v));
	const char *id = str(o, "id"), *kty = str(o, "kty"), *mat;
	uint8_t *raw = NULL;
	size_t n = 0;
	const cJSON *tags;

	if (!v || !id || strlen(id) != EMU_VERSION_LEN || !kty || emu_kty_parse(kty, &v->kty))
		goto fail;
	strcpy(v->id, id);
	v->bits = (int)num(o, "bits");
	mat = str(o, v->kty == EMU_KTY_OCT_HSM ? "k" : "pkcs8");
	if (!mat || !(raw = emu_b64url_decode(mat, &n)))
		goto fail;
	if (v->kty == EMU_KTY_OCT_HSM) {
		if (n != 16 && n != 24 && n != 32)
			goto fail;
		memcpy(v->aes, raw, n);
		v->aes_len = n;
	} else if (!(v->pkey = emu_pkey_from_der(raw, n))) {
		goto fail;
	}
	OPENSSL_clear_free(raw, n);
	raw = NULL;
	v->ops = (unsigned)num(o, "ops");
	v->enabled = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "enabled"));
	v->nbf = (int64_t)num(o, "nbf");
	v->exp = (int64_t)num(o, "exp");
	v->created = (int64_t)num(o, "created");
	v->updated = (int64_t)num(o, "updated");
	tags = cJSON_GetObjectItemCaseSensitive(o, "tags");
	if (cJSON_IsObject(tags))
		v->tags = cJSON_Duplicate(tags, 1);
	return v;
fail:
	if (raw)
		OPENSSL_clear_free(raw, n);
	emu_version_free(v);
	return NULL;
}

struct emu_key *emu_state_key_from(const cJSON *ko)
{
	const char *kname = str(ko, "name");
	const cJSON *vj;
	struct emu_key *k;

	if (!kname || !emu_key_name_ok(kname) || !(k = calloc(1, sizeof(*k))))
		return NULL;
	strcpy(k->name, kname);
	k->deleted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ko, "deleted"));
	k->deleted_at = (int64_t)num(ko, "deleted_at");
	k->purge_at = (int64_t)num(ko, "purge_at");
	emu_policy_from_state(cJSON_GetObjectItemCaseSensitive(ko, "policy"), &k->policy);
	cJSON_ArrayForEach(vj, cJSON_GetObjectItemCaseSensitive(ko, "versions")) {
		struct emu_version *ver = version_from(vj);

		if (!ver || emu_store_attach(k, ver)) {
			emu_version_free(ver);
			emu_store_free_key(k);
			return NULL;
		}
	}
	return k;
}

static int load_vault(struct emu_world *w, const cJSON *vo, char *err, size_t errlen)
{
	const char *kind = str(vo, "kind"), *name = str(vo, "name");
	const cJSON *ko;
	struct emu_vault *v;

	if (!kind || !name || !(v = emu_store_add_vault(w, strcmp(kind, "mhsm") == 0, name))) {
		snprintf(err, errlen, "a vault entry is malformed");
		return -1;
	}
	cJSON_ArrayForEach(ko, cJSON_GetObjectItemCaseSensitive(vo, "keys")) {
		const char *kname = str(ko, "name");
		struct emu_key *k;

		if (kname && emu_store_key(v, kname))
			continue;
		if (!(k = emu_state_key_from(ko))) {
			snprintf(err, errlen, "key %s in %s is malformed or has an unreadable version",
				 kname ? kname : "(unnamed)", name);
			return -1;
		}
		if (emu_store_put_key(v, k)) {
			emu_store_free_key(k);
			return -1;
		}
	}
	return 0;
}

/* load_secret reads a 32-byte secret member if present; -1 if it is unreadable. */
static int load_secret(const cJSON *root, const char *name, uint8_t out[32], bool *set)
{
	const char *s = str(root, name);
	uint8_t *raw;
	size_t n = 0;

	if (!s)
		return 0;
	if (!(raw = emu_b64url_decode(s, &n)) || n != 32) {
		free(raw);
		return -1;
	}
	memcpy(out, raw, n);
	*set = true;
	OPENSSL_clear_free(raw, n);
	return 0;
}

int emu_state_load(struct emu_world *w, char *err, size_t errlen)
{
	FILE *f;
	char *text = NULL;
	long size;
	cJSON *root = NULL;
	const cJSON *vo, *gen;
	int rc = -1;

	if (!w->cfg.state[0])
		return 0;
	f = fopen(w->cfg.state, "re");
	if (!f) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "cannot open %s: %s", w->cfg.state, strerror(errno));
		return -1;
	}
	if (fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || (unsigned long)size > STATE_MAX ||
	    fseek(f, 0, SEEK_SET) || !(text = malloc((size_t)size + 1)) ||
	    fread(text, 1, (size_t)size, f) != (size_t)size) {
		snprintf(err, errlen, "cannot read %s", w->cfg.state);
		goto out;
	}
	text[size] = '\0';
	root = cJSON_Parse(text);
	if (!root || num(root, "format") != STATE_FORMAT) {
		snprintf(err, errlen, "%s is not an akv-emulator state file (format %d)", w->cfg.state,
			 STATE_FORMAT);
		goto out;
	}
	emu_clock_set_offset((int64_t)num(root, "clock_offset_s"));
	if (load_secret(root, "backup_key", w->backup_key, &w->backup_key_set) ||
	    load_secret(root, "token_key", w->token_key, &w->token_key_set)) {
		snprintf(err, errlen, "%s has an unreadable backup_key or token_key", w->cfg.state);
		goto out;
	}
	/* generations of principals the config no longer names are dropped */
	cJSON_ArrayForEach(gen, cJSON_GetObjectItemCaseSensitive(root, "token_generations")) {
		struct emu_principal *p = gen->string ? emu_principal_find(w, gen->string) : NULL;

		if (p && cJSON_IsNumber(gen) && gen->valuedouble >= 0 && gen->valuedouble <= UINT32_MAX)
			p->token_gen = (uint32_t)gen->valuedouble;
	}
	cJSON_ArrayForEach(vo, cJSON_GetObjectItemCaseSensitive(root, "vaults"))
		if (load_vault(w, vo, err, errlen))
			goto out;
	rc = 0;
out:
	fclose(f);
	if (text) {
		OPENSSL_cleanse(text, strlen(text));
		free(text);
	}
	cJSON_Delete(root);
	return rc;
}
