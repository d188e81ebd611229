#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "errors.h"
#include "keys_api.h"
#include "log.h"
#include "perms.h"
#include "state.h"
#include "store.h"

#define MAX_PAGE 25

struct ctx {
	struct emu_world *w;
	const struct emu_req *rq;
	const struct emu_route *rt;
	struct emu_reply *rep;
	struct emu_vault *v;
	struct emu_principal *p;
	bool mhsm;
};

/* emu_kid writes "https://HOST/keys/NAME[/VERSION]" into out. */
static void emu_kid(char *out, size_t cap, const char *host, const char *name, const char *version)
{
	snprintf(out, cap, "https://%s/keys/%s%s%s", host, name, version && *version ? "/" : "",
		 version ? version : "");
}

static unsigned perm_for(enum emu_op op)
{
	switch (op) {
	case EMU_OP_CREATE: return EMU_P_CREATE;
	case EMU_OP_UPDATE: return EMU_P_UPDATE;
	case EMU_OP_ROTATE: return EMU_P_ROTATE;
	case EMU_OP_WRAP: return EMU_P_WRAP;
	case EMU_OP_UNWRAP: return EMU_P_UNWRAP;
	case EMU_OP_ENCRYPT: return EMU_P_ENCRYPT;
	case EMU_OP_DECRYPT: return EMU_P_DECRYPT;
	case EMU_OP_DELETE: return EMU_P_DELETE;
	case EMU_OP_RECOVER: return EMU_P_RECOVER;
	case EMU_OP_PURGE: return EMU_P_PURGE;
	default: return EMU_P_GET;
	}
}

static unsigned kop_for(enum emu_op op)
{
	switch (op) {
	case EMU_OP_WRAP: return EMU_KOP_WRAP;
	case EMU_OP_UNWRAP: return EMU_KOP_UNWRAP;
	case EMU_OP_ENCRYPT: return EMU_KOP_ENCRYPT;
	case EMU_OP_DECRYPT: return EMU_KOP_DECRYPT;
	default: return 0;
	}
}

static void not_found(struct ctx *c, bool deleted)
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

/* allowed checks the principal's permission; false with 403 ForbiddenByPolicy set. */
static bool allowed(struct ctx *c, unsigned perm)
{
	const char *key = c->rt->key[0] ? c->rt->key : NULL;

	if (c->p && (emu_perms_effective(c->p, c->mhsm, c->v->name, key) & perm))
		return true;
	emu_error(c->rep, 403, "Forbidden", "ForbiddenByPolicy",
		  "Operation %s is not permitted: the user, group or application 'appid=%s' does not have keys %s permission on %s '%s'%s%s%s.",
		  emu_perm_name(perm), c->rep->principal, emu_perm_name(perm),
		  c->mhsm ? "managed HSM" : "key vault", c->v->name, key ? " for key '" : "",
		  key ? key : "", key ? "'" : "");
	return false;
}

static cJSON *attrs_json(const struct emu_vault *v, const struct emu_version *ver)
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

static void add_b64(cJSON *o, const char *name, const uint8_t *p, size_t n)
{
	char *s = emu_b64url_encode(p, n);

	cJSON_AddStringToObject(o, name, s ? s : "");
	free(s);
}

static void add_deleted(struct ctx *c, cJSON *o, const struct emu_key *k)
{
	char url[EMU_HOST_MAX + EMU_NAME_MAX + 32];

	snprintf(url, sizeof(url), "https://%s/deletedkeys/%s", c->rt->host, k->name);
	cJSON_AddStringToObject(o, "recoveryId", url);
	cJSON_AddNumberToObject(o, "deletedDate", (double)k->deleted_at);
	cJSON_AddNumberToObject(o, "scheduledPurgeDate", (double)k->purge_at);
}

/* bundle renders a KeyBundle (or DeletedKeyBundle when k is deleted). */
static cJSON *bundle(struct ctx *c, const struct emu_key *k, const struct emu_version *ver)
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
			add_b64(key, "n", n, nl);
			add_b64(key, "e", e, el);
			free(n);
			free(e);
		}
	}
	/* Managed HSM names an oct-HSM key's size, which has no public part to tell it */
	if (ver->kty == EMU_KTY_OCT_HSM)
		cJSON_AddNumberToObject(key, "key_size", ver->bits);
	cJSON_AddItemToObject(root, "attributes", attrs_json(c->v, ver));
	if (ver->tags)
		cJSON_AddItemToObject(root, "tags", cJSON_Duplicate(ver->tags, 1));
	if (k->deleted)
		add_deleted(c, root, k);
	return root;
}

