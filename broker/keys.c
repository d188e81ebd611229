#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keyprint.h"
#include "keys.h"
#include "log.h"
#include "options.h"

const char *kb_bop_name(kb_bop op)
{
	static const char *const names[KB_BOP_COUNT] = { "describe", "wrap", "unwrap",
							 "rotate", "random", "doctor" };

	return (unsigned)op < KB_BOP_COUNT ? names[op] : "";
}

kb_key *kb_key_find(kb_broker *b, const char *name)
{
	for (int i = 0; i < b->nkeys; i++)
		if (strcmp(b->keys[i].conf->name, name) == 0)
			return &b->keys[i];
	return NULL;
}

/* take_acls reads the per-key policy options, which the core owns. */
static kb_code take_acls(kb_keyconf *kc, kb_key *k, kb_err *err)
{
	static const char *const names[KB_ACL_COUNT] = {
		[KB_ACL_UNWRAP] = "allow_unwrap", [KB_ACL_WRAP] = "allow_wrap",
		[KB_ACL_REWRAP] = "allow_rewrap", [KB_ACL_ROTATE] = "allow_rotate",
		[KB_ACL_GET] = "allow_get",
	};
	char why[200];

	for (int i = 0; i < KB_ACL_COUNT; i++) {
		const char *v = kb_keyconf_take(kc, names[i], NULL);
		if (v && !kb_parse_acl(v, &k->acl[i].uids, &k->acl[i].gids, why, sizeof(why)))
			return kb_keyconf_bad(kc, names[i], err, "%s (entries: uid, user, @gid or @group)", why);
	}
	return KB_OK;
}

/*
 * take_grace reads outage_grace of the key (default: the [broker] one): how
 * long past its TTL a cached DEK may still be served while the key service
 * cannot be reached. Never past a definite refusal (finish.c).
 */
static kb_code take_grace(const kb_config *cfg, kb_keyconf *kc, kb_key *k, kb_err *err)
{
	const char *v = kb_keyconf_take(kc, "outage_grace", NULL);

	k->grace_ms = cfg->outage_grace_ms;
	if (v && !kb_parse_duration(v, &k->grace_ms))
		return kb_keyconf_bad(kc, "outage_grace", err, "\"%s\" is not a duration such as 0, 5m or 1h", v);
	return KB_OK;
}

/*
 * take_jitter reads cache_ttl_jitter of the key (default: the [broker] one).
 * A cut, never an addition: a jittered TTL spreads a fleet's refreshes and
 * still ends every DEK no later than cache_ttl.
 */
static kb_code take_jitter(const kb_config *cfg, kb_keyconf *kc, kb_key *k, kb_err *err)
{
	const char *v = kb_keyconf_take(kc, "cache_ttl_jitter", NULL);
	char *end;

	k->ttl_jitter = cfg->cache_ttl_jitter;
	k->jitter_rng = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ (uint64_t)(k->index + 1) * 0x9e3779b97f4a7c15ULL;
	if (v == NULL)
		return KB_OK;
	k->ttl_jitter = strtod(v, &end);
	if (end == v || *end != '\0' || !(k->ttl_jitter >= 0.0 && k->ttl_jitter <= 0.5))
		return kb_keyconf_bad(kc, "cache_ttl_jitter", err, "\"%s\" is not a fraction from 0 (off) to 0.5, e.g. 0.1", v);
	return KB_OK;
}

bool kb_key_service_down(kb_code rc)
{
	return rc == KB_E_BACKEND_UNAVAILABLE || rc == KB_E_THROTTLED;
}

kb_code kb_key_open_backend(kb_key *k, kb_keyconf *kc, int nslots, void **state, kb_err *err)
{
	kb_code rc = k->ops->open(kc, nslots, state, err);

	if (rc != KB_OK) {
		kb_err typo;

		*state = NULL;
		/* "pin_file: missing" is often a misspelt pin_file: say so too */
		if (err && kb_keyconf_unknown(kc, &typo) != KB_OK && strstr(typo.msg, "did you mean")) {
			size_t n = strlen(err->msg);
			snprintf(err->msg + n, sizeof(err->msg) - n, "; and %s", typo.msg);
		}
		/* a backend takes its options before it calls its service: an unknown one is known by now */
		if (kb_key_service_down(rc) && kb_keyconf_unknown(kc, &typo) != KB_OK) {
			if (err)
				*err = typo;
			return typo.code;
		}
		return rc;
	}
	return kb_keyconf_unknown(kc, err);
}

/* location_option is the option a previous = VALUE replaces: a pkcs11 URI's or an Azure URL's */
static const char *location_option(const char *value)
{
	if (strncmp(value, "pkcs11:", 7) == 0)
		return "uri";
	if (strncmp(value, "https://", 8) == 0)
		return "url";
	return NULL;
}

