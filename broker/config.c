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
#include "options.h"

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

/* broker_option reads one [broker] option through its row of the options table (options.h). */
static int broker_option(parse_state *st, const char *name, const char *value)
{
	const kb_option *o = kb_option_find("broker", name);
	const char *near;
	char why[256];

	if (o == NULL) {
		if ((near = kb_option_nearest("broker", name)) != NULL)
			return fail(st, "broker", name, "unknown option; did you mean %s?", near);
		return fail(st, "broker", name, "unknown option%s", "");
	}
	/* the refusal quotes the value, so fail's comment hint still sees it */
	if (!kb_option_set(o, st->cfg, value, why, sizeof(why)))
		return fail(st, "broker", name, "%s", why);
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
			if (!strcmp(kc->opts[i].name, name) && strcmp(name, "previous") != 0) /* previous: repeatable */
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
	c->max_request_bytes = 0; /* unset: sized in finish() and by the keys */
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

/* kms_keys checks that each [kms:NAME] has a socket and names a configured key (startup and reload alike). */
static void kms_keys(kb_config *c, kb_err *err, parse_state *st)
{
	for (int i = 0; i < c->nkms && !st->failed; i++) {
		const kb_kmsconf *k = &c->kms[i];
		bool found = false;

		for (int n = 0; n < c->nkeys && !found; n++)
			found = strcmp(c->keys[n].name, k->key) == 0;
		if (k->socket == NULL || k->key[0] == '\0')
			kb_err_set(err, KB_E_BAD_REQUEST, "%s: [kms:%s] needs socket and key", c->file, k->name);
		else if (!found)
			kb_err_set(err, KB_E_BAD_REQUEST,
				   "%s: [kms:%s] key = %s: there is no [key:%s] section; add it, or name another key",
				   c->file, k->name, k->key, k->key);
		else
			continue;
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
	/* until the keys are open and their sizes known (kb_keyset_judge): the longest name, RSA-4096 */
	c->max_request_bytes_set = c->max_request_bytes != 0;
	if (!c->max_request_bytes_set)
		c->max_request_bytes = kb_batch_request_bytes(c->max_batch,
							      kb_blob_len_max(KB_KEY_NAME_MAX, KB_BATCH_UNKNOWN_WRAP));
	if (!st->failed)
		kms_keys(c, err, st);
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
