#include <stdio.h>
#include <string.h>

#include <microhttpd.h>

#include "admin.h"
#include "auth.h"
#include "clock.h"
#include "errors.h"
#include "faults.h"
#include "lifecycle.h"
#include "log.h"
#include "perms.h"
#include "rotation.h"
#include "server.h"
#include "state.h"
#include "store.h"

static struct MHD_Daemon *admin;

static void ok(struct emu_reply *rep, cJSON *extra)
{
	cJSON *j = extra ? extra : cJSON_CreateObject();

	cJSON_AddBoolToObject(j, "ok", true);
	emu_reply_json(rep, 200, j);
}

static const char *str(const cJSON *o, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(f) ? f->valuestring : NULL;
}

/* target finds the vault named by {"vault": NAME} or {"mhsm": NAME}; NULL with 4xx set. */
static struct emu_vault *target(struct emu_world *w, const cJSON *body, struct emu_reply *rep)
{
	const char *vn = str(body, "vault"), *mn = str(body, "mhsm");
	struct emu_vault *v;

	if (!vn == !mn) {
		emu_error(rep, 400, "BadRequest", NULL, "Name exactly one of \"vault\" or \"mhsm\".");
		return NULL;
	}
	v = emu_store_vault(w, mn != NULL, vn ? vn : mn);
	if (!v)
		emu_error(rep, 404, "NotFound", NULL, "No %s named '%s'.", mn ? "managed HSM" : "vault", vn ? vn : mn);
	return v;
}

static void persist(struct emu_world *w)
{
	if (emu_state_save(w))
		emu_log("state: cannot write %s; changes are in memory only", w->cfg.state);
}

/* POST /admin/keys/{disable,enable,delete,recover,purge} {"vault"|"mhsm", "key", "version"?} */
static void keys_action(struct emu_world *w, const char *action, const cJSON *body, struct emu_reply *rep)
{
	struct emu_vault *v = target(w, body, rep);
	const char *name = str(body, "key"), *version = str(body, "version");
	struct emu_key *k;
	cJSON *res;

	if (!v)
		return;
	if (!name || !(k = emu_store_key(v, name)) || !k->nv) {
		emu_error(rep, 404, "KeyNotFound", NULL, "No key named '%s'.", name ? name : "");
		return;
	}
	if (!strcmp(action, "disable") || !strcmp(action, "enable")) {
		bool en = action[0] == 'e';
		size_t changed = 0;

		for (size_t i = 0; i < k->nv; i++) {
			if (version && strcasecmp(version, k->v[i]->id) != 0)
				continue;
			k->v[i]->enabled = en;
			k->v[i]->updated = emu_now();
			changed++;
		}
		if (!changed) {
			emu_error(rep, 404, "KeyNotFound", NULL, "Key '%s' has no version '%s'.", name, version);
			return;
		}
		res = cJSON_CreateObject();
		cJSON_AddNumberToObject(res, "versions", (double)changed);
	} else if (!strcmp(action, "delete")) {
		if (k->deleted) {
			emu_error(rep, 409, "Conflict", NULL, "Key '%s' is already deleted.", name);
			return;
		}
		k->deleted = true;
		k->deleted_at = emu_now();
		k->purge_at = k->deleted_at + (int64_t)v->retention_days * 86400;
		res = NULL;
	} else if (!strcmp(action, "recover") || !strcmp(action, "purge")) {
		if (!k->deleted) {
			emu_error(rep, 409, "Conflict", NULL, "Key '%s' is not deleted.", name);
			return;
		}
		if (action[0] == 'r') {
			k->deleted = false;
			k->deleted_at = k->purge_at = 0;
		} else if (v->purge_protection) {
			emu_error_purge_protected(rep, v);
			return;
		} else {
			emu_store_remove_key(v, k);
		}
		res = NULL;
	} else {
		emu_error(rep, 404, "NotFound", NULL, "Unknown key action '%s'.", action);
		return;
	}
	persist(w);
	ok(rep, res);
}

