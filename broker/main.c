/*
 * keybrokerd: the key broker daemon. See docs/ and `keybrokerd --help`.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "audit.h"
#include "finish.h"
#include "json.h"
#include "kb_socket.h"
#include "keys.h"
#include "fdlimit.h"
#include "log.h"
#include "options.h"
#include "pool.h"
#include "server.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: keybrokerd -c FILE [--check]\n"
		"\n"
		"Serve wrap, unwrap and data keys for envelope encryption over a Unix socket,\n"
		"with key-encryption keys in a PKCS#11 token or Azure Key Vault / Managed HSM.\n"
		"\n"
		"  -c, --config FILE  the INI configuration (see keybrokerd.conf(5))\n"
		"      --check        validate the config and every key: a line per key, exit 0 or 1\n"
		"      --options      print every option: section, name, type, default, limits, doc\n"
		"  -h, --help         this help\n"
		"      --version      print the version\n"
		"\n"
		"Runs in the foreground and logs to stderr. SIGTERM or SIGINT stops it gracefully;\n"
		"SIGHUP reloads the config. Exit status: 0 done, 1 a config, key or runtime error,\n"
		"2 a command-line error.\n");
}

/* usage_error says what is wrong with the command line, then how to use it; returns 2. */
static int __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("keybrokerd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n\n", stderr);
	usage(stderr);
	return 2;
}

/* wiping_free: cJSON's buffers held request fields, plaintexts among them */
static void wiping_free(void *p)
{
	if (p) {
		OPENSSL_cleanse(p, malloc_usable_size(p));
		free(p);
	}
}

/* harden keeps DEKs and PINs out of core dumps and away from ptrace by peers. */
static void harden(void)
{
	struct rlimit none = { 0, 0 };

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		kb_warn("cannot mark the process non-dumpable: %s", strerror(errno));
	if (setrlimit(RLIMIT_CORE, &none) != 0)
		kb_warn("cannot set RLIMIT_CORE to 0: %s", strerror(errno));
}

/*
 * check is `--check`: one line per key, "ok" with what the key service says
 * of it, or "UNAVAILABLE" with why its service is down (stdout), or the
 * reason the config is refused (stderr), then a summary. It judges the
 * config as startup and SIGHUP do (kb_keyset_judge). Returns the exit
 * status: 0 when no key is refused and every key that answers is enabled,
 * else 1. A key whose service is down is no reason to refuse: the daemon
 * starts without it and serves it when it comes back.
 */
static int check(kb_broker *b, kb_config *cfg)
{
	int nkeys = cfg->nkeys, failed = 0, down = 0;
	kb_err *errs = calloc((size_t)(nkeys ? nkeys : 1), sizeof(*errs));
	kb_keyset *ks;
	kb_err err;

	if (errs == NULL) {
		kb_config_free(cfg);
		fprintf(stderr, "keybrokerd: out of memory\n");
		return 1;
	}
	failed = kb_keyset_judge(cfg, 1, &ks, errs) != KB_OK;
	if (ks == NULL) {
		fprintf(stderr, "keybrokerd: out of memory\n");
		free(errs);
		return 1;
	}
	b->ks = ks; /* no loop: kb_broker_use_keyset would schedule reopens */
	b->cfg = ks->cfg;
	b->keys = ks->keys;
	b->nkeys = ks->nkeys;
	for (int i = 0; i < b->nkeys; i++) {
		kb_key *k = &b->keys[i];
		kb_key_info *info;

		if (errs[i].code != KB_OK) {
			fprintf(stderr, "key %s: FAIL: %s: %s\n", k->conf->name, kb_code_name(errs[i].code),
				errs[i].msg);
			continue;
		}
		if (k->down) {
			printf("key %s: UNAVAILABLE: %s: %s (keybrokerd starts without it and serves it when its key service is back)\n",
			       k->conf->name, kb_code_name(k->down_err.code), k->down_err.msg);
			down++;
			fflush(stdout);
			continue;
		}
		info = calloc(1, sizeof(*info));
		if (info == NULL || k->ops->describe(k->state, 0, info, &err) != KB_OK) {
			fprintf(stderr, "key %s: FAIL: %s: %s\n", k->conf->name,
				info ? kb_code_name(err.code) : "internal", info ? err.msg : "out of memory");
			failed = 1;
		} else {
			printf("key %s: ok: %s %s %d-bit, %d version%s, latest %s, alg %s%s\n",
			       k->conf->name, k->ops->name, info->kty, info->bits, info->nversions,
			       info->nversions == 1 ? "" : "s", info->latest, kb_alg_name(info->alg),
			       info->enabled ? "" : " (DISABLED)");
			failed |= !info->enabled;
		}
		if (info)
			free(info->public_pem);
		free(info);
		fflush(stdout); /* the lines stay in key order when stdout and stderr meet */
	}
	if (failed || down == 0)
		printf("%s: %s (%d key%s)\n", b->cfg->file, failed ? "FAILED" : "ok", b->nkeys,
		       b->nkeys == 1 ? "" : "s");
	else
		printf("%s: ok (%d key%s, %d unavailable now)\n", b->cfg->file, b->nkeys, b->nkeys == 1 ? "" : "s", down);
	kb_keyset_unref(ks);
	free(errs);
	return failed;
}