/* item renders a list entry: {kid, attributes, tags?}. */
static cJSON *item(struct ctx *c, const struct emu_key *k, const struct emu_version *ver,
		   bool versioned)
{
	cJSON *o = cJSON_CreateObject();
	char kid[EMU_HOST_MAX + 2 * EMU_NAME_MAX + 32];

	emu_kid(kid, sizeof(kid), c->rt->host, k->name, versioned ? ver->id : NULL);
	cJSON_AddStringToObject(o, "kid", kid);
	cJSON_AddItemToObject(o, "attributes", attrs_json(c->v, ver));
	if (ver->tags)
		cJSON_AddItemToObject(o, "tags", cJSON_Duplicate(ver->tags, 1));
	if (k->deleted)
		add_deleted(c, o, k);
	return o;
}

static void persist(struct ctx *c)
{
	if (emu_state_save(c->w))
		emu_log("state: cannot write %s; changes are in memory only", c->w->cfg.state);
}

/* parse_attrs applies attributes{enabled,nbf,exp} to ver; -1 with 400 set. */
static int parse_attrs(struct ctx *c, const cJSON *attrs, struct emu_version *ver)
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
static int parse_ops(struct ctx *c, const cJSON *arr, unsigned *ops)
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

static int parse_tags(struct ctx *c, const cJSON *tags, cJSON **out)
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

static cJSON *parse_body(struct ctx *c)
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
static struct emu_key *live_key(struct ctx *c)
{
	struct emu_key *k = emu_store_key(c->v, c->rt->key);

	if (!k || k->deleted || !k->nv) {
		not_found(c, false);
		return NULL;
	}
	return k;
}

static void op_create(struct ctx *c)
{
	cJSON *body = parse_body(c);
	const cJSON *f;
	enum emu_kty kty;
	int bits;
	unsigned long e = 65537;
	unsigned ops;
	struct emu_version *ver = NULL;
	struct emu_key *k;

	if (!body)
		return;
	f = cJSON_GetObjectItemCaseSensitive(body, "kty");
	if (!cJSON_IsString(f)) {
		emu_error(c->rep, 400, "BadParameter", NULL, "Property 'kty' is required.");
		goto out;
	}
	if (emu_kty_parse(f->valuestring, &kty) ||
	    (c->mhsm ? kty == EMU_KTY_RSA : kty == EMU_KTY_OCT_HSM)) {
		emu_error(c->rep, 400, "BadParameter", "KeyTypeNotSupported",
			  "Key type %s is not supported by this %s.", f->valuestring,
			  c->mhsm ? "managed HSM" : "key vault");
		goto out;
	}
	bits = kty == EMU_KTY_OCT_HSM ? 256 : 2048;
	f = cJSON_GetObjectItemCaseSensitive(body, "key_size");
	if (f && !cJSON_IsNull(f)) {
		bits = cJSON_IsNumber(f) ? f->valueint : 0;
		if (kty == EMU_KTY_OCT_HSM ? (bits != 128 && bits != 192 && bits != 256) :
		    (bits != 2048 && bits != 3072 && bits != 4096)) {
			emu_error(c->rep, 400, "BadParameter", NULL, "Key size %d is not supported for key type %s.",
				  bits, emu_kty_name(kty));
			goto out;
		}
	}
	f = cJSON_GetObjectItemCaseSensitive(body, "public_exponent");
	if (f && !cJSON_IsNull(f)) {
		if (!cJSON_IsNumber(f) || (f->valueint != 3 && f->valueint != 65537) ||
		    kty == EMU_KTY_OCT_HSM) {
			emu_error(c->rep, 400, "BadParameter", NULL, "Property 'public_exponent' must be 3 or 65537 for RSA keys.");
			goto out;
		}
		e = (unsigned long)f->valueint;
	}
	ops = emu_kops_default(kty);
	if (parse_ops(c, cJSON_GetObjectItemCaseSensitive(body, "key_ops"), &ops))
		goto out;
	/* generate without the lock: RSA-4096 takes a while */
	pthread_mutex_unlock(&c->w->lock);
	ver = emu_version_generate(kty, bits, e, ops);
	pthread_mutex_lock(&c->w->lock);
	if (!ver) {
		emu_error(c->rep, 500, "InternalError", NULL, "Key generation failed.");
		goto out;
	}
	if (parse_attrs(c, cJSON_GetObjectItemCaseSensitive(body, "attributes"), ver) ||
	    parse_tags(c, cJSON_GetObjectItemCaseSensitive(body, "tags"), &ver->tags))
		goto out;
	k = emu_store_key(c->v, c->rt->key);
	if (k && k->deleted) {
		emu_error(c->rep, 409, "Conflict", NULL,
			  "Key %s is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.",
			  c->rt->key);
		goto out;
	}
	if ((!k && !(k = emu_store_add_key(c->v, c->rt->key))) || emu_store_attach(k, ver)) {
		emu_error(c->rep, 500, "InternalError", NULL, "Out of memory.");
		goto out;
	}
	emu_reply_json(c->rep, 200, bundle(c, k, ver));
	ver = NULL;
	persist(c);
out:
	emu_version_free(ver);
	cJSON_Delete(body);
}