/*
 * take_previous reads the key's previous = LOCATION options (repeatable)
 * and makes for each a copy of the section's backend options with its
 * location replaced, to open beside the current one. Called before the
 * backend takes its options: those untaken now are the backend's.
 */
static kb_code take_previous(kb_keyconf *kc, kb_key *k, kb_err *err)
{
	int n = 0;

	(void)kb_keyconf_take(kc, "previous", NULL); /* a known option, for suggestions */
	for (int i = 0; i < kc->nopts; i++)
		n += strcmp(kc->opts[i].name, "previous") == 0;
	if (n == 0)
		return KB_OK;
	if ((k->prev = calloc((size_t)n, sizeof(*k->prev))) == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	for (int i = 0; i < kc->nopts; i++) {
		kb_opt *o = &kc->opts[i];
		kb_location *l;
		const char *opt;

		if (strcmp(o->name, "previous") != 0)
			continue;
		o->taken = true;
		opt = location_option(o->value);
		if (opt == NULL || strlen(o->value) >= sizeof(k->prev[0].where))
			return kb_err_set(err, KB_E_BAD_REQUEST,
					  "%s:%d: [key:%s] previous: \"%.200s\" is not a location: a pkcs11: URI or an "
					  "https:// key URL, where the key lived before",
					  kc->file, o->line, kc->name, o->value);
		l = &k->prev[k->nprev++];
		snprintf(l->where, sizeof(l->where), "%s", o->value);
		l->kc = *kc;
		l->kc.nopts = 0;
		l->kc.nasked = 0;
		if ((l->kc.opts = calloc((size_t)kc->nopts + 1, sizeof(kb_opt))) == NULL ||
		    (l->prints = kb_keyprints_new()) == NULL)
			return kb_err_set(err, KB_E_INTERNAL, "out of memory");
		for (int j = 0; j < kc->nopts; j++) {
			const kb_opt *s = &kc->opts[j];
			bool triplet = !strcmp(s->name, "key_vault_uri") || !strcmp(s->name, "key_name") ||
				       !strcmp(s->name, "key_version");

			if (s->taken || !strcmp(s->name, opt) || (!strcmp(opt, "url") && triplet))
				continue;
			l->kc.opts[l->kc.nopts++] = (kb_opt){ strdup(s->name), strdup(s->value), s->line, false };
		}
		l->kc.opts[l->kc.nopts++] = (kb_opt){ strdup(opt), strdup(o->value), o->line, false };
		for (int j = 0; j < l->kc.nopts; j++)
			if (l->kc.opts[j].name == NULL || l->kc.opts[j].value == NULL)
				return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	}
	return KB_OK;
}

/*
 * open_previous opens k's previous locations. One whose key service is down
 * is left closed (its blobs are then unknown_version, naming it), as a
 * current key's outage is not a reason to refuse the config either.
 */
static kb_code open_previous(kb_key *k, int nslots, kb_err *err)
{
	for (int i = 0; i < k->nprev; i++) {
		kb_location *l = &k->prev[i];
		kb_err e;
		kb_code rc = k->ops->open(&l->kc, nslots, &l->state, &e);

		if (rc != KB_OK) {
			l->state = NULL;
			if (!kb_key_service_down(rc))
				return kb_err_set(err, rc, "[key:%s] previous = %s: %s", k->conf->name, l->where, e.msg);
			kb_warn("key %s: previous location %s cannot be opened now: %s", k->conf->name,
			       l->where, e.msg);
		}
	}
	return KB_OK;
}

/* close_previous closes and frees k's previous locations */
static void close_previous(kb_key *k)
{
	for (int i = 0; i < k->nprev; i++) {
		kb_location *l = &k->prev[i];

		if (l->state)
			k->ops->close(l->state);
		for (int j = 0; j < l->kc.nopts; j++) {
			free(l->kc.opts[j].name);
			free(l->kc.opts[j].value);
		}
		free(l->kc.opts);
		kb_keyprints_free(l->prints);
	}
	free(k->prev);
	k->prev = NULL;
	k->nprev = 0;
}

/*
 * open_key judges and opens key i of cfg: KB_OK when it opened, or when only
 * its key service is down (then k->down says why, and outage.c reopens it);
 * else why the config is refused.
 */
static kb_code open_key(kb_config *cfg, int i, int nslots, kb_key *k, kb_err *err)
{
	kb_keyconf *kc = &cfg->keys[i];
	kb_code rc;

	k->conf = kc;
	k->index = i;
	k->ttl_ms = kc->cache_ttl_ms >= 0 ? kc->cache_ttl_ms : cfg->cache_ttl_ms;
	k->ops = kb_backend_find(kc->backend);
	if (k->ops == NULL)
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "%s:%d: [key:%s] backend: \"%s\" is not a backend (pkcs11 or azure)",
				  kc->file, kc->line, kc->name, kc->backend);
	if ((k->prints = kb_keyprints_new()) == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	if ((rc = take_acls(kc, k, err)) != KB_OK || (rc = take_grace(cfg, kc, k, err)) != KB_OK ||
	    (rc = take_jitter(cfg, kc, k, err)) != KB_OK || (rc = take_previous(kc, k, err)) != KB_OK)
		return rc;
	rc = kb_key_open_backend(k, kc, nslots, &k->state, &k->down_err);
	if ((rc == KB_OK || kb_key_service_down(rc)) && open_previous(k, nslots, err) != KB_OK) {
		if (k->state)
			k->ops->close(k->state);
		k->state = NULL;
		return err->code;
	}
	if (rc != KB_OK && !kb_key_service_down(rc)) {
		if (err)
			*err = k->down_err;
		kb_err_clear(&k->down_err);
		return rc;
	}
	k->down = rc != KB_OK;
	k->healthy = !k->down;
	if (k->down) {
		k->down_since_ms = kb_now_ms();
		k->last_code = rc;
		snprintf(k->last_error, sizeof(k->last_error), "%s", k->down_err.msg);
	}
	return KB_OK;
}

/*
 * keyset_new makes a keyset that owns cfg, with a zeroed key for each section;
 * NULL (cfg freed) when out of memory.
 */
static kb_keyset *keyset_new(kb_config *cfg)
{
	kb_keyset *ks = calloc(1, sizeof(*ks));

	if (ks == NULL || (ks->keys = calloc((size_t)(cfg->nkeys ? cfg->nkeys : 1), sizeof(*ks->keys))) == NULL) {
		free(ks);
		kb_config_free(cfg);
		return NULL;
	}
	ks->cfg = cfg;
	ks->refs = 1;
	return ks;
}

void kb_keyset_size_requests(kb_keyset *ks)
{
	kb_config *cfg = ks->cfg;
	size_t longest = 0;

	if (cfg->max_request_bytes_set)
		return;
	for (int i = 0; i < ks->nkeys; i++) {
		const kb_keyconf *kc = &cfg->keys[i];
		int n = kc->wrap_bytes > 0 && ks->keys[i].state ? kc->wrap_bytes : KB_BATCH_UNKNOWN_WRAP;
		size_t len = kb_blob_len_max(strlen(kc->name), (size_t)n);

		longest = len > longest ? len : longest;
	}
	if (longest)
		cfg->max_request_bytes = kb_batch_request_bytes(cfg->max_batch, longest);
}

kb_code kb_keyset_judge(kb_config *cfg, int nslots, kb_keyset **out, kb_err *errs)
{
	kb_keyset *ks = keyset_new(cfg);
	kb_code rc = KB_OK;

	*out = ks;
	if (ks == NULL)
		return KB_E_INTERNAL;
	ks->nkeys = cfg->nkeys;
	for (int i = 0; i < cfg->nkeys; i++) {
		kb_err_clear(&errs[i]);
		if (open_key(cfg, i, nslots, &ks->keys[i], &errs[i]) != KB_OK) {
			ks->keys[i].healthy = false;
			if (rc == KB_OK)
				rc = errs[i].code;
		}
	}
	kb_keyset_size_requests(ks);
	return rc;
}

kb_code kb_keyset_open(kb_config *cfg, int nslots, kb_keyset **out, kb_err *err)
{
	kb_err *errs = calloc((size_t)(cfg->nkeys ? cfg->nkeys : 1), sizeof(*errs));
	kb_keyset *ks;
	kb_code rc;

	if (errs == NULL) {
		kb_config_free(cfg);
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	}
	rc = kb_keyset_judge(cfg, nslots, &ks, errs);
	if (ks == NULL) {
		rc = kb_err_set(err, KB_E_INTERNAL, "out of memory");
	} else if (rc != KB_OK) {
		for (int i = 0; i < ks->nkeys; i++)
			if (errs[i].code != KB_OK) {
				if (err)
					*err = errs[i];
				break;
			}
		kb_keyset_unref(ks);
	} else {
		*out = ks;
	}
	free(errs);
	return rc;
}

void kb_keyset_unref(kb_keyset *ks)
{
	if (ks == NULL || --ks->refs > 0)
		return;
	for (int i = 0; i < ks->nkeys; i++) {
		if (ks->keys[i].ops && ks->keys[i].state)
			ks->keys[i].ops->close(ks->keys[i].state);
		close_previous(&ks->keys[i]);
		kb_keyprints_free(ks->keys[i].prints);
	}
	free(ks->keys);
	kb_config_free(ks->cfg);
	free(ks);
}
