#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "errors.h"
#include "keys_api.h"
#include "keys_ctx.h"
#include "keys_manage.h"
#include "lifecycle.h"
#include "perms.h"
#include "store.h"

#define MAX_PAGE 25

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
	case EMU_OP_IMPORT: return EMU_P_IMPORT;
	case EMU_OP_BACKUP: return EMU_P_BACKUP;
	case EMU_OP_RESTORE: return EMU_P_RESTORE;
	case EMU_OP_GET_POLICY: return EMU_P_GET_POLICY;
	case EMU_OP_SET_POLICY: return EMU_P_SET_POLICY;
	case EMU_OP_RNG: return EMU_P_RNG;
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

/* allowed checks the principal's permission; false with 403 ForbiddenByPolicy set. */
static bool allowed(struct emu_kctx *c, unsigned perm)
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

/* item renders a list entry: {kid, attributes, tags?}. */
static cJSON *item(struct emu_kctx *c, const struct emu_key *k, const struct emu_version *ver,
		   bool versioned)
{
	cJSON *o = cJSON_CreateObject();
	char kid[EMU_HOST_MAX + 2 * EMU_NAME_MAX + 32];

	emu_kid(kid, sizeof(kid), c->rt->host, k->name, versioned ? ver->id : NULL);
	cJSON_AddStringToObject(o, "kid", kid);
	cJSON_AddItemToObject(o, "attributes", emu_kc_attrs_json(c->v, ver));
	if (ver->tags)
		cJSON_AddItemToObject(o, "tags", cJSON_Duplicate(ver->tags, 1));
	if (k->deleted)
		emu_kc_add_deleted(c, o, k);
	return o;
}

static void op_create(struct emu_kctx *c)
{
	cJSON *body = emu_kc_parse_body(c);
	const cJSON *f;
	enum emu_kty kty;
	int bits;
	unsigned long e = 65537;
	unsigned ops;
	struct emu_version *ver = NULL;

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
	if (emu_kc_parse_ops(c, cJSON_GetObjectItemCaseSensitive(body, "key_ops"), &ops))
		goto out;
	/* generate without the lock: RSA-4096 takes a while */
	pthread_mutex_unlock(&c->w->lock);
	ver = emu_version_generate(kty, bits, e, ops);
	pthread_mutex_lock(&c->w->lock);
	if (!ver) {
		emu_error(c->rep, 500, "InternalError", NULL, "Key generation failed.");
		goto out;
	}
	emu_kc_add_version(c, body, ver);
	ver = NULL;
out:
	emu_version_free(ver);
	cJSON_Delete(body);
}

static void op_rotate(struct emu_kctx *c)
{
	struct emu_key *k = emu_kc_live_key(c);
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
	if (!(k = emu_kc_live_key(c)) || emu_store_attach(k, ver)) {
		emu_version_free(ver);
		return;
	}
	/* as Azure: a rotation, by hand or by policy, gives the new version the policy's expiryTime */
	emu_lifecycle_stamp(k, ver, emu_now());
	emu_reply_json(c->rep, 200, emu_kc_bundle(c, k, ver));
	emu_kc_persist(c);
}

/*
 * enabled_version finds the version the request names of the live key *k;
 * NULL with 404 set (no such key or version), or 403 KeyDisabled naming op
 * when it is disabled (as Azure's SecretDisabled for a secret).
 */
static struct emu_version *enabled_version(struct emu_kctx *c, struct emu_key **k, const char *op)
{
	struct emu_version *ver;

	if (!(*k = emu_kc_live_key(c)))
		return NULL;
	if (!(ver = emu_store_resolve(*k, c->rt->version))) {
		emu_kc_not_found(c, false);
		return NULL;
	}
	if (!ver->enabled) {
		emu_error(c->rep, 403, "Forbidden", "KeyDisabled", "Operation %s is not allowed on a disabled key.", op);
		return NULL;
	}
	return ver;
}

static void op_get(struct emu_kctx *c)
{
	struct emu_key *k;
	struct emu_version *ver = enabled_version(c, &k, "get");

	if (ver)
		emu_reply_json(c->rep, 200, emu_kc_bundle(c, k, ver));
}