static int serve(kb_broker *b, kb_config *cfg)
{
	kb_keyset *ks;
	kb_err err;
	int rc = 1;
	kb_job *left;

	b->cfg = cfg; /* until the keyset owns it */
	if (cfg->audit_log && kb_audit_open(cfg->audit_log, &b->audit, &err) != KB_OK) {
		kb_log_err("%s", err.msg);
		kb_config_free(cfg);
		return 1;
	}
	if (kb_cache_init(&b->cache, b->cfg->cache_capacity, b->cfg->allow_unlocked_memory, &err) != KB_OK) {
		kb_log_err("%s", err.msg);
		kb_config_free(cfg);
		kb_audit_close(b->audit);
		return 1;
	}
	kb_info("DEK cache: %d entries, %zu bytes %s", b->cfg->cache_capacity,
		b->cache.arena.bytes,
		b->cache.arena.locked ? "locked" : "NOT locked");
	b->nflights = 1024;
	b->flights = calloc(b->nflights, sizeof(*b->flights));
	if (b->flights == NULL) {
		kb_log_err("out of memory");
		kb_config_free(cfg);
		goto out;
	}
	if (kb_keyset_open(cfg, cfg->workers + 1, &ks, &err) != KB_OK) {
		kb_log_err("%s", err.msg);
		b->ks = NULL; /* the config went with the refused keyset */
		goto out;
	}
	kb_broker_use_keyset(b, ks);
	for (int i = 0; i < b->nkeys; i++)
		kb_info("key %s: backend %s, alg %s, cache ttl %llds%s", b->keys[i].conf->name,
			b->keys[i].ops->name, kb_alg_name(b->keys[i].conf->alg),
			(long long)(b->keys[i].ttl_ms / 1000), b->keys[i].down ? " (UNAVAILABLE: retrying)" : "");
	kb_info("max_request_bytes %zu%s", b->cfg->max_request_bytes,
		b->cfg->max_request_bytes_set ? "" : ": a batch of max_batch blobs of the largest key fits");
	/* connections, the KMS sockets, token sessions, kept-alive HTTPS connections (fdlimit.h) */
	kb_fdlimit_raise((uint64_t)b->cfg->max_connections + 256);
	if (kb_pool_start(b, b->cfg->workers, &b->pool, &err) != KB_OK) {
		kb_log_err("%s", err.msg);
		goto out;
	}
	if (kb_server_run(b, &err) != KB_OK)
		kb_log_err("%s", err.msg);
	else
		rc = 0;
	left = kb_pool_stop(b->pool);
	while (left) {
		kb_job *next = left->next;
		kb_job_finish(b, left);
		left = next;
	}
out:
	kb_cache_destroy(&b->cache); /* zeroes every DEK */
	kb_keyset_unref(b->ks);
	kb_audit_close(b->audit);
	free(b->flights);
	if (rc == 0)
		kb_info("stopped; the DEK cache is zeroed");
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'C' },
		{ "options", no_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	cJSON_Hooks hooks = { .malloc_fn = kb_json_malloc, .free_fn = wiping_free };
	const char *path = NULL;
	bool check_only = false;
	kb_broker b = { 0 };
	kb_config *cfg = NULL;
	char sock[108];
	kb_err err;
	int c;

	opterr = 0; /* usage_error says what is wrong, in our words */
	while ((c = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'C': check_only = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("keybrokerd %s\n", KB_VERSION); return 0;
		case 'O': kb_options_print(stdout); return 0;
		case ':': return usage_error("%s needs a value (-c FILE)", argv[optind - 1]);
		default:
			/* a long option given a value it does not take reports as its letter */
			if (optopt && strncmp(argv[optind - 1], "--", 2) == 0)
				return usage_error("%s takes no value", argv[optind - 1]);
			if (optopt)
				return usage_error("unknown option -%c", optopt);
			return usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind != argc)
		return usage_error("unexpected argument \"%s\" (options start with -)", argv[optind]);
	if (path == NULL)
		return usage_error("no configuration given: name it with -c FILE");
	harden();
	cJSON_InitHooks(&hooks);
	if (kb_config_load(path, &cfg, &err) != KB_OK) {
		fprintf(stderr, "keybrokerd: %s\n", err.msg);
		return 1;
	}
	kb_log_set_level((kb_log_level)cfg->log_level);
	if (cfg->socket == NULL) {
		if (kb_default_socket(sock, sizeof(sock)) < 0) {
			fprintf(stderr, "keybrokerd: no socket path: set [broker] socket\n");
			kb_config_free(cfg);
			return 1;
		}
		if ((cfg->socket = strdup(sock)) == NULL) {
			fprintf(stderr, "keybrokerd: out of memory\n");
			kb_config_free(cfg);
			return 1;
		}
	}
	b.uid = getuid();
	b.gid = getgid();
	b.started_ms = kb_now_ms();
	if (check_only)
		return check(&b, cfg);
	kb_server_block_signals();
	kb_info("keybrokerd %s starting with %s", KB_VERSION, path);
	return serve(&b, cfg);
}