/* POST /admin/permissions/{grant,revoke} {"principal", "vault"|"mhsm", "key"?, "permissions"} */
static void perms_action(struct emu_world *w, const char *action, const cJSON *body, struct emu_reply *rep)
{
	const char *who = str(body, "principal"), *key = str(body, "key");
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(body, "permissions"), *e;
	struct emu_principal *p;
	struct emu_vault *v;
	unsigned bits = 0, one;
	char bad[64];
	bool grant = !strcmp(action, "grant");
	cJSON *res;

	if (!grant && strcmp(action, "revoke")) {
		emu_error(rep, 404, "NotFound", NULL, "Unknown permissions action '%s'.", action);
		return;
	}
	if (!who || !(p = emu_principal_find(w, who))) {
		emu_error(rep, 404, "NotFound", NULL, "No principal '%s'.", who ? who : "");
		return;
	}
	if (!(v = target(w, body, rep)))
		return;
	if (cJSON_IsString(list)) {
		if (emu_perm_parse_list(list->valuestring, &bits, bad, sizeof(bad)))
			goto bad;
	} else if (cJSON_IsArray(list)) {
		cJSON_ArrayForEach(e, list) {
			if (!cJSON_IsString(e) || emu_perm_parse_list(e->valuestring, &one, bad, sizeof(bad)))
				goto bad;
			bits |= one;
		}
	} else {
		snprintf(bad, sizeof(bad), "(missing)");
		goto bad;
	}
	if (emu_perms_change(p, v->mhsm, v->name, key, bits, grant)) {
		emu_error(rep, 500, "InternalError", NULL, "Out of memory.");
		return;
	}
	res = cJSON_CreateObject();
	cJSON_AddItemToObject(res, "effective", emu_perm_json(emu_perms_effective(p, v->mhsm, v->name, key)));
	ok(rep, res);
	return;
bad:
	emu_error(rep, 400, "BadRequest", NULL, "\"permissions\" must list permission names; bad: '%s'.", bad);
}

/*
 * POST /admin/throttle {"vault"|"mhsm", "limit": N (0 = off), "window_ms"?: N,
 * "retry_after"?: true|false|"Retry-After"|"retry-after-ms"|"x-ms-retry-after-ms"|"none"}
 */
static void throttle(struct emu_world *w, const cJSON *body, struct emu_reply *rep)
{
	struct emu_vault *v = target(w, body, rep);
	const cJSON *limit = cJSON_GetObjectItemCaseSensitive(body, "limit");
	const cJSON *ra = cJSON_GetObjectItemCaseSensitive(body, "retry_after");
	const cJSON *win = cJSON_GetObjectItemCaseSensitive(body, "window_ms");
	enum emu_retry_style style;
	bool bad_style = false;

	if (!v)
		return;
	style = v->retry_style;
	if (cJSON_IsBool(ra))
		style = cJSON_IsTrue(ra) ? EMU_RETRY_SECONDS : EMU_RETRY_NONE;
	else if (ra)
		bad_style = !cJSON_IsString(ra) || emu_retry_style_parse(ra->valuestring, &style) != 0;
	if (bad_style || !cJSON_IsNumber(limit) || limit->valuedouble < 0 || limit->valuedouble > 1e7 ||
	    (win && (!cJSON_IsNumber(win) || win->valuedouble < 100 || win->valuedouble > 3600000))) {
		emu_error(rep, 400, "BadRequest", NULL,
			  "Want {\"limit\": N (0 = off), \"window_ms\": 100..3600000, \"retry_after\": true, false, \"Retry-After\", \"retry-after-ms\", \"x-ms-retry-after-ms\" or \"none\"}.");
		return;
	}
	v->throttle = (unsigned)limit->valuedouble;
	v->retry_style = style;
	if (win)
		v->window_ms = (unsigned)win->valuedouble;
	v->win_count = 0;
	v->win_start_ms = emu_now_ms();
	ok(rep, NULL);
}

