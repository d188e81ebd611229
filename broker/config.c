#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "blob.h"
#include "config.h"
#include "log.h"

typedef struct parse_state {
	kb_config *cfg;
	FILE *fp;          /* file input, or NULL for text */
	const char *text;  /* text input */
	char *buf;         /* the whole line most recently read */
	size_t bufcap;
	int line;          /* line most recently read */
	kb_err *err;
	bool failed;
	int fail_line;     /* line of the first failure */
} parse_state;

static kb_keyconf *key_section(parse_state *st, const char *section);

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (d == NULL)
		abort(); /* config parsing at startup: nothing sensible to do */
	return d;
}

/* the one rule for values is values.c's; these keep the parser's call sites short */
static bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	return kb_parse_int(s, lo, hi, out);
}

static bool parse_bool(const char *s, bool *out)
{
	return kb_parse_bool(s, out);
}

static int fail(parse_state *st, const char *section, const char *name, const char *fmt,
		const char *value)
{
	char why[256];

	snprintf(why, sizeof(why), fmt, value);
	kb_err_set(st->err, KB_E_BAD_REQUEST, "%s:%d: [%s] %s: %s%s", st->cfg->file, st->line, section,
		   name, why, kb_conf_comment_hint(value));
	st->failed = true;
	st->fail_line = st->line;
	return 0;
}

/* fail_line records a failure of the current line as a whole. */
static void fail_line(parse_state *st, const char *what)
{
	kb_err_set(st->err, KB_E_BAD_REQUEST, "%s:%d: %s", st->cfg->file, st->line, what);
	st->failed = true;
	st->fail_line = st->line;
}

/* the [broker] options broker_option() reads, for "did you mean" */
static const char *const broker_options[] = {
	"socket", "socket_mode", "socket_group", "workers", "max_request_bytes", "log_level",
	"cache_ttl", "cache_capacity", "allow_unlocked_memory", "max_connections", "max_inflight",
	"idle_timeout", "client_timeout", "request_timeout", "allow_uids", "allow_gids",
	"admin_uids", "admin_gids", "audit_log", "outage_grace", "cache_ttl_jitter",
	"max_connections_per_peer", "reserved_connections", "max_inflight_per_peer",
	"health_interval", "metrics_listen", "loop_call_max", "loop_wait_max",
};

