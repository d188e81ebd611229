/*
 * test_config: the INI config, its defaults, and errors that name the file,
 * the line and the option.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "options.h"
#include "blob.h"
#include "log.h"
#include "unit.h"

#define NAME "kb.conf"

static kb_config *cfg;
static kb_err err;

static kb_code parse(const char *text)
{
	kb_config_free(cfg);
	cfg = NULL;
	kb_err_clear(&err);
	return kb_config_parse_string(text, NAME, &cfg, &err);
}

static void expect_ok(const char *text)
{
	if (parse(text) != KB_OK)
		fail_msg("%s\n---\n%s", err.msg, text);
	assert_non_null(cfg);
}

/* expect_error checks that text is refused with every needle in the message. */
static void expect_error(const char *text, int line, const char *needle1, const char *needle2)
{
	char where[64];
	kb_code rc = parse(text);

	if (rc == KB_OK)
		fail_msg("accepted:\n%s", text);
	assert_int_equal(rc, KB_E_BAD_REQUEST);
	assert_null(cfg);
	snprintf(where, sizeof(where), NAME ":%d:", line);
	if (strncmp(err.msg, where, strlen(where)) != 0)
		fail_msg("\"%s\" does not start with %s", err.msg, where);
	if (needle1 && !strstr(err.msg, needle1))
		fail_msg("\"%s\" does not name %s", err.msg, needle1);
	if (needle2 && !strstr(err.msg, needle2))
		fail_msg("\"%s\" does not say %s", err.msg, needle2);
}

static int teardown(void **state)
{
	kb_config_free(cfg);
	cfg = NULL;
	return 0;
}

static void config_defaults_apply_to_an_empty_file(void **state)
{
	const char *const texts[] = { "", "[broker]\n", "; just a comment\n\n" };

	for (size_t i = 0; i < 3; i++) {
		expect_ok(texts[i]);
		assert_string_equal(cfg->file, NAME);
		assert_null(cfg->socket);
		assert_int_equal(cfg->socket_mode, 0600);
		assert_null(cfg->socket_group);
		assert_int_equal(cfg->workers, 2);
		/* no key open yet: max_batch blobs of a longest-named RSA-4096 key (keys.c sizes it by the keys) */
		assert_false(cfg->max_request_bytes_set);
		assert_int_equal(cfg->max_request_bytes,
				 kb_batch_request_bytes(1024, kb_blob_len_max(KB_KEY_NAME_MAX, KB_BATCH_UNKNOWN_WRAP)));
		assert_int_equal(cfg->log_level, KB_LOG_INFO);
		assert_int_equal(cfg->cache_ttl_ms, 300000);
		assert_int_equal(cfg->cache_capacity, 100000);
		assert_false(cfg->allow_unlocked_memory);
		assert_int_equal(cfg->max_connections, 1024);
		assert_int_equal(cfg->max_inflight, 128);
		assert_int_equal(cfg->idle_timeout_ms, 600000);
		assert_int_equal(cfg->max_connections_per_peer, 768);
		assert_int_equal(cfg->reserved_connections, 64);
		assert_int_equal(cfg->max_inflight_per_peer, 2048);
		assert_int_equal(cfg->client_timeout_ms, 30000);
		assert_int_equal(cfg->request_timeout_ms, 30000);
		assert_false(cfg->allow_uids.set);
		assert_false(cfg->allow_gids.set);
		assert_null(cfg->audit_log);
		assert_int_equal(cfg->nkeys, 0);
	}
}