/*
 * POST /admin/purge_protection {"vault"|"mhsm", "enabled"?: bool,
 * "soft_delete_retention_days"?: 7..90}
 */
static void purge_protection(struct emu_world *w, const cJSON *body, struct emu_reply *rep)
{
	struct emu_vault *v = target(w, body, rep);
	const cJSON *en = cJSON_GetObjectItemCaseSensitive(body, "enabled");
	const cJSON *days = cJSON_GetObjectItemCaseSensitive(body, "soft_delete_retention_days");
	cJSON *res;

	if (!v)
		return;
	if ((en && !cJSON_IsBool(en)) ||
	    (days && (!cJSON_IsNumber(days) || days->valuedouble < EMU_RETENTION_MIN ||
		      days->valuedouble > EMU_RETENTION_DEFAULT || days->valuedouble != (int)days->valuedouble))) {
		emu_error(rep, 400, "BadRequest", NULL,
			  "Want {\"enabled\": true|false, \"soft_delete_retention_days\": %d..%d}.",
			  EMU_RETENTION_MIN, EMU_RETENTION_DEFAULT);
		return;
	}
	if (en)
		v->purge_protection = cJSON_IsTrue(en);
	if (days)
		v->retention_days = (unsigned)days->valuedouble;
	res = cJSON_CreateObject();
	cJSON_AddBoolToObject(res, "purge_protection", v->purge_protection);
	cJSON_AddNumberToObject(res, "soft_delete_retention_days", v->retention_days);
	cJSON_AddStringToObject(res, "recoveryLevel", emu_store_recovery_level(v));
	ok(rep, res);
}

static cJSON *faults_json(const struct emu_faults *f)
{
	cJSON *j = cJSON_CreateObject();

	cJSON_AddNumberToObject(j, "latency_ms", f->conf.latency_ms);
	cJSON_AddNumberToObject(j, "jitter_ms", f->conf.jitter_ms);
	cJSON_AddNumberToObject(j, "error500_rate", f->conf.p500);
	cJSON_AddNumberToObject(j, "error503_rate", f->conf.p503);
	cJSON_AddNumberToObject(j, "drop_rate", f->conf.pdrop);
	cJSON_AddNumberToObject(j, "fail_next", f->fail_next);
	cJSON_AddNumberToObject(j, "fail_status", f->fail_status);
	cJSON_AddNumberToObject(j, "drop_next", f->drop_next);
	return j;
}

static bool num_field(const cJSON *body, const char *name, double lo, double hi, double *out)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, name);

	if (!f)
		return true;
	if (!cJSON_IsNumber(f) || f->valuedouble < lo || f->valuedouble > hi)
		return false;
	*out = f->valuedouble;
	return true;
}

/* POST /admin/faults {any subset of the fields}; DELETE /admin/faults clears them all. */
static void faults(const char *method, const cJSON *body, struct emu_reply *rep)
{
	struct emu_faults f;
	double lat, jit, fn, fs, dn;

	emu_faults_get(&f);
	if (!strcmp(method, "DELETE")) {
		memset(&f, 0, sizeof(f));
		f.fail_status = 503;
	} else if (!strcmp(method, "POST")) {
		lat = f.conf.latency_ms;
		jit = f.conf.jitter_ms;
		fn = f.fail_next;
		fs = f.fail_status;
		dn = f.drop_next;
		if (!num_field(body, "latency_ms", 0, 600000, &lat) ||
		    !num_field(body, "jitter_ms", 0, 600000, &jit) ||
		    !num_field(body, "error500_rate", 0, 1, &f.conf.p500) ||
		    !num_field(body, "error503_rate", 0, 1, &f.conf.p503) ||
		    !num_field(body, "drop_rate", 0, 1, &f.conf.pdrop) ||
		    !num_field(body, "fail_next", 0, 1e9, &fn) ||
		    !num_field(body, "fail_status", 500, 599, &fs) ||
		    !num_field(body, "drop_next", 0, 1e9, &dn)) {
			emu_error(rep, 400, "BadRequest", NULL, "A fault field is out of range; see docs/emulator.md.");
			return;
		}
		f.conf.latency_ms = (unsigned)lat;
		f.conf.jitter_ms = (unsigned)jit;
		f.fail_next = (unsigned)fn;
		f.fail_status = (unsigned)fs;
		f.drop_next = (unsigned)dn;
	}
	if (strcmp(method, "GET"))
		emu_faults_put(&f);
	ok(rep, faults_json(&f));
}

