#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "config.h"
#include "faults.h"
#include "perms.h"
#include "store.h"
#include "values.h"

#define ZERO_NAME "dev"
#define ZERO_TENANT "dev-tenant"
#define ZERO_CLIENT "dev-client"
#define ZERO_SECRET "dev-secret"
#define ZERO_ASSERTION "dev-assertion"
#define ZERO_IDENTITY_HEADER "dev-identity-header"

struct loader {
	struct emu_world *w;
	char err[256];
};

void emu_config_defaults(struct emu_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->listen, sizeof(cfg->listen), "127.0.0.1:8443");
	snprintf(cfg->tenant, sizeof(cfg->tenant), ZERO_TENANT);
	snprintf(cfg->identity_header, sizeof(cfg->identity_header), ZERO_IDENTITY_HEADER);
	cfg->token_lifetime = 3600;
	cfg->max_body = 64 * 1024;
}

int emu_config_zero(struct emu_world *w)
{
	struct emu_principal *p;

	if (!emu_store_add_vault(w, false, ZERO_NAME) || !emu_store_add_vault(w, true, ZERO_NAME))
		return -1;
	if (!(p = emu_principal_add(w, ZERO_CLIENT)))
		return -1;
	snprintf(p->secret, sizeof(p->secret), ZERO_SECRET);
	p->assertion = strdup(ZERO_ASSERTION);
	return p->assertion ? 0 : -1;
}

/* the keybroker's one rule for booleans (broker/values.c), so both configs read alike */
static bool parse_bool(const char *v, bool *out)
{
	return kb_parse_bool(v, out);
}

static bool parse_uint(const char *v, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long n;

	if (!isdigit((unsigned char)*v))
		return false;
	n = strtoul(v, &end, 10);
	if (*end || n > max)
		return false;
	*out = n;
	return true;
}

static bool parse_rate(const char *v, double *out)
{
	char *end;
	double d = strtod(v, &end);

	if (end == v || *end || !(d >= 0 && d <= 1))
		return false;
	*out = d;
	return true;
}

static bool copy(char *dst, size_t cap, const char *v)
{
	if (strlen(v) >= cap)
		return false;
	strcpy(dst, v);
	return true;
}

static bool emulator_key(struct emu_config *c, const char *name, const char *v)
{
	unsigned long n;
	bool b;

	if (!strcmp(name, "listen"))
		return copy(c->listen, sizeof(c->listen), v);
	if (!strcmp(name, "admin"))
		return copy(c->admin, sizeof(c->admin), v);
	if (!strcmp(name, "tls_dir"))
		return copy(c->tls_dir, sizeof(c->tls_dir), v);
	if (!strcmp(name, "state"))
		return copy(c->state, sizeof(c->state), v);
	if (!strcmp(name, "tenant"))
		return *v && copy(c->tenant, sizeof(c->tenant), v);
	if (!strcmp(name, "imds_principal"))
		return copy(c->imds_principal, sizeof(c->imds_principal), v);
	if (!strcmp(name, "identity_header"))
		return *v && copy(c->identity_header, sizeof(c->identity_header), v);
	if (!strcmp(name, "token_lifetime") && parse_uint(v, 86400 * 7, &n) && n > 0) {
		c->token_lifetime = (unsigned)n;
		return true;
	}
	if (!strcmp(name, "max_body") && parse_uint(v, 16u << 20, &n) && n >= 1024) {
		c->max_body = n;
		return true;
	}
	if (!strcmp(name, "quiet") && parse_bool(v, &b)) {
		c->quiet = b;
		return true;
	}
	return false;
}

static bool faults_key(struct emu_fault_conf *f, const char *name, const char *v)
{
	unsigned long n;

	if (!strcmp(name, "latency_ms") && parse_uint(v, 600000, &n)) {
		f->latency_ms = (unsigned)n;
		return true;
	}
	if (!strcmp(name, "jitter_ms") && parse_uint(v, 600000, &n)) {
		f->jitter_ms = (unsigned)n;
		return true;
	}
	if (!strcmp(name, "error500_rate"))
		return parse_rate(v, &f->p500);
	if (!strcmp(name, "error503_rate"))
		return parse_rate(v, &f->p503);
	if (!strcmp(name, "drop_rate"))
		return parse_rate(v, &f->pdrop);
	return false;
}

