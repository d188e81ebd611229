#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "backup.h"
#include "crypto.h"
#include "errors.h"
#include "import.h"
#include "keys_manage.h"
#include "lifecycle.h"
#include "rotation.h"
#include "store.h"

#define RNG_MAX 128 /* bytes one POST /rng returns at most, as Managed HSM */

static void policy_id(struct emu_kctx *c, const struct emu_key *k, char *out, size_t cap)
{
	snprintf(out, cap, "https://%s/keys/%s/rotationpolicy", c->rt->host, k->name);
}

void emu_km_get_policy(struct emu_kctx *c)
{
	struct emu_key *k = emu_kc_live_key(c);
	char id[EMU_HOST_MAX + EMU_NAME_MAX + 32];

	if (!k)
		return;
	policy_id(c, k, id, sizeof(id));
	emu_reply_json(c->rep, 200, emu_policy_json(&k->policy, id));
}

void emu_km_set_policy(struct emu_kctx *c)
{
	struct emu_key *k = emu_kc_live_key(c);
	struct emu_policy p = { 0 };
	char err[200], id[EMU_HOST_MAX + EMU_NAME_MAX + 32];
	cJSON *body;

	if (!k || !(body = emu_kc_parse_body(c)))
		return;
	if (emu_policy_parse(body, &p, err, sizeof(err))) {
		emu_error(c->rep, 400, "BadParameter", NULL, "%s", err);
		cJSON_Delete(body);
		return;
	}
	cJSON_Delete(body);
	p.updated = emu_now();
	p.created = k->policy.set ? k->policy.created : p.updated;
	memcpy(p.notified, k->policy.notified, sizeof(p.notified));
	k->policy = p;
	policy_id(c, k, id, sizeof(id));
	emu_reply_json(c->rep, 200, emu_policy_json(&k->policy, id));
	/*
	 * a policy whose time has already come acts now, as the service's next
	 * check would; the tick may release the lock, so k is not used after it
	 */
	emu_lifecycle_tick(c->w);
	emu_kc_persist(c);
}

void emu_km_backup(struct emu_kctx *c)
{
	struct emu_key *k = emu_kc_live_key(c);
	char *blob;
	cJSON *root;

	if (!k)
		return;
	if (!(blob = emu_backup_seal(c->w, c->mhsm, k))) {
		emu_error(c->rep, 500, "InternalError", NULL, "The backup could not be made.");
		return;
	}
	root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "value", blob);
	free(blob);
	emu_reply_json(c->rep, 200, root);
	emu_kc_persist(c); /* the backup secret, on first use */
}

void emu_km_restore(struct emu_kctx *c)
{
	cJSON *body = emu_kc_parse_body(c);
	const cJSON *value;
	struct emu_key *k;

	if (!body)
		return;
	value = cJSON_GetObjectItemCaseSensitive(body, "value");
	if (!cJSON_IsString(value)) {
		emu_error(c->rep, 400, "BadParameter", NULL, "Property 'value' (the key backup) is required.");
		goto out;
	}
	if (!(k = emu_backup_open(c->w, c->mhsm, value->valuestring)) || !k->nv) {
		emu_store_free_key(k);
		emu_error(c->rep, 400, "BadParameter", NULL,
			  "The backup blob is invalid: it is damaged, or was not made by this %s emulator.",
			  c->mhsm ? "managed HSM" : "key vault");
		goto out;
	}
	if (emu_store_key(c->v, k->name)) {
		emu_error(c->rep, 409, "Conflict", NULL,
			  "Key %s already exists (or is soft-deleted) in this %s; a backup restores only under a free name.",
			  k->name, c->mhsm ? "managed HSM" : "key vault");
		emu_store_free_key(k);
		goto out;
	}
	k->deleted = false;
	k->deleted_at = k->purge_at = 0;
	if (emu_store_put_key(c->v, k)) {
		emu_store_free_key(k);
		emu_error(c->rep, 500, "InternalError", NULL, "Out of memory.");
		goto out;
	}
	emu_reply_json(c->rep, 200, emu_kc_bundle(c, k, emu_store_latest(k)));
	emu_kc_persist(c);
out:
	cJSON_Delete(body);
}

void emu_km_import(struct emu_kctx *c)
{
	cJSON *body = emu_kc_parse_body(c);
	const cJSON *hsm;
	struct emu_version *ver = NULL;
	char err[200];
	int rc;

	if (!body)
		return;
	hsm = cJSON_GetObjectItemCaseSensitive(body, "Hsm");
	/* validating an RSA key takes a while: the others are served meanwhile */
	pthread_mutex_unlock(&c->w->lock);
	rc = emu_import_jwk(cJSON_GetObjectItemCaseSensitive(body, "key"), c->mhsm, cJSON_IsTrue(hsm), &ver,
			    err, sizeof(err));
	pthread_mutex_lock(&c->w->lock);
	if (rc == EMU_IMPORT_BAD_KTY || rc == EMU_IMPORT_TRANSFER) {
		emu_error(c->rep, 400, "BadParameter",
			  rc == EMU_IMPORT_BAD_KTY ? "KeyTypeNotSupported" : "OperationNotSupported", "%s", err);
		goto out;
	}
	if (rc != EMU_IMPORT_OK) {
		emu_error(c->rep, 400, "BadParameter", NULL, "%s", err);
		goto out;
	}
	ver->created = ver->updated = emu_now();
	emu_kc_add_version(c, body, ver);
	ver = NULL;
out:
	emu_version_free(ver);
	cJSON_Delete(body);
}

void emu_km_rng(struct emu_kctx *c)
{
	cJSON *body, *root;
	const cJSON *count;
	uint8_t buf[RNG_MAX];
	int n;

	if (!c->mhsm) {
		emu_error(c->rep, 400, "BadParameter", "OperationNotSupported",
			  "Random bytes (POST /rng) are served by Managed HSM only, not by a key vault.");
		return;
	}
	if (!(body = emu_kc_parse_body(c)))
		return;
	count = cJSON_GetObjectItemCaseSensitive(body, "count");
	n = cJSON_IsNumber(count) && count->valuedouble == (int)count->valuedouble ? count->valueint : 0;
	cJSON_Delete(body);
	if (n < 1 || n > RNG_MAX) {
		emu_error(c->rep, 400, "BadParameter", NULL, "Property 'count' must be an integer from 1 to %d.", RNG_MAX);
		return;
	}
	if (emu_random(buf, (size_t)n)) {
		emu_error(c->rep, 500, "InternalError", NULL, "The random number generator failed.");
		return;
	}
	root = cJSON_CreateObject();
	emu_kc_add_b64(root, "value", buf, (size_t)n);
	OPENSSL_cleanse(buf, sizeof(buf));
	emu_reply_json(c->rep, 200, root);
}

/* op_unsupported answers the operations left out of the emulator (docs/emulator.md). */
void emu_km_unsupported(struct emu_kctx *c)
{
	const char *path = c->rq->path ? c->rq->path : "";
	const char *last = strrchr(path, '/');

	if (last && !last[1]) /* a trailing slash */
		while (last > path && *--last != '/')
			;
	emu_error(c->rep, 400, "BadParameter", "OperationNotSupported",
		  "Operation %.*s is not supported by akv-emulator (it serves the key wrapping a CMK flow needs; see docs/emulator.md).",
		  last ? (int)strcspn(last + 1, "/") : 0, last ? last + 1 : "");
}