static int broker_option(parse_state *st, const char *name, const char *value)
{
	kb_config *c = st->cfg;
	int64_t v;
	bool b;
	char why[200];

	if (!strcmp(name, "socket")) {
		if (*value != '/')
			return fail(st, "broker", name, "\"%s\" is not an absolute path", value);
		if (strlen(value) >= 108)
			return fail(st, "broker", name, "\"%s\" is longer than a Unix socket path may be (107)", value);
		free(c->socket);
		c->socket = xstrdup(value);
	} else if (!strcmp(name, "socket_mode")) {
		char *end;
		long m = strtol(value, &end, 8);
		if (*value == '\0' || *end != '\0' || m < 0 || m > 0777)
			return fail(st, "broker", name, "\"%s\" is not an octal mode such as 0660", value);
		if (m & 0007)
			return fail(st, "broker", name, "\"%s\" gives access to every user on the host; use 0600 or 0660 with socket_group", value);
		c->socket_mode = (mode_t)m;
	} else if (!strcmp(name, "socket_group")) {
		/* the server gives the socket to this group by name at startup */
		if (getgrnam(value) == NULL)
			return fail(st, "broker", name, "no group named \"%s\": create it, or name an existing group", value);
		free(c->socket_group);
		c->socket_group = xstrdup(value);
	} else if (!strcmp(name, "workers")) {
		if (!parse_int(value, 1, 256, &v))
			return fail(st, "broker", name, "\"%s\" is not a number from 1 to 256", value);
		c->workers = (int)v;
	} else if (!strcmp(name, "max_request_bytes")) {
		if (!kb_parse_size(value, &v) || v < 1024 || v > 16 * 1024 * 1024)
			return fail(st, "broker", name, "\"%s\" is not a size from 1k to 16m", value);
		c->max_request_bytes = (size_t)v;
	} else if (!strcmp(name, "log_level")) {
		int l = kb_log_parse_level(value);
		if (l < 0)
			return fail(st, "broker", name, "\"%s\" is not one of error, warn, info, debug", value);
		c->log_level = l;
	} else if (!strcmp(name, "cache_ttl")) {
		if (!kb_parse_duration(value, &c->cache_ttl_ms))
			return fail(st, "broker", name, "\"%s\" is not a duration such as 300, 300s, 5m or 1h", value);
	} else if (!strcmp(name, "cache_ttl_jitter")) {
		char *end;
		double f = strtod(value, &end);

		if (end == value || *end != '\0' || !(f >= 0.0 && f <= 0.5))
			return fail(st, "broker", name, "\"%s\" is not a fraction from 0 (off) to 0.5, e.g. 0.1", value);
		c->cache_ttl_jitter = f;
	} else if (!strcmp(name, "outage_grace")) {
		if (!kb_parse_duration(value, &c->outage_grace_ms))
			return fail(st, "broker", name, "\"%s\" is not a duration such as 0, 5m or 1h", value);
	} else if (!strcmp(name, "cache_capacity")) {
		if (!parse_int(value, 1, 1 << 20, &v))
			return fail(st, "broker", name, "\"%s\" is not a number of entries from 1 to 1048576", value);
		c->cache_capacity = (int)v;
	} else if (!strcmp(name, "allow_unlocked_memory")) {
		if (!parse_bool(value, &b))
			return fail(st, "broker", name, "\"%s\" is not yes or no", value);
		c->allow_unlocked_memory = b;
	} else if (!strcmp(name, "max_connections")) {
		if (!parse_int(value, 1, 100000, &v))
			return fail(st, "broker", name, "\"%s\" is not a number from 1 to 100000", value);
		c->max_connections = (int)v;
	} else if (!strcmp(name, "max_inflight")) {
		if (!parse_int(value, 1, 100000, &v))
			return fail(st, "broker", name, "\"%s\" is not a number from 1 to 100000", value);
		c->max_inflight = (int)v;
	} else if (!strcmp(name, "max_batch")) {
		if (!parse_int(value, 1, 100000, &v))
			return fail(st, "broker", name, "\"%s\" is not a number from 1 to 100000", value);
		c->max_batch = (int)v;
	} else if (!strcmp(name, "loop_call_max")) {
		if (!kb_parse_duration_us(value, &c->loop_call_max_us) || c->loop_call_max_us > 1000000)
			return fail(st, "broker", name, "\"%s\" is not a duration up to 1s, such as 200us (0 turns it off)",
				    value);
	} else if (!strcmp(name, "loop_wait_max")) {
		if (!kb_parse_duration_us(value, &c->loop_wait_max_us) || c->loop_wait_max_us > 1000000)
			return fail(st, "broker", name, "\"%s\" is not a duration up to 1s, such as 2ms (0 turns it off)",
				    value);
	} else if (!strcmp(name, "idle_timeout")) {
		if (!kb_parse_duration(value, &c->idle_timeout_ms))
			return fail(st, "broker", name, "\"%s\" is not a duration (0 turns it off)", value);
	} else if (!strcmp(name, "client_timeout")) {
		if (!kb_parse_duration(value, &c->client_timeout_ms) || c->client_timeout_ms == 0)
			return fail(st, "broker", name, "\"%s\" is not a positive duration", value);
	} else if (!strcmp(name, "request_timeout")) {
		if (!kb_parse_duration(value, &c->request_timeout_ms) || c->request_timeout_ms == 0)
			return fail(st, "broker", name, "\"%s\" is not a positive duration", value);
	} else if (!strcmp(name, "allow_uids")) {
		if (!kb_parse_idlist(value, false, &c->allow_uids, why, sizeof(why)))
			return fail(st, "broker", name, "%s", why);
	} else if (!strcmp(name, "allow_gids")) {
		if (!kb_parse_idlist(value, true, &c->allow_gids, why, sizeof(why)))
			return fail(st, "broker", name, "%s", why);
	} else if (!strcmp(name, "admin_uids")) {
		if (!kb_parse_idlist(value, false, &c->admin_uids, why, sizeof(why)))
			return fail(st, "broker", name, "%s", why);
	} else if (!strcmp(name, "admin_gids")) {
		if (!kb_parse_idlist(value, true, &c->admin_gids, why, sizeof(why)))
			return fail(st, "broker", name, "%s", why);
	} else if (!strcmp(name, "max_connections_per_peer")) {
		if (!parse_int(value, 1, 100000, &v))
			return fail(st, "broker", name, "\"%s\" is not a number from 1 to 100000", value);
		c->max_connections_per_peer = (int)v;
	} else if (!strcmp(name, "reserved_connections")) {
		if (!parse_int(value, 0, 100000, &v))
			return fail(st, "broker", name, "\"%s\" is not a number from 0 to 100000", value);
		c->reserved_connections = (int)v;
	} else if (!strcmp(name, "max_inflight_per_peer")) {
		if (!parse_int(value, 1, 10000000, &v))
			return fail(st, "broker", name, "\"%s\" is not a number from 1 to 10000000", value);
		c->max_inflight_per_peer = (int)v;
	} else if (!strcmp(name, "audit_log")) {
		free(c->audit_log);
		c->audit_log = xstrdup(value);
	} else if (!strcmp(name, "health_interval")) {
		if (!kb_parse_duration(value, &c->health_interval_ms) || c->health_interval_ms == 0)
			return fail(st, "broker", name, "\"%s\" is not a positive duration such as 30s", value);
	} else if (!strcmp(name, "metrics_listen")) {
		if (*value == '\0' || (strchr(value, ':') == NULL && strspn(value, "0123456789") != strlen(value)))
			return fail(st, "broker", name, "\"%s\" is not HOST:PORT such as 127.0.0.1:9464, or a PORT on loopback", value);
		free(c->metrics_listen);
		c->metrics_listen = xstrdup(value);
	} else {
		const char *near = kb_conf_nearest(name, broker_options,
						   (int)(sizeof(broker_options) / sizeof(broker_options[0])));
		if (near)
			return fail(st, "broker", name, "unknown option; did you mean %s?", near);
		return fail(st, "broker", name, "unknown option%s", "");
	}
	return 1;
}