static void op_rotate(struct ctx *c)
{
	struct emu_key *k = live_key(c);
	struct emu_version *last, *ver;
	enum emu_kty kty;
	int bits;
	unsigned ops;

	if (!k)
		return;
	last = emu_store_latest(k);
	kty = last->kty;
	bits = last->bits;
	ops = last->ops;
	pthread_mutex_unlock(&c->w->lock);
	ver = emu_version_generate(kty, bits, 65537, ops);
	pthread_mutex_lock(&c->w->lock);
	if (!ver) {
		emu_error(c->rep, 500, "InternalError", NULL, "Key generation failed.");
		return;
	}
	if (!(k = live_key(c)) || emu_store_attach(k, ver)) {
		emu_version_free(ver);
		return;
	}
	emu_reply_json(c->rep, 200, bundle(c, k, ver));
	persist(c);
}

static void op_get(struct ctx *c)
{
	struct emu_key *k = live_key(c);
	struct emu_version *ver;

	if (!k)
		return;
	if (!(ver = emu_store_resolve(k, c->rt->version))) {
		not_found(c, false);
		return;
	}
	if (!ver->enabled) {
		emu_error(c->rep, 403, "Forbidden", NULL, "Operation get is not allowed on a disabled key.");
		return;
	}
	emu_reply_json(c->rep, 200, bundle(c, k, ver));
}

static void op_update(struct ctx *c)
{
	struct emu_key *k = live_key(c);
	struct emu_version *ver, tmp;
	cJSON *body;

	if (!k)
		return;
	if (!(ver = c->rt->version[0] ? emu_store_resolve(k, c->rt->version) : emu_store_latest(k))) {
		not_found(c, false);
		return;
	}
	if (!(body = parse_body(c)))
		return;
	tmp = *ver;
	tmp.tags = ver->tags ? cJSON_Duplicate(ver->tags, 1) : NULL;
	if (parse_attrs(c, cJSON_GetObjectItemCaseSensitive(body, "attributes"), &tmp) ||
	    parse_ops(c, cJSON_GetObjectItemCaseSensitive(body, "key_ops"), &tmp.ops) ||
	    parse_tags(c, cJSON_GetObjectItemCaseSensitive(body, "tags"), &tmp.tags)) {
		cJSON_Delete(tmp.tags);
		cJSON_Delete(body);
		return;
	}
	cJSON_Delete(ver->tags);
	ver->tags = tmp.tags;
	ver->enabled = tmp.enabled;
	ver->nbf = tmp.nbf;
	ver->exp = tmp.exp;
	ver->ops = tmp.ops;
	ver->updated = emu_now();
	cJSON_Delete(body);
	emu_reply_json(c->rep, 200, bundle(c, k, ver));
	persist(c);
}

/* page_params reads maxresults and $skiptoken; false with 400 set. */
static bool page_params(struct ctx *c, size_t *max, size_t *skip)
{
	char *end;

	*max = MAX_PAGE;
	*skip = 0;
	if (c->rq->maxresults) {
		long m = strtol(c->rq->maxresults, &end, 10);

		if (*end || m < 1 || m > MAX_PAGE) {
			emu_error(c->rep, 400, "BadParameter", NULL, "maxresults must be between 1 and 25.");
			return false;
		}
		*max = (size_t)m;
	}
	if (c->rq->skiptoken) {
		long s = strtol(c->rq->skiptoken, &end, 10);

		if (*end || s < 0) {
			emu_error(c->rep, 400, "BadParameter", NULL, "The $skiptoken is invalid.");
			return false;
		}
		*skip = (size_t)s;
	}
	return true;
}

