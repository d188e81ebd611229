/*
 * keys_ctx.h: what every keys API handler shares: the request context, and
 * the helpers that find its key, read its body and render Key Vault's
 * answers. keys_api.c (the key's life and use) and keys_manage.c (policy,
 * backup, restore, import, random bytes) build on it; it calls neither.
 * world->lock is held around every call; a handler that releases it for slow
 * work (key generation, key validation) finds its key again by name after.
 */
#ifndef EMU_KEYS_CTX_H
#define EMU_KEYS_CTX_H

#include "emu.h"
#include "parse.h"

/* One keys request as its handler sees it. */
struct emu_kctx {
	struct emu_world *w;
	const struct emu_req *rq;
	const struct emu_route *rt;
	struct emu_reply *rep;
	struct emu_vault *v;
	struct emu_principal *p;
	bool mhsm;
};

/* emu_kid writes "https://HOST/keys/NAME[/VERSION]" into out. */
void emu_kid(char *out, size_t cap, const char *host, const char *name, const char *version);

/* emu_kc_not_found sets 404 KeyNotFound for the request's key (deleted: the deleted-key wording). */
void emu_kc_not_found(struct emu_kctx *c, bool deleted);

/* emu_kc_attrs_json renders a version's attributes (with the vault's recoveryLevel). */
cJSON *emu_kc_attrs_json(const struct emu_vault *v, const struct emu_version *ver);

/* emu_kc_add_b64 adds name: unpadded base64url of p[0..n) to o. */
void emu_kc_add_b64(cJSON *o, const char *name, const uint8_t *p, size_t n);

/* emu_kc_add_deleted adds recoveryId, deletedDate and scheduledPurgeDate of a deleted key. */
void emu_kc_add_deleted(struct emu_kctx *c, cJSON *o, const struct emu_key *k);

/* emu_kc_bundle renders a KeyBundle (or DeletedKeyBundle when k is deleted). */
cJSON *emu_kc_bundle(struct emu_kctx *c, const struct emu_key *k, const struct emu_version *ver);

/* emu_kc_persist saves the state file, logging (not failing) if it cannot. */
void emu_kc_persist(struct emu_kctx *c);

/* emu_kc_parse_attrs / _ops / _tags apply a body's attributes, key_ops, tags; -1 with 400 set. */
int emu_kc_parse_attrs(struct emu_kctx *c, const cJSON *attrs, struct emu_version *ver);
int emu_kc_parse_ops(struct emu_kctx *c, const cJSON *arr, unsigned *ops);
int emu_kc_parse_tags(struct emu_kctx *c, const cJSON *tags, cJSON **out);

/* emu_kc_parse_body parses the request body as a JSON object; NULL with 400 set. */
cJSON *emu_kc_parse_body(struct emu_kctx *c);

/*
 * emu_kc_add_version ends a create or an import: applies body's attributes
 * and tags to ver, adds it as the newest version of the request's key (made
 * if absent; refused with 409 while the name is deleted), answers the bundle
 * and saves the state. Takes ver: it is attached or freed.
 */
void emu_kc_add_version(struct emu_kctx *c, const cJSON *body, struct emu_version *ver);

/* emu_kc_live_key finds the request's key, existing and not deleted; NULL with 404 set. */
struct emu_key *emu_kc_live_key(struct emu_kctx *c);

#endif