static kb_keyconf *key_section(parse_state *st, const char *section)
{
	kb_config *c = st->cfg;
	const char *name = section + 4;
	kb_keyconf *kc;

	for (int i = 0; i < c->nkeys; i++)
		if (!strcmp(c->keys[i].name, name))
			return &c->keys[i];
	if (!kb_name_valid(name, strlen(name))) {
		kb_err_set(st->err, KB_E_BAD_REQUEST,
			   "%s:%d: [%s]: a key name is 1 to 45 characters from A-Z a-z 0-9 - _",
			   c->file, st->line, section);
		st->failed = true;
		st->fail_line = st->line;
		return NULL;
	}
	if (c->nkeys == KB_MAX_KEYS) {
		kb_err_set(st->err, KB_E_BAD_REQUEST, "%s:%d: more than %d keys", c->file, st->line,
			   KB_MAX_KEYS);
		st->failed = true;
		st->fail_line = st->line;
		return NULL;
	}
	kc = &c->keys[c->nkeys++];
	memset(kc, 0, sizeof(*kc));
	strcpy(kc->name, name);
	kc->file = c->file;
	kc->line = st->line;
	kc->cache_ttl_ms = -1;
	return kc;
}

static int key_option(parse_state *st, const char *section, kb_keyconf *kc, const char *name,
		      const char *value)
{
	double f;
	char *end;

	for (unsigned i = 0; i < KB_KEYCONF_NCORE; i++) {
		if (strcmp(name, kb_keyconf_core[i]) == 0) {
			if (kc->core_set & (1u << i))
				return fail(st, section, name, "is set twice in this section%s", "");
			kc->core_set |= 1u << i;
		}
	}
	if (!strcmp(name, "backend")) {
		if (strlen(value) >= sizeof(kc->backend))
			return fail(st, section, name, "\"%s\" is not a backend (pkcs11 or azure)", value);
		strcpy(kc->backend, value);
	} else if (!strcmp(name, "alg")) {
		kc->alg = kb_alg_parse(value);
		if (kc->alg == KB_ALG_NONE)
			return fail(st, section, name,
				    "\"%s\" is not one of RSA-OAEP, RSA-OAEP-256, RSA1_5, AES-KWP, A128KW, A192KW, A256KW",
				    value);
	} else if (!strcmp(name, "cache_ttl")) {
		if (!kb_parse_duration(value, &kc->cache_ttl_ms))
			return fail(st, section, name, "\"%s\" is not a duration such as 300, 300s, 5m or 1h", value);
	} else if (!strcmp(name, "cache_refresh_fraction")) {
		f = strtod(value, &end);
		if (end == value || *end != '\0' || !(f >= 0.0 && f < 1.0))
			return fail(st, section, name, "\"%s\" is not a fraction from 0 (off) to below 1, e.g. 0.2", value);
		kc->cache_refresh_fraction = f;
	} else if (!strcmp(name, "datakey_max_age")) {
		if (!kb_parse_duration(value, &kc->datakey_max_age_ms))
			return fail(st, section, name, "\"%s\" is not a duration (0 turns reuse off)", value);
	} else if (!strcmp(name, "datakey_max_uses")) {
		if (!parse_int(value, 0, INT64_MAX, &kc->datakey_max_uses))
			return fail(st, section, name, "\"%s\" is not a count (0: no limit)", value);
	} else if (!strcmp(name, "datakey_max_bytes")) {
		if (!kb_parse_size(value, &kc->datakey_max_bytes))
			return fail(st, section, name, "\"%s\" is not a size (0: no limit)", value);
	} else {
		/* a backend option, or a policy option: kept for whoever takes it */
		for (int i = 0; i < kc->nopts; i++)
			if (!strcmp(kc->opts[i].name, name))
				return fail(st, section, name, "is set twice in this section%s", "");
		kb_opt *o = realloc(kc->opts, sizeof(*o) * (size_t)(kc->nopts + 1));
		if (o == NULL)
			abort();
		kc->opts = o;
		o[kc->nopts].name = xstrdup(name);
		o[kc->nopts].value = xstrdup(value);
		o[kc->nopts].line = st->line;
		o[kc->nopts].taken = false;
		kc->nopts++;
	}
	return 1;
}