static void config_every_broker_option_takes_its_valid_values(void **state)
{
	expect_ok("[broker]\n"
		  "socket = /run/kb/kb.sock\n"
		  "socket_mode = 0660\n"
		  "socket_group = nogroup\n"
		  "workers = 8\n"
		  "max_request_bytes = 1m\n"
		  "log_level = debug\n"
		  "cache_ttl = 5m\n"
		  "cache_capacity = 100\n"
		  "allow_unlocked_memory = yes\n"
		  "max_connections = 10\n"
		  "max_inflight = 3\n"
		  "idle_timeout = 1h\n"
		  "client_timeout = 1500ms\n"
		  "request_timeout = 2s\n"
		  "allow_uids = 0, 1000 root\n"
		  "allow_gids = 0,root\n"
		  "audit_log = -\n");
	assert_string_equal(cfg->socket, "/run/kb/kb.sock");
	assert_int_equal(cfg->socket_mode, 0660);
	assert_string_equal(cfg->socket_group, "nogroup");
	assert_int_equal(cfg->workers, 8);
	assert_int_equal(cfg->max_request_bytes, 1024 * 1024);
	assert_int_equal(cfg->log_level, KB_LOG_DEBUG);
	assert_int_equal(cfg->cache_ttl_ms, 300000);
	assert_int_equal(cfg->cache_capacity, 100);
	assert_true(cfg->allow_unlocked_memory);
	assert_int_equal(cfg->max_connections, 10);
	assert_int_equal(cfg->max_inflight, 3);
	assert_int_equal(cfg->idle_timeout_ms, 3600000);
	assert_int_equal(cfg->client_timeout_ms, 1500);
	assert_int_equal(cfg->request_timeout_ms, 2000);
	assert_true(cfg->allow_uids.set);
	assert_int_equal(cfg->allow_uids.n, 3);
	assert_int_equal(cfg->allow_uids.ids[0], 0);
	assert_int_equal(cfg->allow_uids.ids[1], 1000);
	assert_int_equal(cfg->allow_uids.ids[2], 0);
	assert_int_equal(cfg->allow_gids.n, 2);
	assert_string_equal(cfg->audit_log, "-");

	/* the other spellings and the edges of each range */
	expect_ok("[broker]\nworkers = 1\nmax_request_bytes = 1024\nlog_level = error\n"
		  "cache_capacity = 1\nallow_unlocked_memory = no\nmax_connections = 100000\n"
		  "max_inflight = 100000\nidle_timeout = 0\nallow_uids =\nsocket_mode = 0600\n");
	assert_int_equal(cfg->workers, 1);
	assert_int_equal(cfg->max_request_bytes, 1024);
	assert_int_equal(cfg->log_level, KB_LOG_ERROR);
	assert_int_equal(cfg->cache_capacity, 1);
	assert_false(cfg->allow_unlocked_memory);
	assert_int_equal(cfg->idle_timeout_ms, 0);
	assert_true(cfg->allow_uids.set);
	assert_int_equal(cfg->allow_uids.n, 0);
	expect_ok("[broker]\nworkers = 256\nmax_request_bytes = 16m\ncache_capacity = 1048576\n"
		  "allow_unlocked_memory = true\nlog_level = warn\n");
	assert_int_equal(cfg->workers, 256);
	assert_int_equal(cfg->max_request_bytes, 16 * 1024 * 1024);
	assert_int_equal(cfg->cache_capacity, 1048576);
	for (const char *const *b = (const char *const[]){ "yes", "true", "on", "1", NULL }; *b; b++) {
		char text[80];
		snprintf(text, sizeof(text), "[broker]\nallow_unlocked_memory = %s\n", *b);
		expect_ok(text);
		assert_true(cfg->allow_unlocked_memory);
	}
	for (const char *const *b = (const char *const[]){ "no", "false", "off", "0", NULL }; *b; b++) {
		char text[80];
		snprintf(text, sizeof(text), "[broker]\nallow_unlocked_memory = %s\n", *b);
		expect_ok(text);
		assert_false(cfg->allow_unlocked_memory);
	}
}

static void config_outage_grace_and_ttl_jitter_take_their_values(void **state)
{
	expect_ok("[broker]\n");
	assert_int_equal(cfg->outage_grace_ms, 0);
	assert_true(cfg->cache_ttl_jitter == 0.0);
	kb_config_free(cfg);
	cfg = NULL;
	expect_ok("[broker]\noutage_grace = 15m\ncache_ttl_jitter = 0.1\n");
	assert_int_equal(cfg->outage_grace_ms, 900000);
	assert_true(cfg->cache_ttl_jitter == 0.1);
	kb_config_free(cfg);
	cfg = NULL;
	expect_error("[broker]\noutage_grace = soon\n", 2, "outage_grace", "duration");
	expect_error("[broker]\ncache_ttl_jitter = 0.6\n", 2, "cache_ttl_jitter", "0.5");
	expect_error("[broker]\ncache_ttl_jitter = -0.1\n", 2, "cache_ttl_jitter", "fraction");
}

static void config_loop_call_max_takes_microseconds_up_to_a_second(void **state)
{
	static const struct {
		const char *text;
		int64_t us;
	} ok[] = { { "200us", 200 }, { "0", 0 }, { "1ms", 1000 }, { "1s", 1000000 }, { "1500us", 1500 } };

	expect_ok("[broker]\n");
	assert_int_equal(cfg->loop_call_max_us, 200);
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char text[64];

		kb_config_free(cfg);
		cfg = NULL;
		snprintf(text, sizeof(text), "[broker]\nloop_call_max = %s\n", ok[i].text);
		expect_ok(text);
		assert_int_equal(cfg->loop_call_max_us, ok[i].us);
	}
	kb_config_free(cfg);
	cfg = NULL;
	expect_error("[broker]\nloop_call_max = 2s\n", 2, "loop_call_max", "up to 1s");
	expect_error("[broker]\nloop_call_max = 5m\n", 2, "loop_call_max", "200us");
	expect_error("[broker]\nloop_call_max = 200US\n", 2, "loop_call_max", "duration");
	expect_error("[broker]\nloop_call_max = -1\n", 2, "loop_call_max", "duration");
}

