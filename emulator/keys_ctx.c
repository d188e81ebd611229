#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "errors.h"
#include "keys_ctx.h"
#include "log.h"
#include "parse.h"
#include "state.h"
#include "store.h"

void emu_kid(char *out, size_t cap, const char *host, const char *name, const char *version)
{
	snprintf(out, cap, "https://%s/keys/%s%s%s", host, name, version && *version ? "/" : "",
		 version ? version : "");
}

void emu_kc_not_found(struct emu_kctx *c, bool deleted)
{
	if (deleted)
		emu_error(c->rep, 404, "KeyNotFound", NULL, "Deleted Key not found: %s", c->rt->key);
	else if (c->rt->version[0])
		emu_error(c->rep, 404, "KeyNotFound", NULL, "A key with (name/id) %s/%s was not found in this key vault.",
			  c->rt->key, c->rt->version);
	else
		emu_error(c->rep, 404, "KeyNotFound", NULL, "A key with (name/id) %s was not found in this key vault.",
			  c->rt->key);
}

cJSON *emu_kc_attrs_json(const struct emu_vault *v, const struct emu_version *ver)
{
	cJSON *a = cJSON_CreateObject();

	cJSON_AddBoolToObject(a, "enabled", ver->enabled);
	if (ver->nbf)
		cJSON_AddNumberToObject(a, "nbf", (double)ver->nbf);
	if (ver->exp)
		cJSON_AddNumberToObject(a, "exp", (double)ver->exp);
	cJSON_AddNumberToObject(a, "created", (double)ver->created);
	cJSON_AddNumberToObject(a, "updated", (double)ver->updated);
	cJSON_AddStringToObject(a, "recoveryLevel", emu_store_recovery_level(v));
	cJSON_AddNumberToObject(a, "recoverableDays", v->retention_days);
	cJSON_AddBoolToObject(a, "exportable", false);
	return a;
}

void emu_kc_add_b64(cJSON *o, const char *name, const uint8_t *p, size_t n)
{
	char *s = emu_b64url_encode(p, n);

	cJSON_AddStringToObject(o, name, s ? s : "");
	free(s);
}

void emu_kc_add_deleted(struct emu_kctx *c, cJSON *o, const struct emu_key *k)
{
	char url[EMU_HOST_MAX + EMU_NAME_MAX + 32];

	snprintf(url, sizeof(url), "https://%s/deletedkeys/%s", c->rt->host, k->name);
	cJSON_AddStringToObject(o, "recoveryId", url);
	cJSON_AddNumberToObject(o, "deletedDate", (double)k->deleted_at);
	cJSON_AddNumberToObject(o, "scheduledPurgeDate", (double)k->purge_at);
}

/* bundle renders a KeyBundle (or DeletedKeyBundle when k is deleted). */
cJSON *emu_kc_bundle(struct emu_kctx *c, const struct emu_key *k, const struct emu_version *ver)
{
	cJSON *root = cJSON_CreateObject(), *key = cJSON_AddObjectToObject(root, "key"), *ops;
	char kid[EMU_HOST_MAX + 2 * EMU_NAME_MAX + 32];

	emu_kid(kid, sizeof(kid), c->rt->host, k->name, ver->id);
	cJSON_AddStringToObject(key, "kid", kid);
	cJSON_AddStringToObject(key, "kty", emu_kty_name(ver->kty));
	ops = cJSON_AddArrayToObject(key, "key_ops");
	for (unsigned b = 1; b <= EMU_KOP_EXPORT; b <<= 1)
		if (ver->ops & b)
			cJSON_AddItemToArray(ops, cJSON_CreateString(emu_kop_name(b)));
	if (ver->pkey) {
		uint8_t *n, *e;
		size_t nl, el;

		if (emu_rsa_public(ver->pkey, &n, &nl, &e, &el) == 0) {
			emu_kc_add_b64(key, "n", n, nl);
			emu_kc_add_b64(key, "e", e, el);
			free(n);
			free(e);
		}
	}
	/* Managed HSM names an oct-HSM key's size, which has no public part to tell it */
	if (ver->kty == EMU_KTY_OCT_HSM)
		cJSON_AddNumberToObject(key, "key_size", ver->bits);
	cJSON_AddItemToObject(root, "attributes", emu_kc_attrs_json(c->v, ver));
	if (ver->tags)
		cJSON_AddItemToObject(root, "tags", cJSON_Duplicate(ver->tags, 1));
	if (k->deleted)
		emu_kc_add_deleted(c, root, k);
	return root;
}

void emu_kc_persist(struct emu_kctx *c)
{
	if (emu_state_save(c->w))
		emu_log("state: cannot write %s; changes are in memory only", c->w->cfg.state);
}