/* kms_option reads one option of a [kms:NAME] section (the face checks the key exists) */
static int kms_option(parse_state *st, const char *section, const char *name, const char *value)
{
	kb_config *c = st->cfg;
	kb_kmsconf *k = NULL;

	for (int i = 0; i < c->nkms; i++)
		if (!strcmp(c->kms[i].name, section + 4))
			k = &c->kms[i];
	if (k == NULL) {
		if (c->nkms == KB_MAX_KMS || !kb_name_valid(section + 4, strlen(section + 4)))
			return fail(st, section, name, "too many [kms:] sections, or \"%s\" is not a valid name", section + 4);
		k = &c->kms[c->nkms++];
		snprintf(k->name, sizeof(k->name), "%s", section + 4);
	}
	if (!strcmp(name, "socket")) {
		if (*value != '/' || strlen(value) >= 108)
			return fail(st, section, name, "\"%s\" is not an absolute path of at most 107 bytes", value);
		free(k->socket);
		k->socket = xstrdup(value);
	} else if (!strcmp(name, "key")) {
		if (!kb_name_valid(value, strlen(value)))
			return fail(st, section, name, "\"%s\" is not a key name", value);
		snprintf(k->key, sizeof(k->key), "%s", value);
	} else {
		return fail(st, section, name, "unknown option; [kms:NAME] takes socket and key%s", "");
	}
	return 1;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	parse_state *st = user;
	kb_keyconf *kc;

	if (st->failed)
		return 0;
	if (!strcmp(section, "broker"))
		return broker_option(st, name, value);
	if (!strncmp(section, "key:", 4)) {
		kc = key_section(st, section);
		return kc ? key_option(st, section, kc, name, value) : 0;
	}
	if (!strncmp(section, "kms:", 4))
		return kms_option(st, section, name, value);
	kb_err_set(st->err, KB_E_BAD_REQUEST,
		   "%s:%d: [%s]: unknown section; sections are [broker], [key:NAME] and [kms:NAME]",
		   st->cfg->file, st->line, section);
	st->failed = true;
	st->fail_line = st->line;
	return 0;
}

