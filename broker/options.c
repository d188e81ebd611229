/*
 * options.c: the table of configuration options, and reading a [broker]
 * value through its row (see options.h).
 */
#include <grp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyconf.h"
#include "log.h"
#include "options.h"
#include "values.h"

#define F(x) offsetof(kb_config, x)

static int check_socket(kb_config *c, const char *value, char *why, size_t cap)
{
	if (*value != '/')
		return snprintf(why, cap, "\"%s\" is not an absolute path", value), 0;
	if (strlen(value) >= 108)
		return snprintf(why, cap, "\"%s\" is longer than a Unix socket path may be (107)", value), 0;
	free(c->socket);
	if ((c->socket = strdup(value)) == NULL)
		abort(); /* config parsing at startup: nothing sensible to do */
	return 1;
}

static int check_mode(kb_config *c, const char *value, char *why, size_t cap)
{
	char *end;
	long m = strtol(value, &end, 8);

	if (*value == '\0' || *end != '\0' || m < 0 || m > 0777)
		return snprintf(why, cap, "\"%s\" is not an octal mode such as 0660", value), 0;
	if (m & 0007)
		return snprintf(why, cap, "\"%s\" gives access to every user on the host; use 0600 or 0660 with socket_group", value), 0;
	c->socket_mode = (mode_t)m;
	return 1;
}

static int check_group(kb_config *c, const char *value, char *why, size_t cap)
{
	/* the server gives the socket to this group by name at startup */
	if (getgrnam(value) == NULL)
		return snprintf(why, cap, "no group named \"%s\": create it, or name an existing group", value), 0;
	free(c->socket_group);
	if ((c->socket_group = strdup(value)) == NULL)
		abort();
	return 1;
}

static int check_level(kb_config *c, const char *value, char *why, size_t cap)
{
	int l = kb_log_parse_level(value);

	if (l < 0)
		return snprintf(why, cap, "\"%s\" is not one of error, warn, info, debug", value), 0;
	c->log_level = l;
	return 1;
}

static int check_listen(kb_config *c, const char *value, char *why, size_t cap)
{
	char host[256];
	unsigned port;

	if (!kb_parse_hostport(value, "127.0.0.1", host, sizeof(host), &port))
		return snprintf(why, cap,
				"\"%s\" is not HOST:PORT with a port up to 65535, such as 127.0.0.1:9464 "
				"(0.0.0.0:9464 for every interface), or a PORT on loopback", value), 0;
	free(c->metrics_listen);
	if ((c->metrics_listen = strdup(value)) == NULL)
		abort();
	return 1;
}