static bool vault_key(struct emu_vault *v, const char *name, const char *val)
{
	unsigned long n;

	if (!strcmp(name, "throttle") && parse_uint(val, 10000000, &n)) {
		v->throttle = (unsigned)n;
		return true;
	}
	if (!strcmp(name, "throttle_window_ms") && parse_uint(val, 3600000, &n) && n >= 100) {
		v->window_ms = (unsigned)n;
		return true;
	}
	if (!strcmp(name, "retry_after"))
		return emu_retry_style_parse(val, &v->retry_style) == 0;
	if (!strcmp(name, "purge_protection"))
		return parse_bool(val, &v->purge_protection);
	if (!strcmp(name, "soft_delete_retention_days") && parse_uint(val, EMU_RETENTION_DEFAULT, &n) &&
	    n >= EMU_RETENTION_MIN) {
		v->retention_days = (unsigned)n;
		return true;
	}
	return false;
}

static char *read_small_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = calloc(1, 65537);
	n = buf ? fread(buf, 1, 65536, f) : 0;
	fclose(f);
	if (!buf)
		return NULL;
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return buf;
}

/*
 * split_scope splits "vault.NAME[.KEY]" or "mhsm.NAME[.KEY]" (the dot form
 * keeps INI keys free of ':'). Returns false if malformed.
 */
static bool split_scope(const char *s, bool *mhsm, char *vault, size_t vcap, char *key, size_t kcap)
{
	const char *dot, *dot2;
	size_t n;

	if (!strncmp(s, "vault.", 6)) {
		*mhsm = false;
		s += 6;
	} else if (!strncmp(s, "mhsm.", 5)) {
		*mhsm = true;
		s += 5;
	} else {
		return false;
	}
	dot = strchr(s, '.');
	n = dot ? (size_t)(dot - s) : strlen(s);
	if (n == 0 || n >= vcap)
		return false;
	memcpy(vault, s, n);
	vault[n] = '\0';
	key[0] = '\0';
	if (dot) {
		dot2 = strchr(dot + 1, '.');
		if (dot2 || !copy(key, kcap, dot + 1) || !key[0])
			return false;
	}
	return true;
}

static bool principal_key(struct loader *l, struct emu_principal *p, const char *name, const char *v)
{
	unsigned perms;
	char bad[64], vault[EMU_VAULT_MAX], key[EMU_NAME_MAX], scope[sizeof(p->grants->scope)];
	bool mhsm;

	if (!strcmp(name, "secret"))
		return copy(p->secret, sizeof(p->secret), v);
	if (!strcmp(name, "assertion") || !strcmp(name, "assertion_file")) {
		free(p->assertion);
		p->assertion = name[9] ? read_small_file(v) : strdup(v);
		if (!p->assertion)
			snprintf(l->err, sizeof(l->err), "cannot read %s", v);
		return p->assertion != NULL;
	}
	if (emu_perm_parse_list(v, &perms, bad, sizeof(bad))) {
		snprintf(l->err, sizeof(l->err), "unknown permission '%s'", bad);
		return false;
	}
	if (!strcmp(name, "permissions")) {
		p->default_perms = perms;
		return true;
	}
	if (!split_scope(name, &mhsm, vault, sizeof(vault), key, sizeof(key)))
		return false;
	emu_scope(scope, sizeof(scope), mhsm, vault, key[0] ? key : NULL);
	return emu_grant_put(p, scope, perms) == 0;
}

static bool prekey_key(struct emu_prekey *k, const char *name, const char *v)
{
	unsigned long n;

	if (!strcmp(name, "kty"))
		return emu_kty_parse(v, &k->kty) == 0;
	if (!strcmp(name, "size") && parse_uint(v, 4096, &n)) {
		k->bits = (int)n;
		return true;
	}
	if (!strcmp(name, "ops")) {
		k->ops = 0;
		while (*v) {
			char word[32];
			size_t len = strcspn(v, " ,");

			if (len && len < sizeof(word)) {
				memcpy(word, v, len);
				word[len] = '\0';
				if (!emu_kop_parse(word))
					return false;
				k->ops |= emu_kop_parse(word);
			}
			v += len;
			v += strspn(v, " ,");
		}
		return true;
	}
	return false;
}