static void finish_page(struct ctx *c, cJSON *root, const char *path, size_t next, bool more, size_t max)
{
	char url[EMU_HOST_MAX + EMU_NAME_MAX + 160];

	if (more) {
		snprintf(url, sizeof(url), "https://%s%s?api-version=%s&$skiptoken=%zu&maxresults=%zu",
			 c->rt->host, path, c->rq->api_version, next, max);
		cJSON_AddStringToObject(root, "nextLink", url);
	} else {
		cJSON_AddNullToObject(root, "nextLink");
	}
	emu_reply_json(c->rep, 200, root);
}

static void op_list_versions(struct ctx *c)
{
	struct emu_key *k = live_key(c);
	size_t max, skip, i;
	cJSON *root, *arr;
	char path[EMU_NAME_MAX + 32];

	if (!k || !page_params(c, &max, &skip))
		return;
	root = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(root, "value");
	for (i = skip; i < k->nv && i < skip + max; i++)
		cJSON_AddItemToArray(arr, item(c, k, k->v[i], true));
	snprintf(path, sizeof(path), "/keys/%s/versions", k->name);
	finish_page(c, root, path, i, i < k->nv, max);
}

static void op_list(struct ctx *c, bool deleted)
{
	size_t max, skip, seen = 0, i;
	cJSON *root, *arr;
	bool more = false;

	if (!page_params(c, &max, &skip))
		return;
	root = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(root, "value");
	for (i = 0; i < c->v->nkeys; i++) {
		struct emu_key *k = c->v->keys[i];

		if (k->deleted != deleted || !k->nv)
			continue;
		if (seen >= skip + max) {
			more = true;
			break;
		}
		if (seen++ >= skip)
			cJSON_AddItemToArray(arr, item(c, k, emu_store_latest(k), false));
	}
	finish_page(c, root, deleted ? "/deletedkeys" : "/keys", skip + max, more, max);
}

static void op_delete(struct ctx *c)
{
	struct emu_key *k = live_key(c);

	if (!k)
		return;
	k->deleted = true;
	k->deleted_at = emu_now();
	k->purge_at = k->deleted_at + (int64_t)c->v->retention_days * 86400;
	emu_reply_json(c->rep, 200, bundle(c, k, emu_store_latest(k)));
	persist(c);
}

static struct emu_key *deleted_key(struct ctx *c)
{
	struct emu_key *k = emu_store_key(c->v, c->rt->key);

	if (!k || !k->deleted || !k->nv) {
		not_found(c, true);
		return NULL;
	}
	return k;
}

static void op_deleted(struct ctx *c, enum emu_op op)
{
	struct emu_key *k = deleted_key(c);

	if (!k)
		return;
	if (op == EMU_OP_GET_DELETED) {
		emu_reply_json(c->rep, 200, bundle(c, k, emu_store_latest(k)));
		return;
	}
	if (op == EMU_OP_RECOVER) {
		k->deleted = false;
		k->deleted_at = k->purge_at = 0;
		emu_reply_json(c->rep, 200, bundle(c, k, emu_store_latest(k)));
	} else if (c->v->purge_protection) {
		emu_error_purge_protected(c->rep, c->v);
		return;
	} else {
		emu_store_remove_key(c->v, k);
		c->rep->status = 204;
	}
	persist(c);
}

static const char *op_name(enum emu_op op)
{
	return emu_perm_name(perm_for(op));
}