/* parse_attrs applies attributes{enabled,nbf,exp} to ver; -1 with 400 set. */
int emu_kc_parse_attrs(struct emu_kctx *c, const cJSON *attrs, struct emu_version *ver)
{
	const cJSON *f;

	if (!attrs || cJSON_IsNull(attrs))
		return 0;
	if (!cJSON_IsObject(attrs))
		goto bad;
	if ((f = cJSON_GetObjectItemCaseSensitive(attrs, "enabled")) && !cJSON_IsNull(f)) {
		if (!cJSON_IsBool(f))
			goto bad;
		ver->enabled = cJSON_IsTrue(f);
	}
	/* nbf/exp: a number sets, null clears */
	if ((f = cJSON_GetObjectItemCaseSensitive(attrs, "nbf"))) {
		if (!cJSON_IsNumber(f) && !cJSON_IsNull(f))
			goto bad;
		ver->nbf = cJSON_IsNull(f) ? 0 : (int64_t)f->valuedouble;
	}
	if ((f = cJSON_GetObjectItemCaseSensitive(attrs, "exp"))) {
		if (!cJSON_IsNumber(f) && !cJSON_IsNull(f))
			goto bad;
		ver->exp = cJSON_IsNull(f) ? 0 : (int64_t)f->valuedouble;
	}
	return 0;
bad:
	emu_error(c->rep, 400, "BadParameter", NULL, "Property 'attributes' has an invalid value.");
	return -1;
}

/* parse_ops reads key_ops into *ops (unchanged if absent); -1 with 400 set. */
int emu_kc_parse_ops(struct emu_kctx *c, const cJSON *arr, unsigned *ops)
{
	const cJSON *e;
	unsigned out = 0;

	if (!arr || cJSON_IsNull(arr))
		return 0;
	if (!cJSON_IsArray(arr))
		goto bad;
	cJSON_ArrayForEach(e, arr) {
		unsigned b = cJSON_IsString(e) ? emu_kop_parse(e->valuestring) : 0;

		if (!b)
			goto bad;
		out |= b;
	}
	*ops = out;
	return 0;
bad:
	emu_error(c->rep, 400, "BadParameter", NULL, "Property 'key_ops' has an invalid value.");
	return -1;
}

int emu_kc_parse_tags(struct emu_kctx *c, const cJSON *tags, cJSON **out)
{
	const cJSON *e;

	if (!tags)
		return 0;
	if (cJSON_IsNull(tags)) {
		cJSON_Delete(*out);
		*out = NULL;
		return 0;
	}
	if (!cJSON_IsObject(tags))
		goto bad;
	cJSON_ArrayForEach(e, tags)
		if (!cJSON_IsString(e))
			goto bad;
	cJSON_Delete(*out);
	*out = cJSON_Duplicate(tags, 1);
	return 0;
bad:
	emu_error(c->rep, 400, "BadParameter", NULL, "Property 'tags' has an invalid value.");
	return -1;
}

cJSON *emu_kc_parse_body(struct emu_kctx *c)
{
	cJSON *j = cJSON_ParseWithLength(c->rq->body ? c->rq->body : "", c->rq->body ? c->rq->body_len : 0);

	if (!j || !cJSON_IsObject(j)) {
		cJSON_Delete(j);
		emu_error(c->rep, 400, "BadParameter", NULL, "The request body is not a valid JSON object.");
		return NULL;
	}
	return j;
}

/* live_key finds a key that exists and is not deleted; 404 set otherwise. */
struct emu_key *emu_kc_live_key(struct emu_kctx *c)
{
	struct emu_key *k = emu_store_key(c->v, c->rt->key);

	if (!k || k->deleted || !k->nv) {
		emu_kc_not_found(c, false);
		return NULL;
	}
	return k;
}

void emu_kc_add_version(struct emu_kctx *c, const cJSON *body, struct emu_version *ver)
{
	struct emu_key *k;

	if (emu_kc_parse_attrs(c, cJSON_GetObjectItemCaseSensitive(body, "attributes"), ver) ||
	    emu_kc_parse_tags(c, cJSON_GetObjectItemCaseSensitive(body, "tags"), &ver->tags))
		goto out;
	k = emu_store_key(c->v, c->rt->key);
	if (k && k->deleted) {
		emu_error(c->rep, 409, "Conflict", NULL,
			  "Key %s is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.",
			  c->rt->key);
		goto out;
	}
	/* an existing name gets a new version, as Azure does for create and import */
	if ((!k && !(k = emu_store_add_key(c->v, c->rt->key))) || emu_store_attach(k, ver)) {
		emu_error(c->rep, 500, "InternalError", NULL, "Out of memory.");
		goto out;
	}
	emu_reply_json(c->rep, 200, emu_kc_bundle(c, k, ver));
	ver = NULL;
	emu_kc_persist(c);
out:
	emu_version_free(ver);
}