#define B "broker"
const kb_option kb_options[] = {
	{ B, "socket", "PATH", "$XDG_RUNTIME_DIR/keybroker.sock", "an absolute path of at most 107 bytes",
	  "the Unix socket; else /run/keybroker/keybroker.sock", KB_OK_CUSTOM, 0, 0, 0, NULL, check_socket },
	{ B, "socket_mode", "MODE", "0600", "no access for others", "mode of the socket (octal)", KB_OK_CUSTOM, 0, 0, 0,
	  NULL, check_mode },
	{ B, "socket_group", "GROUP", "the daemon's group", "an existing group", "group of the socket", KB_OK_CUSTOM, 0,
	  0, 0, NULL, check_group },
	{ B, "workers", "N", "2", "1 to 256", "threads that call the key services", KB_OK_INT, F(workers), 1, 256,
	  "\"%s\" is not a number from 1 to 256", NULL },
	{ B, "loop_call_max", "DURATION", "200us", "up to 1s; 0 off",
	  "a short PKCS#11 unwrap is made by the event loop itself on an idle broker", KB_OK_DURATION_US,
	  F(loop_call_max_us), 0, 1000000, "\"%s\" is not a duration up to 1s, such as 200us (0 turns it off)", NULL },
	{ B, "loop_wait_max", "DURATION", "2ms", "up to 1s; 0 off",
	  "a short miss of one client is waited for with the loop polling", KB_OK_DURATION_US, F(loop_wait_max_us), 0,
	  1000000, "\"%s\" is not a duration up to 1s, such as 2ms (0 turns it off)", NULL },
	{ B, "max_request_bytes", "SIZE", "a batch of max_batch blobs of the largest key", "1k to 16m",
	  "longest request line; unless set, a batch of max_batch blobs of the largest key configured fits",
	  KB_OK_SIZE, F(max_request_bytes), 1024, 16 * 1024 * 1024, "\"%s\" is not a size from 1k to 16m", NULL },
	{ B, "log_level", "LEVEL", "info", "error, warn, info or debug", "how much the daemon logs", KB_OK_CUSTOM, 0, 0,
	  0, NULL, check_level },
	{ B, "cache_ttl", "DURATION", "300s", "", "default lifetime of a cached DEK: the revocation point",
	  KB_OK_DURATION, F(cache_ttl_ms), 0, 0, "\"%s\" is not a duration such as 300, 300s, 5m or 1h", NULL },
	{ B, "cache_ttl_jitter", "FRACTION", "0", "0 to 0.5", "each cached DEK's TTL is cut by a random share up to this",
	  KB_OK_FRACTION, F(cache_ttl_jitter), 0, 500, "\"%s\" is not a fraction from 0 (off) to 0.5, e.g. 0.1", NULL },
	{ B, "outage_grace", "DURATION", "0", "", "how long past its TTL a cached DEK may be served while the key service cannot be reached",
	  KB_OK_DURATION, F(outage_grace_ms), 0, 0, "\"%s\" is not a duration such as 0, 5m or 1h", NULL },
	{ B, "cache_capacity", "N", "100000", "1 to 1048576", "most DEKs held; the least recently used is evicted",
	  KB_OK_INT, F(cache_capacity), 1, 1 << 20, "\"%s\" is not a number of entries from 1 to 1048576", NULL },
	{ B, "allow_unlocked_memory", "BOOL", "no", "", "run even if the cache cannot be locked in memory", KB_OK_BOOL,
	  F(allow_unlocked_memory), 0, 0, "\"%s\" is not yes or no", NULL },
	{ B, "max_connections", "N", "1024", "1 to 100000", "open client connections", KB_OK_INT, F(max_connections), 1,
	  100000, "\"%s\" is not a number from 1 to 100000", NULL },
	{ B, "max_inflight", "N", "128", "1 to 100000", "requests one connection may have waiting on the key service",
	  KB_OK_INT, F(max_inflight), 1, 100000, "\"%s\" is not a number from 1 to 100000", NULL },
	{ B, "max_batch", "N", "1024", "1 to 100000", "blobs in one batch request", KB_OK_INT, F(max_batch), 1, 100000,
	  "\"%s\" is not a number from 1 to 100000", NULL },
	{ B, "idle_timeout", "DURATION", "10m", "0 off", "close a connection that sent nothing for this long",
	  KB_OK_DURATION, F(idle_timeout_ms), 0, 0, "\"%s\" is not a duration (0 turns it off)", NULL },
	{ B, "client_timeout", "DURATION", "30s", "positive",
	  "close a connection that leaves a partial line, or its answers unread, for this long", KB_OK_DURATION,
	  F(client_timeout_ms), 1, 0, "\"%s\" is not a positive duration", NULL },
	{ B, "request_timeout", "DURATION", "30s", "positive", "the deadline of one call to a key service",
	  KB_OK_DURATION, F(request_timeout_ms), 1, 0, "\"%s\" is not a positive duration", NULL },
	{ B, "max_connections_per_peer", "N", "768", "1 to 100000; default 3/4 of max_connections",
	  "open connections of one peer", KB_OK_INT, F(max_connections_per_peer), 1, 100000,
	  "\"%s\" is not a number from 1 to 100000", NULL },
	{ B, "reserved_connections", "N", "64", "0 to 100000, less than max_connections; default 1/16 of it",
	  "the last connections, kept for uids that do not hold them", KB_OK_INT, F(reserved_connections), 0, 100000,
	  "\"%s\" is not a number from 0 to 100000", NULL },
	{ B, "max_inflight_per_peer", "N", "2048", "1 to 10000000; default 16 x max_inflight",
	  "requests of one peer, over all its connections, waiting on the key service", KB_OK_INT,
	  F(max_inflight_per_peer), 1, 10000000, "\"%s\" is not a number from 1 to 10000000", NULL },
	{ B, "allow_uids", "IDLIST", "the daemon's uid", "", "users that may connect", KB_OK_UIDS, F(allow_uids), 0, 0,
	  "%s", NULL },
	{ B, "allow_gids", "IDLIST", "none", "", "groups whose members may connect", KB_OK_GIDS, F(allow_gids), 0, 0,
	  "%s", NULL },
	{ B, "admin_uids", "IDLIST", "the daemon's uid and root", "", "users who may run rotate, flush and doctor",
	  KB_OK_UIDS, F(admin_uids), 0, 0, "%s", NULL },
	{ B, "admin_gids", "IDLIST", "none", "", "groups who may run the admin operations", KB_OK_GIDS, F(admin_gids), 0,
	  0, "%s", NULL },
	{ B, "audit_log", "FILE", "off", "", "a file to append one JSON line per operation to, or - for stderr",
	  KB_OK_STRING, F(audit_log), 0, 0, NULL, NULL },
	{ B, "health_interval", "DURATION", "30s", "positive", "how often each key's health check runs",
	  KB_OK_DURATION, F(health_interval_ms), 1, 0, "\"%s\" is not a positive duration such as 30s", NULL },
	{ B, "metrics_listen", "HOST:PORT", "off", "a port up to 65535; a host (0.0.0.0 for every interface)", "the operator endpoints /metrics, /healthz and /readyz over HTTP",
	  KB_OK_CUSTOM, 0, 0, 0, NULL, check_listen },

	/* [key:NAME]: read by config.c (key_option) and keys.c */
	{ "key", "backend", "NAME", "required", "pkcs11 or azure", "the key service", KB_OK_NONE, 0, 0, 0, NULL, NULL },
	{ "key", "alg", "ALG", "RSA-OAEP", "", "the wrap algorithm (AES keys: AES-KWP; Azure RSA keys: RSA-OAEP-256)",
	  KB_OK_NONE, 0, 0, 0, NULL, NULL },
	{ "key", "cache_ttl", "DURATION", "[broker] cache_ttl", "", "this key's DEK lifetime in the cache", KB_OK_NONE,
	  0, 0, 0, NULL, NULL },
	{ "key", "cache_ttl_jitter", "FRACTION", "[broker] cache_ttl_jitter", "0 to 0.5", "this key's TTL jitter",
	  KB_OK_NONE, 0, 0, 0, NULL, NULL },
	{ "key", "outage_grace", "DURATION", "[broker] outage_grace", "", "this key's outage grace", KB_OK_NONE, 0, 0, 0,
	  NULL, NULL },
	{ "key", "cache_refresh_fraction", "FRACTION", "0", "0 to below 1", "refresh-ahead in the last fraction of the TTL",
	  KB_OK_NONE, 0, 0, 0, NULL, NULL },
	{ "key", "datakey_max_age", "DURATION", "0", "", "data-key reuse: the same DEK for at most this long",
	  KB_OK_NONE, 0, 0, 0, NULL, NULL },
	{ "key", "datakey_max_uses", "N", "0", "", "data-key reuse: at most this many times", KB_OK_NONE, 0, 0, 0, NULL,
	  NULL },
	{ "key", "datakey_max_bytes", "SIZE", "0", "", "data-key reuse: for at most this many bytes", KB_OK_NONE, 0, 0, 0,
	  NULL, NULL },
	{ "key", "previous", "LOCATION", "none", "a pkcs11: URI or an https:// key URL; repeatable",
	  "where the key lived before (another object, token, key or vault): every version there keeps unwrapping, and rewrap moves its blobs here",
	  KB_OK_NONE, 0, 0, 0, NULL, NULL },
	{ "key", "allow_unwrap", "ACL", "unset", "uid, user, @gid or @group", "who may unwrap with this key", KB_OK_NONE,
	  0, 0, 0, NULL, NULL },
	{ "key", "allow_wrap", "ACL", "unset", "uid, user, @gid or @group", "who may wrap and get data keys", KB_OK_NONE,
	  0, 0, 0, NULL, NULL },
	{ "key", "allow_rewrap", "ACL", "unset", "uid, user, @gid or @group", "who may rewrap", KB_OK_NONE, 0, 0, 0, NULL,
	  NULL },
	{ "key", "allow_rotate", "ACL", "unset", "uid, user, @gid or @group", "who may rotate", KB_OK_NONE, 0, 0, 0, NULL,
	  NULL },
	{ "key", "allow_get", "ACL", "unset", "uid, user, @gid or @group", "who may get the key's versions", KB_OK_NONE,
	  0, 0, 0, NULL, NULL },

	/* [kms:NAME]: read by config.c (kms_option) */
	{ "kms", "socket", "PATH", "required", "an absolute path of at most 107 bytes", "the KMS v2 gRPC socket",
	  KB_OK_NONE, 0, 0, 0, NULL, NULL },
	{ "kms", "key", "NAME", "required", "a [key:NAME] of this config", "the key it serves", KB_OK_NONE, 0, 0, 0, NULL,
	  NULL },
};
#undef B