static struct emu_prekey *prekey_for(struct loader *l, const char *sec)
{
	struct emu_config *c = &l->w->cfg;
	struct emu_prekey k = { 0 }, *grown;

	if (!split_scope(sec, &k.mhsm, k.vault, sizeof(k.vault), k.name, sizeof(k.name)) || !k.name[0])
		return NULL;
	for (size_t i = 0; i < c->nprekeys; i++) {
		if (c->prekeys[i].mhsm == k.mhsm && !strcasecmp(c->prekeys[i].vault, k.vault) &&
		    !strcasecmp(c->prekeys[i].name, k.name))
			return &c->prekeys[i];
	}
	grown = realloc(c->prekeys, (c->nprekeys + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	c->prekeys = grown;
	k.kty = k.mhsm ? EMU_KTY_RSA_HSM : EMU_KTY_RSA;
	k.bits = 0;
	grown[c->nprekeys] = k;
	return &grown[c->nprekeys++];
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
	struct loader *l = user;
	struct emu_world *w = l->w;
	bool ok = false;

	if (!strcmp(section, "emulator")) {
		ok = emulator_key(&w->cfg, name, value);
	} else if (!strcmp(section, "faults")) {
		ok = faults_key(&w->cfg.faults, name, value);
	} else if (!strncmp(section, "vault:", 6) || !strncmp(section, "mhsm:", 5)) {
		bool mhsm = section[0] == 'm';
		struct emu_vault *v = emu_store_add_vault(w, mhsm, section + (mhsm ? 5 : 6));

		ok = v && vault_key(v, name, value);
	} else if (!strncmp(section, "principal:", 10)) {
		struct emu_principal *p = emu_principal_add(w, section + 10);

		ok = p && principal_key(l, p, name, value);
	} else if (!strncmp(section, "key:", 4)) {
		struct emu_prekey *k = prekey_for(l, section + 4);

		ok = k && prekey_key(k, name, value);
	} else {
		snprintf(l->err, sizeof(l->err), "unknown section [%s]", section);
		return 0;
	}
	if (!ok && !l->err[0])
		snprintf(l->err, sizeof(l->err), "[%s] %s = %s is not valid", section, name, value);
	return ok;
}

/*
 * declare_sections adds every [vault:], [mhsm:], [principal:] and [key:]
 * section, even an empty one: inih calls back only for entries.
 */
static int declare_sections(struct loader *l, const char *path)
{
	FILE *f = fopen(path, "re");
	char line[512];

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *s = line + strspn(line, " \t"), *end;

		if (*s != '[' || !(end = strchr(s, ']')))
			continue;
		*end = '\0';
		s++;
		if (!strncmp(s, "vault:", 6))
			emu_store_add_vault(l->w, false, s + 6);
		else if (!strncmp(s, "mhsm:", 5))
			emu_store_add_vault(l->w, true, s + 5);
		else if (!strncmp(s, "principal:", 10))
			emu_principal_add(l->w, s + 10);
		else if (!strncmp(s, "key:", 4))
			prekey_for(l, s + 4);
	}
	fclose(f);
	return 0;
}

int emu_config_load(struct emu_world *w, const char *path, char *err, size_t errlen)
{
	struct loader l = { .w = w };
	int line;

	if (declare_sections(&l, path)) {
		snprintf(err, errlen, "%s: cannot open", path);
		return -1;
	}
	line = ini_parse(path, on_entry, &l);
	if (line) {
		snprintf(err, errlen, "%s:%d: %s", path, line, l.err[0] ? l.err : "syntax error");
		return -1;
	}
	for (size_t i = 0; i < w->cfg.nprekeys; i++) {
		struct emu_prekey *k = &w->cfg.prekeys[i];

		if (!k->bits)
			k->bits = k->kty == EMU_KTY_OCT_HSM ? 256 : 2048;
		if (!k->ops)
			k->ops = emu_kops_default(k->kty);
		if (!emu_store_add_vault(w, k->mhsm, k->vault)) {
			snprintf(err, errlen, "%s: [key:%s.%s.%s]: bad vault name", path,
				 k->mhsm ? "mhsm" : "vault", k->vault, k->name);
			return -1;
		}
	}
	return 0;
}