/* op_crypto runs wrapkey/unwrapkey/encrypt/decrypt; the lock is held on entry and exit. */
static void op_crypto(struct ctx *c, enum emu_op op)
{
	struct emu_key *k = live_key(c);
	struct emu_version *ver;
	struct emu_keymat km = { 0 };
	struct emu_opbody b;
	struct emu_cin in = { 0 };
	struct emu_cout out;
	char err[160], kid[EMU_HOST_MAX + 2 * EMU_NAME_MAX + 32];
	int64_t now = emu_now();
	int rc;
	cJSON *root;

	if (!k)
		return;
	if (!(ver = emu_store_resolve(k, c->rt->version))) {
		not_found(c, false);
		return;
	}
	if (!ver->enabled) {
		emu_error(c->rep, 403, "Forbidden", NULL, "Operation %s is not allowed on a disabled key.", op_name(op));
		return;
	}
	if (ver->nbf && now < ver->nbf) {
		emu_error(c->rep, 403, "Forbidden", NULL, "Operation %s is not allowed on a key that is not yet valid (nbf).", op_name(op));
		return;
	}
	if (ver->exp && now >= ver->exp) {
		emu_error(c->rep, 403, "Forbidden", NULL, "Operation %s is not allowed on an expired key.", op_name(op));
		return;
	}
	if (!(ver->ops & kop_for(op))) {
		emu_error(c->rep, 403, "Forbidden", NULL, "Operation %s is not allowed by the key's key_ops.", op_name(op));
		return;
	}
	emu_kid(kid, sizeof(kid), c->rt->host, k->name, ver->id);
	if (ver->pkey && EVP_PKEY_up_ref(ver->pkey))
		km.pkey = ver->pkey;
	memcpy(km.aes, ver->aes, ver->aes_len);
	km.aes_len = ver->aes_len;
	const char *kty = emu_kty_name(ver->kty);
	pthread_mutex_unlock(&c->w->lock);

	if (emu_opbody_parse(c->rq->body, c->rq->body_len, &b, err, sizeof(err))) {
		emu_error(c->rep, 400, "BadParameter", NULL, "%s", err);
		goto out;
	}
	in.alg = emu_alg_parse(b.alg);
	in.wrap_op = op == EMU_OP_WRAP || op == EMU_OP_UNWRAP;
	in.forward = op == EMU_OP_WRAP || op == EMU_OP_ENCRYPT;
	in.in = b.value;
	in.n = b.value_len;
	in.iv = b.iv;
	in.iv_len = b.iv_len;
	in.aad = b.aad;
	in.aad_len = b.aad_len;
	in.tag = b.tag;
	in.tag_len = b.tag_len;
	rc = emu_crypto_run(&km, &in, &out);
	if (rc == EMU_CRYPTO_BAD_ALG) {
		emu_error(c->rep, 400, "BadParameter", NULL, "Algorithm '%s' is not supported for %s with key type %s.",
			  b.alg, op_name(op), kty);
	} else if (rc == EMU_CRYPTO_BAD_INPUT) {
		emu_error(c->rep, 400, "BadParameter", NULL, "The %s operation failed: the value, iv or tag is invalid for '%s'.",
			  op_name(op), b.alg);
	} else if (rc != EMU_CRYPTO_OK) {
		emu_error(c->rep, 500, "InternalError", NULL, "The cryptographic operation failed.");
	} else {
		root = cJSON_CreateObject();
		cJSON_AddStringToObject(root, "kid", kid);
		add_b64(root, "value", out.out, out.n);
		if (out.iv_len && in.forward)
			add_b64(root, "iv", out.iv, out.iv_len);
		if (out.tag_len)
			add_b64(root, "tag", out.tag, out.tag_len);
		emu_reply_json(c->rep, 200, root);
		OPENSSL_cleanse(out.out, out.n);
		free(out.out);
	}
	if (b.value)
		OPENSSL_cleanse(b.value, b.value_len);
	emu_opbody_free(&b);
out:
	EVP_PKEY_free(km.pkey);
	OPENSSL_cleanse(&km, sizeof(km));
	pthread_mutex_lock(&c->w->lock);
}

void emu_keys_handle(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		     struct emu_reply *rep)
{
	struct ctx c = { .w = w, .rq = rq, .rt = rt, .rep = rep, .mhsm = rt->kind == EMU_KIND_MHSM };

	pthread_mutex_lock(&w->lock);
	c.v = emu_store_vault(w, c.mhsm, rt->vault);
	c.p = emu_principal_find(w, rep->principal);
	if (!c.v) {
		emu_error(rep, 404, "NotFound", NULL, "No vault or managed HSM named '%s' is served here.", rt->vault);
		goto out;
	}
	if (!allowed(&c, perm_for(rt->op)))
		goto out;
	switch (rt->op) {
	case EMU_OP_CREATE: op_create(&c); break;
	case EMU_OP_GET: op_get(&c); break;
	case EMU_OP_UPDATE: op_update(&c); break;
	case EMU_OP_ROTATE: op_rotate(&c); break;
	case EMU_OP_LIST_VERSIONS: op_list_versions(&c); break;
	case EMU_OP_LIST_KEYS: op_list(&c, false); break;
	case EMU_OP_LIST_DELETED: op_list(&c, true); break;
	case EMU_OP_DELETE: op_delete(&c); break;
	case EMU_OP_GET_DELETED:
	case EMU_OP_RECOVER:
	case EMU_OP_PURGE: op_deleted(&c, rt->op); break;
	case EMU_OP_WRAP:
	case EMU_OP_UNWRAP:
	case EMU_OP_ENCRYPT:
	case EMU_OP_DECRYPT: op_crypto(&c, rt->op); break;
	default: emu_error(rep, 404, "NotFound", NULL, "No such operation."); break;
	}
out:
	pthread_mutex_unlock(&w->lock);
}