/*
 * strip_inline_comment ends line at a # or ; that starts it or follows a space
 * or tab, as the docs write comments after values. inih itself would take only the ;
 * (and leave a # in the value), so the one rule is applied here, to every
 * line, before inih sees it.
 */
static void strip_inline_comment(char *line)
{
	for (char *p = line; *p; p++) {
		if ((*p == '#' || *p == ';') && (p == line || p[-1] == ' ' || p[-1] == '\t')) {
			p[0] = '\n';
			p[1] = '\0';
			return;
		}
	}
}

/*
 * check_line looks at each whole line (in st->buf) before inih does, for what
 * inih would get wrong: it splits lines longer than its buffer, truncates
 * long section names, does not report section headers (so empty sections and
 * their line numbers would be lost), and goes on after a broken header. It
 * drops the line's inline comment first, so a comment never makes a line too
 * long. Returns str holding the line for inih (capacity num), or NULL (ending
 * the parse) after recording a failure.
 */
static char *check_line(parse_state *st, char *str, int num)
{
	char *p, *close;

	strip_inline_comment(st->buf);
	if (strlen(st->buf) > (size_t)num - 1) {
		fail_line(st, "the line is longer than 199 characters (not counting a comment), the most the config parser reads");
		return NULL;
	}
	p = strcpy(str, st->buf);
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '[')
		return str;
	close = strchr(p, ']');
	if (close == NULL) {
		fail_line(st, "syntax error: the section header has no closing ]");
		return NULL;
	}
	*close = '\0';
	if (close - p - 1 > 49) {
		fail_line(st, "the section name is longer than 49 characters (key names in the config are at most 45)");
		return NULL;
	}
	if (strncmp(p + 1, "key:", 4) == 0 && key_section(st, p + 1) == NULL)
		return NULL;
	*close = ']';
	return str;
}

/* readers count lines, since inih does not pass line numbers to handlers */
static char *read_file_line(char *str, int num, void *stream)
{
	parse_state *st = stream;

	if (st->failed || getline(&st->buf, &st->bufcap, st->fp) < 0)
		return NULL;
	st->line++;
	return check_line(st, str, num);
}

static char *read_text_line(char *str, int num, void *stream)
{
	parse_state *st = stream;
	const char *nl;
	size_t n;

	if (*st->text == '\0' || st->failed)
		return NULL;
	nl = strchr(st->text, '\n');
	n = nl ? (size_t)(nl - st->text) + 1 : strlen(st->text);
	if (n + 1 > st->bufcap) {
		char *b = realloc(st->buf, n + 1);
		if (b == NULL)
			abort(); /* config parsing at startup: nothing sensible to do */
		st->buf = b;
		st->bufcap = n + 1;
	}
	memcpy(st->buf, st->text, n);
	st->buf[n] = '\0';
	st->text += n;
	st->line++;
	return check_line(st, str, num);
}

static kb_config *config_new(const char *name)
{
	kb_config *c = calloc(1, sizeof(*c));

	if (c == NULL)
		abort();
	c->file = xstrdup(name);
	c->socket_mode = 0600;
	c->workers = 2;
	c->max_request_bytes = 65536;
	c->log_level = KB_LOG_INFO;
	c->cache_ttl_ms = 300 * 1000;
	c->health_interval_ms = 30 * 1000;
	c->cache_capacity = 100000; /* 6.9 MB locked: inside the default 8 MiB RLIMIT_MEMLOCK (docs/cache.md) */
	c->max_connections = 1024;
	c->max_inflight = 128;
	c->max_batch = 1024;
	c->loop_call_max_us = 200; /* schedule.h: SoftHSM's AES unwraps (~60 us), no network round trip */
	c->loop_wait_max_us = 2000; /* schedule.h: SoftHSM's RSA-2048 to 3072 unwraps, a key service on the same host */
	c->idle_timeout_ms = 10 * 60 * 1000; /* persistent clients reconnect through libkeybroker */
	c->client_timeout_ms = 30 * 1000;
	c->request_timeout_ms = 30 * 1000;
	c->max_connections_per_peer = -1;
	c->reserved_connections = -1;
	c->max_inflight_per_peer = -1;
	return c;
}