static void config_loop_wait_max_takes_microseconds_up_to_a_second(void **state)
{
	expect_ok("[broker]\n");
	assert_int_equal(cfg->loop_wait_max_us, 2000);
	kb_config_free(cfg);
	cfg = NULL;
	expect_ok("[broker]\nloop_wait_max = 0\n");
	assert_int_equal(cfg->loop_wait_max_us, 0);
	kb_config_free(cfg);
	cfg = NULL;
	expect_ok("[broker]\nloop_wait_max = 750us\n");
	assert_int_equal(cfg->loop_wait_max_us, 750);
	kb_config_free(cfg);
	cfg = NULL;
	expect_error("[broker]\nloop_wait_max = 2s\n", 2, "loop_wait_max", "up to 1s");
	expect_error("[broker]\nloop_wait_max = fast\n", 2, "loop_wait_max", "2ms");
}

static void config_bad_broker_values_name_file_line_and_option(void **state)
{
	static const char *const bad[][2] = {
		{ "socket", "relative/kb.sock" },
		{ "socket", "/a/very/long/path/that/goes/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/and/on/kb.sock" },
		{ "socket_mode", "0666" },
		{ "socket_mode", "0607" },
		{ "socket_mode", "660x" },
		{ "socket_mode", "0999" },
		{ "socket_mode", "01777" },
		{ "workers", "0" },
		{ "workers", "257" },
		{ "workers", "two" },
		{ "workers", "2.5" },
		{ "max_request_bytes", "1023" },
		{ "max_request_bytes", "17m" },
		{ "max_request_bytes", "64q" },
		{ "log_level", "verbose" },
		{ "cache_ttl", "5x" },
		{ "cache_capacity", "0" },
		{ "cache_capacity", "1048577" },
		{ "cache_capacity", "-5" },
		{ "allow_unlocked_memory", "maybe" },
		{ "max_connections", "0" },
		{ "max_connections", "100001" },
		{ "max_inflight", "0" },
		{ "idle_timeout", "forever" },
		{ "client_timeout", "0" },
		{ "client_timeout", "-1" },
		{ "request_timeout", "0s" },
		{ "allow_uids", "root, no-such-user-kbtest" },
		{ "allow_uids", "-1" },
		{ "allow_gids", "no-such-group-kbtest" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[512], opt[64];

		/* comments and blank lines count: the bad line is line 5 */
		snprintf(text, sizeof(text), "; keybroker\n\n[broker]\nworkers = 2\n%s = %s\nlog_level = info\n",
			 bad[i][0], bad[i][1]);
		snprintf(opt, sizeof(opt), "] %s:", bad[i][0]);
		expect_error(text, 5, opt, NULL);
		assert_non_null(strstr(err.msg, "[broker]"));
	}
}

static void config_durations_take_plain_seconds_s_ms_m_h_and_d(void **state)
{
	static const struct {
		const char *s;
		int64_t ms;
	} good[] = {
		{ "300", 300000 }, { "300s", 300000 }, { "5m", 300000 }, { "1h", 3600000 },
		{ "1500ms", 1500 }, { "0", 0 },         { "1d", 86400000 }, { "0ms", 0 },
	};
	static const char *const bad[] = { "5x", "-1", "", "s", "ms", "5 m", " 5", "5s ", "1.5s",
					   "0x10", "+5", "5M", "99999999999999999999",
					   "9223372036854775807ms0", "999999999999999999h" };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int64_t ms = -1;
		if (!kb_parse_duration(good[i].s, &ms))
			fail_msg("\"%s\" was refused", good[i].s);
		assert_int_equal(ms, good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t ms;
		if (kb_parse_duration(bad[i], &ms))
			fail_msg("\"%s\" was taken for %lld ms", bad[i], (long long)ms);
	}
	/* and through the config */
	expect_ok("[broker]\ncache_ttl = 1500ms\n");
	assert_int_equal(cfg->cache_ttl_ms, 1500);
	expect_error("[broker]\ncache_ttl = 5x\n", 2, "cache_ttl", "5x");
	expect_error("[broker]\n\ncache_ttl = s\n", 3, "cache_ttl", NULL);
	expect_error("[broker]\ncache_ttl = -1\n", 2, "cache_ttl", NULL);
	expect_error("[broker]\ncache_ttl =\n", 2, "cache_ttl", NULL);
}

static void config_booleans_are_read_in_any_case(void **state)
{
	static const char *const yes[] = { "yes", "Yes", "TRUE", "on", "On", "1" };
	static const char *const no[] = { "no", "NO", "false", "False", "off", "0" };
	static const char *const bad[] = { "", "y", "n", "2", "yes ", "enabled", "0x1" };
	bool b;

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		if (!kb_parse_bool(yes[i], &b) || !b)
			fail_msg("\"%s\" was not read as yes", yes[i]);
		b = true;
		if (!kb_parse_bool(no[i], &b) || b)
			fail_msg("\"%s\" was not read as no", no[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (kb_parse_bool(bad[i], &b))
			fail_msg("\"%s\" was taken for %s", bad[i], b ? "yes" : "no");
	/* and through the config: the broker reads them as the backends and the emulator do */
	expect_ok("[broker]\nallow_unlocked_memory = Yes\n");
	assert_true(cfg->allow_unlocked_memory);
	expect_error("[broker]\nallow_unlocked_memory = maybe\n", 2, "allow_unlocked_memory", "maybe");
}

static void config_sizes_take_bytes_k_and_m(void **state)
{
	int64_t v = 0;

	assert_true(kb_parse_size("65536", &v));
	assert_int_equal(v, 65536);
	assert_true(kb_parse_size("64k", &v));
	assert_int_equal(v, 65536);
	assert_true(kb_parse_size("64KiB", &v));
	assert_int_equal(v, 65536);
	assert_true(kb_parse_size("1m", &v));
	assert_int_equal(v, 1048576);
	assert_true(kb_parse_size("1M", &v));
	assert_int_equal(v, 1048576);
	assert_false(kb_parse_size("", &v));
	assert_false(kb_parse_size("k", &v));
	assert_false(kb_parse_size("-1", &v));
	assert_false(kb_parse_size("1g", &v));
	assert_false(kb_parse_size("99999999999999999m", &v));
}

static void config_unknown_broker_option_is_refused_naming_it_and_its_line(void **state)
{
	expect_error("[broker]\nworkers = 2\n\nsokcet = /tmp/x\n", 4, "sokcet", "unknown option");
}

static void config_unknown_section_is_refused_naming_it_and_its_line(void **state)
{
	expect_error("[broker]\nworkers = 2\n[brokre]\nworkers = 3\n", 4, "[brokre]", "unknown section");
	expect_error("[keys:a]\nbackend = pkcs11\n", 2, "[keys:a]", "unknown section");
}

static void config_option_before_any_section_is_refused(void **state)
{
	kb_code rc = parse("workers = 2\n");

	assert_int_not_equal(rc, KB_OK);
	assert_non_null(strstr(err.msg, NAME ":1:"));
}

static void config_syntax_error_names_its_line(void **state)
{
	expect_error("[broker]\nworkers = 2\nthis line has no equals sign\n", 3, "syntax error", NULL);
}

static void config_unclosed_section_header_is_reported_at_its_line(void **state)
{
	/* not as an error about the lines after it */
	expect_error("[broker\nworkers = 2\n", 1, "syntax error", NULL);
}

static void config_bad_key_section_name_is_refused(void **state)
{
	expect_error("[broker]\n[key:bad name]\nbackend = pkcs11\n", 2, "[key:bad name]", "key name");
	expect_error("[key:]\nbackend = pkcs11\n", 1, "[key:]", "key name");
	expect_error("[key:a.b]\nbackend = pkcs11\n", 1, "[key:a.b]", "key name");
}

/* long_key_section returns "[key:kkk...]\nbackend = pkcs11\n" with an n-character name. */
static const char *long_key_section(size_t n, char *name)
{
	static char text[256];

	memset(name, 'k', n);
	name[n] = '\0';
	snprintf(text, sizeof(text), "[key:%s]\nbackend = pkcs11\n", name);
	return text;
}

/* inih holds section names of up to 49 characters, so "key:" leaves 45 for the name */
static void config_key_name_of_45_characters_is_kept_whole(void **state)
{
	char name[80];

	expect_ok(long_key_section(45, name));
	assert_int_equal(cfg->nkeys, 1);
	assert_string_equal(cfg->keys[0].name, name);
}

static void config_key_name_over_45_characters_is_refused(void **state)
{
	char name[80];

	expect_error(long_key_section(46, name), 1, "at most 45", NULL);
	expect_error(long_key_section(65, name), 1, "at most 45", NULL);
}

static void config_key_section_without_backend_is_refused(void **state)
{
	kb_code rc = parse("[key:rsa]\nalg = RSA-OAEP\nmodule = /x.so\n");

	assert_int_equal(rc, KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, "[key:rsa]"));
	assert_non_null(strstr(err.msg, "backend is missing"));
}

static void config_key_section_without_backend_names_its_header_line(void **state)
{
	expect_error("[broker]\n\n[key:rsa]\n; comment\nalg = RSA-OAEP\n", 3, "[key:rsa]", "backend");
}

static void config_empty_key_section_is_refused(void **state)
{
	expect_error("[broker]\n[key:rsa]\n", 2, "[key:rsa]", "backend");
}

static void config_key_section_keeps_core_settings(void **state)
{
	kb_keyconf *kc;

	expect_ok("[key:aes]\nbackend = pkcs11\nalg = CKM_AES_KEY_WRAP_PAD\ncache_ttl = 2s\n"
		  "cache_refresh_fraction = 0.25\ndatakey_max_age = 1m\ndatakey_max_uses = 100\n"
		  "datakey_max_bytes = 1m\n"
		  "[key:rsa]\nbackend = azure\n");
	assert_int_equal(cfg->nkeys, 2);
	kc = &cfg->keys[0];
	assert_string_equal(kc->name, "aes");
	assert_string_equal(kc->backend, "pkcs11");
	assert_string_equal(kc->file, NAME);
	assert_int_equal(kc->alg, KB_ALG_AES_KWP);
	assert_int_equal(kc->cache_ttl_ms, 2000);
	assert_true(kc->cache_refresh_fraction > 0.249 && kc->cache_refresh_fraction < 0.251);
	assert_int_equal(kc->datakey_max_age_ms, 60000);
	assert_int_equal(kc->datakey_max_uses, 100);
	assert_int_equal(kc->datakey_max_bytes, 1048576);
	assert_int_equal(kc->nopts, 0);
	/* unset per-key settings inherit */
	kc = &cfg->keys[1];
	assert_string_equal(kc->name, "rsa");
	assert_int_equal(kc->alg, KB_ALG_NONE);
	assert_true(kc->cache_ttl_ms < 0);
	assert_true(kc->cache_refresh_fraction == 0.0);
	assert_int_equal(kc->datakey_max_age_ms, 0);
}

static void config_bad_key_settings_name_file_line_and_option(void **state)
{
	static const char *const bad[][2] = {
		{ "alg", "ROT13" },
		{ "backend", "a-backend-name-too-long" },
		{ "cache_ttl", "5x" },
		{ "cache_refresh_fraction", "1" },
		{ "cache_refresh_fraction", "-0.1" },
		{ "cache_refresh_fraction", "half" },
		{ "cache_refresh_fraction", "nan" },
		{ "datakey_max_age", "soon" },
		{ "datakey_max_uses", "-1" },
		{ "datakey_max_uses", "many" },
		{ "datakey_max_bytes", "1g" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256], opt[64];

		/* the backend line is left out when backend itself is the bad option */
		snprintf(text, sizeof(text), "[broker]\n[key:aes]\n%s\n\n%s = %s\n",
			 strcmp(bad[i][0], "backend") ? "backend = pkcs11" : "# no backend yet",
			 bad[i][0], bad[i][1]);
		snprintf(opt, sizeof(opt), "[key:aes] %s:", bad[i][0]);
		expect_error(text, 5, opt, bad[i][1]);
	}
}

static void config_backend_options_are_kept_with_their_lines_for_the_backend(void **state)
{
	kb_keyconf *kc;
	const char *v;
	int line = -1;

	expect_ok("[broker]\n"                             /* 1 */
		  "[key:rsa]\n"                            /* 2 */
		  "backend = pkcs11\n"                     /* 3 */
		  "module = /usr/lib/softhsm/libsofthsm2.so\n" /* 4 */
		  "; a comment\n"                          /* 5 */
		  "uri = pkcs11:token=kb;object=rsa\n"     /* 6 */
		  "pin_file = /etc/kb/pin\n"               /* 7 */
		  "allow_unwrap = 1000\n");                /* 8 */
	kc = &cfg->keys[0];
	assert_int_equal(kc->nopts, 4);
	assert_string_equal(kc->opts[0].name, "module");
	assert_string_equal(kc->opts[0].value, "/usr/lib/softhsm/libsofthsm2.so");
	assert_int_equal(kc->opts[0].line, 4);
	assert_string_equal(kc->opts[1].name, "uri");
	assert_string_equal(kc->opts[1].value, "pkcs11:token=kb;object=rsa");
	assert_int_equal(kc->opts[1].line, 6);
	assert_int_equal(kc->opts[2].line, 7);
	assert_string_equal(kc->opts[3].name, "allow_unwrap");
	assert_int_equal(kc->opts[3].line, 8);
	for (int i = 0; i < kc->nopts; i++)
		assert_false(kc->opts[i].taken);

	v = kb_keyconf_take(kc, "uri", &line);
	assert_string_equal(v, "pkcs11:token=kb;object=rsa");
	assert_int_equal(line, 6);
	assert_true(kc->opts[1].taken);
	assert_false(kc->opts[0].taken);
	assert_false(kc->opts[2].taken);
	assert_null(kb_keyconf_take(kc, "pin_env", &line));
	assert_int_equal(line, 0);
	assert_string_equal(kb_keyconf_take(kc, "module", NULL), "/usr/lib/softhsm/libsofthsm2.so");
	assert_true(kc->opts[0].taken);

	/* a backend reports a bad value at the option's own line */
	assert_int_equal(kb_keyconf_bad(kc, "pin_file", &err, "cannot read %s", "/etc/kb/pin"),
			 KB_E_BAD_REQUEST);
	assert_string_equal(err.msg, NAME ":7: [key:rsa] pin_file: cannot read /etc/kb/pin");
}

static void config_option_set_twice_in_a_key_section_is_refused(void **state)
{
	expect_error("[key:rsa]\nbackend = pkcs11\nmodule = /a.so\nuri = pkcs11:x\nmodule = /b.so\n", 5,
		     "module", "twice");
}

static void config_core_key_option_set_twice_is_refused(void **state)
{
	expect_error("[key:rsa]\nbackend = pkcs11\nalg = RSA-OAEP\nalg = RSA-OAEP-256\n", 4, "alg", "twice");
}

static void config_long_option_line_is_read_whole_or_refused(void **state)
{
	char text[600], path[300];
	kb_code rc;

	/* a 250-byte audit log path: either it is kept whole, or the line is refused */
	path[0] = '/';
	memset(path + 1, 'a', 249);
	path[250] = '\0';
	snprintf(text, sizeof(text), "[broker]\naudit_log = %s\nworkers = 3\n", path);
	rc = parse(text);
	if (rc == KB_OK) {
		assert_string_equal(cfg->audit_log, path);
		assert_int_equal(cfg->workers, 3);
	} else {
		assert_non_null(strstr(err.msg, NAME ":2:"));
	}
}

static void config_load_reads_a_file_with_the_same_line_numbers(void **state)
{
	char path[] = "/tmp/kbtest-config-XXXXXX";
	int fd = mkstemp(path);
	const char *text = "[broker]\nworkers = 4\n\nbogus = 1\n";
	kb_config *c = NULL;
	char where[64];

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(kb_config_load(path, &c, &err), KB_E_BAD_REQUEST);
	snprintf(where, sizeof(where), "%s:4:", path);
	assert_non_null(strstr(err.msg, where));
	assert_non_null(strstr(err.msg, "bogus"));
	unlink(path);
	assert_int_equal(kb_config_load("/nonexistent/kb.conf", &c, &err), KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, "/nonexistent/kb.conf"));
}

static void config_inline_comments_after_a_space_or_tab_are_ignored(void **state)
{
	expect_ok("[broker]   # the daemon\n"
		  "socket = /run/kb/kb.sock    # holds: the socket\n"
		  "workers = 4\t; four threads\n"
		  "  # an indented comment line\n"
		  "cache_ttl = 5m # five minutes\n"
		  "[key:rsa] ; the RSA key\n"
		  "backend = pkcs11   # or azure\n"
		  "module = /usr/lib/softhsm/libsofthsm2.so\t# SoftHSM\n"
		  "uri = pkcs11:token=kb;object=rsa   ; the ; inside the URI stays\n");
	assert_string_equal(cfg->socket, "/run/kb/kb.sock");
	assert_int_equal(cfg->workers, 4);
	assert_int_equal(cfg->cache_ttl_ms, 300000);
	assert_string_equal(cfg->keys[0].backend, "pkcs11");
	assert_string_equal(cfg->keys[0].opts[0].value, "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(cfg->keys[0].opts[1].value, "pkcs11:token=kb;object=rsa");
	assert_int_equal(cfg->keys[0].opts[1].line, 9);
}

static void config_long_comment_after_a_value_does_not_make_the_line_too_long(void **state)
{
	char text[1000], comment[400];

	memset(comment, 'c', 300);
	comment[300] = '\0';
	snprintf(text, sizeof(text), "[broker]\nworkers = 4   # %s\n# %s\ncache_ttl = 1m\n", comment, comment);
	expect_ok(text);
	assert_int_equal(cfg->workers, 4);
	assert_int_equal(cfg->cache_ttl_ms, 60000);
}

static void config_comment_without_a_space_before_it_is_refused_with_a_hint(void **state)
{
	expect_error("[broker]\ncache_ttl = 5m#five minutes\n", 2, "\"5m#five minutes\"", "a comment starts with #");
	expect_error("[broker]\nworkers = 4; four\n", 2, "workers", "a comment starts with #");
	expect_error("[broker]\nworkers = 4 // four\n", 2, "workers", "a comment starts with #");
	/* a wrong value with nothing like a comment in it gets no hint */
	expect_error("[broker]\nworkers = four\n", 2, "workers", NULL);
	assert_null(strstr(err.msg, "comment"));
}

static void config_backend_error_about_a_value_with_a_comment_gets_the_hint(void **state)
{
	expect_ok("[key:k]\nbackend = pkcs11\npin_file = /etc/kb/pin#secret\n");
	assert_int_equal(kb_keyconf_bad(&cfg->keys[0], "pin_file", &err, "cannot read it"), KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, NAME ":3: [key:k] pin_file: cannot read it"));
	assert_non_null(strstr(err.msg, "a comment starts with #"));
	/* a PKCS#11 URI's own ; is no comment */
	expect_ok("[key:k]\nbackend = pkcs11\nuri = pkcs11:token=kb;object=x\n");
	kb_keyconf_bad(&cfg->keys[0], "uri", &err, "no such token");
	assert_null(strstr(err.msg, "comment"));
}

static void config_socket_group_must_name_an_existing_group(void **state)
{
	expect_error("[broker]\nsocket_mode = 0660\nsocket_group = nosuchgroup-kb\n", 3,
		     "socket_group", "no group named \"nosuchgroup-kb\"");
	expect_ok("[broker]\nsocket_mode = 0660\nsocket_group = root\n");
	assert_string_equal(cfg->socket_group, "root");
}

static void config_misspelt_broker_option_suggests_the_nearest(void **state)
{
	expect_error("[broker]\ncache_tll = 5m\n", 2, "cache_tll: unknown option", "did you mean cache_ttl?");
	expect_error("[broker]\nmax_conections = 5\n", 2, "max_conections", "did you mean max_connections?");
	expect_error("[broker]\nallow_uid = root\n", 2, "allow_uid", "did you mean allow_uids?");
	/* nothing near: no guess */
	expect_error("[broker]\ncolour = blue\n", 2, "colour: unknown option", NULL);
	assert_null(strstr(err.msg, "did you mean"));
}

static void config_misspelt_key_option_suggests_a_core_or_backend_option(void **state)
{
	kb_keyconf *kc;

	expect_ok("[key:k]\nbackend = pkcs11\ncache_tll = 5m\n");
	assert_int_equal(kb_keyconf_unknown(&cfg->keys[0], &err), KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, NAME ":3: [key:k] cache_tll: unknown option for backend pkcs11"));
	assert_non_null(strstr(err.msg, "did you mean cache_ttl?"));

	/* the backend's own options are known by what it asked for */
	expect_ok("[key:k]\nbackend = pkcs11\nmodule = /m.so\npin_flie = /p\n");
	kc = &cfg->keys[0];
	kb_keyconf_take(kc, "module", NULL);
	kb_keyconf_take(kc, "pin_file", NULL);
	kb_keyconf_take(kc, "pin_env", NULL);
	assert_int_equal(kb_keyconf_unknown(kc, &err), KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, NAME ":4: [key:k] pin_flie: unknown option"));
	assert_non_null(strstr(err.msg, "did you mean pin_file?"));

	expect_ok("[key:k]\nbackend = pkcs11\ncolour = blue\n");
	kb_keyconf_unknown(&cfg->keys[0], &err);
	assert_null(strstr(err.msg, "did you mean"));

	/* every option taken: nothing to report */
	expect_ok("[key:k]\nbackend = pkcs11\nmodule = /m.so\n");
	kb_keyconf_take(&cfg->keys[0], "module", NULL);
	assert_int_equal(kb_keyconf_unknown(&cfg->keys[0], &err), KB_OK);
}