const int kb_noptions = (int)(sizeof(kb_options) / sizeof(kb_options[0]));

const kb_option *kb_option_find(const char *section, const char *name)
{
	for (int i = 0; i < kb_noptions; i++)
		if (strcmp(kb_options[i].section, section) == 0 && strcmp(kb_options[i].name, name) == 0)
			return &kb_options[i];
	return NULL;
}

const char *kb_option_nearest(const char *section, const char *word)
{
	const char *names[sizeof(kb_options) / sizeof(kb_options[0])];
	int n = 0;

	for (int i = 0; i < kb_noptions; i++)
		if (strcmp(kb_options[i].section, section) == 0)
			names[n++] = kb_options[i].name;
	return kb_conf_nearest(word, names, n);
}

int kb_option_set(const kb_option *o, kb_config *c, const char *value, char *why, size_t cap)
{
	void *f = (char *)c + o->field;
	int64_t v;
	bool ok;

	switch (o->kind) {
	case KB_OK_INT:
		if ((ok = kb_parse_int(value, o->lo, o->hi, &v)))
			*(int *)f = (int)v;
		break;
	case KB_OK_SIZE:
		if ((ok = kb_parse_size(value, &v) && v >= o->lo && v <= o->hi))
			*(size_t *)f = (size_t)v;
		break;
	case KB_OK_DURATION:
		ok = kb_parse_duration(value, &v) && v >= o->lo;
		if (ok)
			*(int64_t *)f = v;
		break;
	case KB_OK_DURATION_US:
		if ((ok = kb_parse_duration_us(value, &v) && v <= o->hi))
			*(int64_t *)f = v;
		break;
	case KB_OK_FRACTION: {
		char *end;
		double d = strtod(value, &end);

		if ((ok = end != value && *end == '\0' && d >= 0.0 && d <= (double)o->hi / 1000.0))
			*(double *)f = d;
		break;
	}
	case KB_OK_BOOL:
		ok = kb_parse_bool(value, (bool *)f);
		break;
	case KB_OK_UIDS:
	case KB_OK_GIDS:
		return kb_parse_idlist(value, o->kind == KB_OK_GIDS, (kb_idlist *)f, why, cap) ? 1 : 0;
	case KB_OK_STRING:
		free(*(char **)f);
		if ((*(char **)f = strdup(value)) == NULL)
			abort();
		return 1;
	case KB_OK_CUSTOM:
		return o->check(c, value, why, cap);
	default:
		snprintf(why, cap, "is not read here");
		return 0;
	}
	if (!ok)
		snprintf(why, cap, o->refusal, value);
	return ok ? 1 : 0;
}

size_t kb_batch_request_bytes(int max_batch, size_t longest_blob)
{
	return (size_t)max_batch * (longest_blob + 3) + KB_BATCH_LINE_BYTES;
}

void kb_options_print(FILE *out)
{
	for (int i = 0; i < kb_noptions; i++) {
		const kb_option *o = &kb_options[i];

		fprintf(out, "%s\t%s\t%s\t%s\t%s\t%s\n", o->section, o->name, o->type, o->def, o->limits, o->doc);
	}
}