/* fair_shares derives the per-peer limits left unset, and checks that a reserve leaves room to connect. */
static void fair_shares(kb_config *c, kb_err *err, parse_state *st)
{
	if (c->max_connections_per_peer < 0)
		c->max_connections_per_peer = c->max_connections * 3 / 4 > 0 ? c->max_connections * 3 / 4 : 1;
	if (c->reserved_connections < 0)
		c->reserved_connections = c->max_connections >= 16 ? c->max_connections / 16 : c->max_connections > 1;
	if (c->max_inflight_per_peer < 0)
		c->max_inflight_per_peer = 16 * c->max_inflight;
	if (c->reserved_connections >= c->max_connections) {
		kb_err_set(err, KB_E_BAD_REQUEST,
			   "%s: [broker] reserved_connections (%d) leaves no connection of max_connections (%d): "
			   "make it smaller",
			   c->file, c->reserved_connections, c->max_connections);
		st->failed = true;
	}
}

static kb_code finish(parse_state *st, int rc, kb_config **out, kb_err *err)
{
	kb_config *c = st->cfg;

	/* inih goes on after a syntax error: report whichever came first */
	if (rc > 0 && (!st->failed || rc < st->fail_line)) {
		kb_err_set(err, KB_E_BAD_REQUEST, "%s:%d: syntax error: expected [section] or name = value",
			   c->file, rc);
		st->failed = true;
	} else if (rc < 0 && !st->failed) {
		kb_err_set(err, KB_E_INTERNAL, "%s: the config parser ran out of memory", c->file);
		st->failed = true;
	}
	for (int i = 0; !st->failed && i < c->nkeys; i++) {
		if (c->keys[i].backend[0] == '\0') {
			kb_err_set(err, KB_E_BAD_REQUEST, "%s:%d: [key:%s]: backend is missing (pkcs11 or azure)",
				   c->file, c->keys[i].line, c->keys[i].name);
			st->failed = true;
		}
	}
	if (!st->failed)
		fair_shares(c, err, st);
	if (st->failed) {
		kb_config_free(c);
		return err ? err->code : KB_E_BAD_REQUEST;
	}
	*out = c;
	return KB_OK;
}

kb_code kb_config_load(const char *path, kb_config **out, kb_err *err)
{
	parse_state st = { .err = err };
	int rc;

	st.fp = fopen(path, "r");
	if (st.fp == NULL)
		return kb_err_set(err, KB_E_BAD_REQUEST, "%s: cannot open the config: %s", path,
				  strerror(errno));
	st.cfg = config_new(path);
	rc = ini_parse_stream(read_file_line, &st, handler, &st);
	fclose(st.fp);
	free(st.buf);
	return finish(&st, rc, out, err);
}

kb_code kb_config_parse_string(const char *text, const char *name, kb_config **out, kb_err *err)
{
	parse_state st = { .err = err, .text = text };
	int rc;

	st.cfg = config_new(name);
	rc = ini_parse_stream(read_text_line, &st, handler, &st);
	free(st.buf);
	return finish(&st, rc, out, err);
}

void kb_config_free(kb_config *cfg)
{
	if (cfg == NULL)
		return;
	for (int i = 0; i < cfg->nkeys; i++) {
		for (int j = 0; j < cfg->keys[i].nopts; j++) {
			free(cfg->keys[i].opts[j].name);
			free(cfg->keys[i].opts[j].value);
		}
		free(cfg->keys[i].opts);
	}
	free(cfg->socket);
	free(cfg->socket_group);
	free(cfg->audit_log);
	for (int i = 0; i < cfg->nkms; i++)
		free(cfg->kms[i].socket);
	free(cfg->metrics_listen);
	free(cfg->file);
	free(cfg);
}