static cJSON *clock_json(void)
{
	cJSON *j = cJSON_CreateObject();
	int64_t now = emu_now(), off = emu_clock_offset();

	cJSON_AddNumberToObject(j, "now", (double)now);
	cJSON_AddNumberToObject(j, "offset_s", (double)off);
	cJSON_AddNumberToObject(j, "real", (double)(now - off));
	return j;
}

/*
 * GET /admin/clock; POST /admin/clock {"advance_s": N}: move the emulator's
 * clock forward, then let the keys catch up (rotations due, retention ended).
 */
static void clock_action(struct emu_world *w, const char *method, const cJSON *body, struct emu_reply *rep)
{
	const cJSON *adv = cJSON_GetObjectItemCaseSensitive(body, "advance_s");

	if (!strcmp(method, "POST")) {
		if (!cJSON_IsNumber(adv) || adv->valuedouble != (double)(int64_t)adv->valuedouble ||
		    emu_clock_advance((int64_t)adv->valuedouble)) {
			emu_error(rep, 400, "BadRequest", NULL,
				  "Want {\"advance_s\": N}, N whole seconds from 0 to %lld; the clock never goes back.",
				  (long long)EMU_CLOCK_STEP_MAX);
			return;
		}
		emu_lifecycle_tick(w);
		persist(w);
	} else if (strcmp(method, "GET")) {
		emu_error(rep, 405, "MethodNotAllowed", NULL, "Use GET or POST on /admin/clock.");
		return;
	}
	ok(rep, clock_json());
}

static cJSON *state_json(struct emu_world *w)
{
	cJSON *root = cJSON_CreateObject(), *vaults = cJSON_AddArrayToObject(root, "vaults");
	cJSON *principals = cJSON_AddArrayToObject(root, "principals");
	struct emu_faults f;

	for (size_t i = 0; i < w->nvaults; i++) {
		struct emu_vault *v = w->vaults[i];
		cJSON *vo = cJSON_CreateObject(), *keys = cJSON_AddArrayToObject(vo, "keys");

		cJSON_AddStringToObject(vo, v->mhsm ? "mhsm" : "vault", v->name);
		cJSON_AddNumberToObject(vo, "throttle", v->throttle);
		cJSON_AddNumberToObject(vo, "window_ms", v->window_ms);
		cJSON_AddStringToObject(vo, "retry_after", emu_retry_style_name(v->retry_style));
		cJSON_AddBoolToObject(vo, "purge_protection", v->purge_protection);
		cJSON_AddNumberToObject(vo, "soft_delete_retention_days", v->retention_days);
		cJSON_AddStringToObject(vo, "recoveryLevel", emu_store_recovery_level(v));
		for (size_t j = 0; j < v->nkeys; j++) {
			struct emu_key *k = v->keys[j];
			cJSON *ko = cJSON_CreateObject(), *vers = cJSON_AddArrayToObject(ko, "versions");

			cJSON_AddStringToObject(ko, "name", k->name);
			cJSON_AddBoolToObject(ko, "deleted", k->deleted);
			if (k->policy.set)
				cJSON_AddItemToObject(ko, "rotation_policy", emu_policy_json(&k->policy, NULL));
			for (size_t n = 0; n < k->nv; n++) {
				cJSON *vj = cJSON_CreateObject();

				cJSON_AddStringToObject(vj, "version", k->v[n]->id);
				cJSON_AddStringToObject(vj, "kty", emu_kty_name(k->v[n]->kty));
				cJSON_AddNumberToObject(vj, "bits", k->v[n]->bits);
				cJSON_AddBoolToObject(vj, "enabled", k->v[n]->enabled);
				cJSON_AddNumberToObject(vj, "created", (double)k->v[n]->created);
				if (k->v[n]->exp)
					cJSON_AddNumberToObject(vj, "exp", (double)k->v[n]->exp);
				cJSON_AddItemToArray(vers, vj);
			}
			cJSON_AddItemToArray(keys, ko);
		}
		cJSON_AddItemToArray(vaults, vo);
	}
	for (size_t i = 0; i < w->nprincipals; i++) {
		struct emu_principal *p = &w->principals[i];
		cJSON *po = cJSON_CreateObject(), *g = cJSON_AddObjectToObject(po, "scopes");

		cJSON_AddStringToObject(po, "id", p->id);
		cJSON_AddItemToObject(po, "default", emu_perm_json(p->default_perms));
		for (size_t j = 0; j < p->ngrants; j++)
			cJSON_AddItemToObject(g, p->grants[j].scope, emu_perm_json(p->grants[j].perms));
		cJSON_AddItemToArray(principals, po);
	}
	emu_faults_get(&f);
	cJSON_AddItemToObject(root, "faults", faults_json(&f));
	cJSON_AddItemToObject(root, "clock", clock_json());
	return root;
}