static void config_nearest_name_is_one_slip_away_in_short_words(void **state)
{
	static const char *const names[] = { "alg", "uri", "module", "cache_ttl", "datakey_max_uses" };

	assert_string_equal(kb_conf_nearest("algg", names, 5), "alg");
	assert_string_equal(kb_conf_nearest("urI", names, 5), "uri");
	assert_string_equal(kb_conf_nearest("moduel", names, 5), "module");     /* a swap counts once */
	assert_string_equal(kb_conf_nearest("datakey_max_use", names, 5), "datakey_max_uses");
	assert_string_equal(kb_conf_nearest("url", names, 5), "uri");
	assert_null(kb_conf_nearest("arx", names, 5));                          /* two slips in three letters */
	assert_null(kb_conf_nearest("uri", names, 5));                          /* itself is no suggestion */
	assert_null(kb_conf_nearest("backend", names, 5));
}

static const struct CMUnitTest tests[] = {
	CASE_WITH(config_defaults_apply_to_an_empty_file, NULL, teardown, "config - defaults apply to an empty file"),
	CASE_WITH(config_every_broker_option_takes_its_valid_values, NULL, teardown, "config - every broker option takes its valid values"),
	CASE_WITH(config_bad_broker_values_name_file_line_and_option, NULL, teardown, "config - bad broker values name file, line and option"),
	CASE_WITH(config_outage_grace_and_ttl_jitter_take_their_values, NULL, teardown, "config - outage_grace and ttl_jitter take their values"),
	CASE_WITH(config_loop_call_max_takes_microseconds_up_to_a_second, NULL, teardown, "config - loop_call_max takes microseconds up to a second"),
	CASE_WITH(config_loop_wait_max_takes_microseconds_up_to_a_second, NULL, teardown, "config - loop_wait_max takes microseconds up to a second"),
	CASE_WITH(config_durations_take_plain_seconds_s_ms_m_h_and_d, NULL, teardown, "config - durations take plain seconds, s, ms, m, h and d"),
	CASE_WITH(config_booleans_are_read_in_any_case, NULL, teardown, "config - booleans are read in any case"),
	CASE_WITH(config_sizes_take_bytes_k_and_m, NULL, teardown, "config - sizes take bytes, k and m"),
	CASE_WITH(config_unknown_broker_option_is_refused_naming_it_and_its_line, NULL, teardown, "config - unknown broker option is refused naming it and its line"),
	CASE_WITH(config_unknown_section_is_refused_naming_it_and_its_line, NULL, teardown, "config - unknown section is refused naming it and its line"),
	CASE_WITH(config_option_before_any_section_is_refused, NULL, teardown, "config - option before any section is refused"),
	CASE_WITH(config_syntax_error_names_its_line, NULL, teardown, "config - syntax error names its line"),
	CASE_WITH(config_unclosed_section_header_is_reported_at_its_line, NULL, teardown, "config - unclosed section header is reported at its line"),
	CASE_WITH(config_bad_key_section_name_is_refused, NULL, teardown, "config - bad key section name is refused"),
	CASE_WITH(config_key_name_of_45_characters_is_kept_whole, NULL, teardown, "config - key name of 45 characters is kept whole"),
	CASE_WITH(config_key_name_over_45_characters_is_refused, NULL, teardown, "config - key name over 45 characters is refused"),
	CASE_WITH(config_key_section_without_backend_is_refused, NULL, teardown, "config - key section without backend is refused"),
	CASE_WITH(config_key_section_without_backend_names_its_header_line, NULL, teardown, "config - key section without backend names its header line"),
	CASE_WITH(config_empty_key_section_is_refused, NULL, teardown, "config - empty key section is refused"),
	CASE_WITH(config_key_section_keeps_core_settings, NULL, teardown, "config - key section keeps core settings"),
	CASE_WITH(config_bad_key_settings_name_file_line_and_option, NULL, teardown, "config - bad key settings name file, line and option"),
	CASE_WITH(config_backend_options_are_kept_with_their_lines_for_the_backend, NULL, teardown, "config - backend options are kept with their lines for the backend"),
	CASE_WITH(config_option_set_twice_in_a_key_section_is_refused, NULL, teardown, "config - option set twice in a key section is refused"),
	CASE_WITH(config_core_key_option_set_twice_is_refused, NULL, teardown, "config - core key option set twice is refused"),
	CASE_WITH(config_long_option_line_is_read_whole_or_refused, NULL, teardown, "config - long option line is read whole or refused"),
	CASE_WITH(config_load_reads_a_file_with_the_same_line_numbers, NULL, teardown, "config - load reads a file with the same line numbers"),
	CASE_WITH(config_inline_comments_after_a_space_or_tab_are_ignored, NULL, teardown, "config - inline comments after a space or tab are ignored"),
	CASE_WITH(config_long_comment_after_a_value_does_not_make_the_line_too_long, NULL, teardown, "config - long comment after a value does not make the line too long"),
	CASE_WITH(config_comment_without_a_space_before_it_is_refused_with_a_hint, NULL, teardown, "config - comment without a space before it is refused with a hint"),
	CASE_WITH(config_backend_error_about_a_value_with_a_comment_gets_the_hint, NULL, teardown, "config - backend error about a value with a comment gets the hint"),
	CASE_WITH(config_socket_group_must_name_an_existing_group, NULL, teardown, "config - socket group must name an existing group"),
	CASE_WITH(config_misspelt_broker_option_suggests_the_nearest, NULL, teardown, "config - misspelt broker option suggests the nearest"),
	CASE_WITH(config_misspelt_key_option_suggests_a_core_or_backend_option, NULL, teardown, "config - misspelt key option suggests a core or backend option"),
	CASE_WITH(config_nearest_name_is_one_slip_away_in_short_words, NULL, teardown, "config - nearest name is one slip away in short words"),
};

CASES_MAIN("config", tests, NULL, NULL)