static void op_update(struct emu_kctx *c)
{
	struct emu_key *k = emu_kc_live_key(c);
	struct emu_version *ver, tmp;
	cJSON *body;

	if (!k)
		return;
	if (!(ver = c->rt->version[0] ? emu_store_resolve(k, c->rt->version) : emu_store_latest(k))) {
		emu_kc_not_found(c, false);
		return;
	}
	if (!(body = emu_kc_parse_body(c)))
		return;
	tmp = *ver;
	tmp.tags = ver->tags ? cJSON_Duplicate(ver->tags, 1) : NULL;
	if (emu_kc_parse_attrs(c, cJSON_GetObjectItemCaseSensitive(body, "attributes"), &tmp) ||
	    emu_kc_parse_ops(c, cJSON_GetObjectItemCaseSensitive(body, "key_ops"), &tmp.ops) ||
	    emu_kc_parse_tags(c, cJSON_GetObjectItemCaseSensitive(body, "tags"), &tmp.tags)) {
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
	emu_reply_json(c->rep, 200, emu_kc_bundle(c, k, ver));
	emu_kc_persist(c);
}

/* page_params reads maxresults and $skiptoken; false with 400 set. */
static bool page_params(struct emu_kctx *c, size_t *max, size_t *skip)
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

static void finish_page(struct emu_kctx *c, cJSON *root, const char *path, size_t next, bool more, size_t max)
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

static void op_list_versions(struct emu_kctx *c)
{
	struct emu_key *k = emu_kc_live_key(c);
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

static void op_list(struct emu_kctx *c, bool deleted)
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

static void op_delete(struct emu_kctx *c)
{
	struct emu_key *k = emu_kc_live_key(c);

	if (!k)
		return;
	k->deleted = true;
	k->deleted_at = emu_now();
	k->purge_at = k->deleted_at + (int64_t)c->v->retention_days * 86400;
	emu_reply_json(c->rep, 200, emu_kc_bundle(c, k, emu_store_latest(k)));
	emu_kc_persist(c);
}

static struct emu_key *deleted_key(struct emu_kctx *c)
{
	struct emu_key *k = emu_store_key(c->v, c->rt->key);

	if (!k || !k->deleted || !k->nv) {
		emu_kc_not_found(c, true);
		return NULL;
	}
	return k;
}

static void op_deleted(struct emu_kctx *c, enum emu_op op)
{
	struct emu_key *k = deleted_key(c);

	if (!k)
		return;
	if (op == EMU_OP_GET_DELETED) {
		emu_reply_json(c->rep, 200, emu_kc_bundle(c, k, emu_store_latest(k)));
		return;
	}
	if (op == EMU_OP_RECOVER) {
		k->deleted = false;
		k->deleted_at = k->purge_at = 0;
		emu_reply_json(c->rep, 200, emu_kc_bundle(c, k, emu_store_latest(k)));
	} else if (c->v->purge_protection) {
		emu_error_purge_protected(c->rep, c->v);
		return;
	} else {
		emu_store_remove_key(c->v, k);
		c->rep->status = 204;
	}
	emu_kc_persist(c);
}

static const char *op_name(enum emu_op op)
{
	return emu_perm_name(perm_for(op));
}

/* op_crypto runs wrapkey/unwrapkey/encrypt/decrypt; the lock is held on entry and exit. */
static void op_crypto(struct emu_kctx *c, enum emu_op op)
{
	struct emu_key *k;
	struct emu_version *ver;
	struct emu_keymat km = { 0 };
	struct emu_opbody b;
	struct emu_cin in = { 0 };
	struct emu_cout out;
	char err[160], kid[EMU_HOST_MAX + 2 * EMU_NAME_MAX + 32];
	int64_t now = emu_now();
	int rc;
	cJSON *root;

	if (!(ver = enabled_version(c, &k, op_name(op))))
		return;
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
		emu_kc_add_b64(root, "value", out.out, out.n);
		if (out.iv_len && in.forward)
			emu_kc_add_b64(root, "iv", out.iv, out.iv_len);
		if (out.tag_len)
			emu_kc_add_b64(root, "tag", out.tag, out.tag_len);
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
	struct emu_kctx c = { .w = w, .rq = rq, .rt = rt, .rep = rep, .mhsm = rt->kind == EMU_KIND_MHSM };

	pthread_mutex_lock(&w->lock);
	c.v = emu_store_vault(w, c.mhsm, rt->vault);
	c.p = emu_principal_find(w, rep->principal);
	if (!c.v) {
		emu_error(rep, 404, "NotFound", NULL, "No vault or managed HSM named '%s' is served here.", rt->vault);
		goto out;
	}
	/* bring keys up to the clock first: a rotation or a purge that came due is seen by this request */
	if (emu_lifecycle_tick(w))
		emu_kc_persist(&c);
	if (rt->op == EMU_OP_UNSUPPORTED) {
		emu_km_unsupported(&c);
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
	case EMU_OP_GET_POLICY: emu_km_get_policy(&c); break;
	case EMU_OP_SET_POLICY: emu_km_set_policy(&c); break;
	case EMU_OP_BACKUP: emu_km_backup(&c); break;
	case EMU_OP_RESTORE: emu_km_restore(&c); break;
	case EMU_OP_IMPORT: emu_km_import(&c); break;
	case EMU_OP_RNG: emu_km_rng(&c); break;
	default: emu_error(rep, 404, "NotFound", NULL, "No such operation."); break;
	}
out:
	pthread_mutex_unlock(&w->lock);
}