/* emu_admin_handle answers one admin request. */
static void emu_admin_handle(struct emu_world *w, const struct emu_req *rq, struct emu_reply *rep)
{
	const char *path = rq->path ? rq->path : "";
	bool post = !strcmp(rq->method, "POST");
	cJSON *body = NULL;

	if (post) {
		body = cJSON_ParseWithLength(rq->body ? rq->body : "", rq->body ? rq->body_len : 0);
		if (!cJSON_IsObject(body)) {
			cJSON_Delete(body);
			emu_error(rep, 400, "BadRequest", NULL, "The body must be a JSON object.");
			return;
		}
	}
	pthread_mutex_lock(&w->lock);
	/* the admin sees keys as of the clock, as a keys request would */
	if (emu_lifecycle_tick(w))
		persist(w);
	if (!strcmp(path, "/admin/health") && !strcmp(rq->method, "GET"))
		ok(rep, NULL);
	else if (!strcmp(path, "/admin/state") && !strcmp(rq->method, "GET"))
		emu_reply_json(rep, 200, state_json(w));
	else if (!strncmp(path, "/admin/keys/", 12) && post)
		keys_action(w, path + 12, body, rep);
	else if (!strncmp(path, "/admin/permissions/", 19) && post)
		perms_action(w, path + 19, body, rep);
	else if (!strcmp(path, "/admin/throttle") && post)
		throttle(w, body, rep);
	else if (!strcmp(path, "/admin/purge_protection") && post)
		purge_protection(w, body, rep);
	else if (!strcmp(path, "/admin/clock"))
		clock_action(w, rq->method, body, rep);
	else if (!strcmp(path, "/admin/faults"))
		faults(rq->method, body, rep);
	else if (!strcmp(path, "/admin/tokens/revoke") && post) {
		cJSON *res = cJSON_CreateObject();

		cJSON_AddNumberToObject(res, "revoked", emu_auth_revoke(w, str(body, "principal")));
		persist(w);
		ok(rep, res);
	} else
		emu_error(rep, 404, "NotFound", NULL, "No admin endpoint %s %s.", rq->method, path);
	pthread_mutex_unlock(&w->lock);
	cJSON_Delete(body);
}

int emu_admin_start(struct emu_world *w, const char *addr, unsigned *port, char *err, size_t errlen)
{
	admin = emu_http_serve(w, addr, NULL, NULL, emu_admin_handle, "admin", port, err, errlen);
	return admin ? 0 : -1;
}

void emu_admin_stop(void)
{
	if (admin)
		emu_http_stop(admin);
	admin = NULL;
}
