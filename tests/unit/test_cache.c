/*
 * test_cache: the DEK cache on the arena: lookups, TTL expiry on the
 * caller's clock (every call takes now_ms, so the tests set the time), LRU
 * eviction per size class, flushes, and that every DEK leaving is zeroed;
 * then the cache in the request flow, through the real dispatcher with a
 * scripted backend and an injected clock: single flight, refresh-ahead and
 * the TTL as the revocation point.
 */
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cache.h"
#include "conn.h"
#include "digest.h"
#include "ndjson.h"
#include "finish.h"
#include "keys.h"
#include "pool.h"
#include "unit.h"

static const uint8_t zero[KB_SECRET_MAX];

static kb_cache cache;

static void digest_of(int n, uint8_t d[KB_DIGEST_LEN])
{
	/* spread over buckets like a real SHA-256, but reproducible */
	for (int i = 0; i < KB_DIGEST_LEN; i++)
		d[i] = (uint8_t)(n * 131 + i * 7 + (n >> 3));
	memcpy(d + KB_DIGEST_LEN - sizeof(n), &n, sizeof(n));
}

static void dek_of(int n, uint8_t dek[32])
{
	memset(dek, 0x10 + n, 32);
}

static kb_cache_entry *put(int n, int key, int64_t ttl, int64_t now)
{
	uint8_t d[KB_DIGEST_LEN], dek[32];

	digest_of(n, d);
	dek_of(n, dek);
	return kb_cache_put(&cache, d, key, "v1", dek, sizeof(dek), ttl, now);
}

static kb_cache_entry *get(int n, int64_t now)
{
	uint8_t d[KB_DIGEST_LEN];

	digest_of(n, d);
	return kb_cache_get(&cache, d, now);
}

static int cache_setup(void **state)
{
	kb_err err = { 0 };

	if (kb_cache_init(&cache, 4, false, &err) != KB_OK) {
		fprintf(stderr, "kb_cache_init: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int cache_teardown(void **state)
{
	kb_cache_destroy(&cache);
	return 0;
}

static void cache_get_after_put_returns_the_dek(void **state)
{
	kb_cache_entry *e = put(1, 0, 1000, 5000), *g;
	uint8_t dek[32];

	assert_non_null(e);
	g = get(1, 5001);
	assert_ptr_equal(g, e);
	dek_of(1, dek);
	assert_int_equal(g->deklen, 32);
	assert_memory_equal(g->dek, dek, 32);
	assert_string_equal(g->version, "v1");
	assert_int_equal(g->key_index, 0);
	assert_int_equal(g->expires_ms, 6000);
	assert_int_equal(cache.count, 1);
	assert_null(get(2, 5001));
}

static void cache_entry_expires_exactly_at_its_ttl(void **state)
{
	kb_cache_entry *e = put(1, 0, 2000, 10000);
	uint8_t *dek = e->dek;

	assert_non_null(get(1, 11999));
	/* a hit does not extend the entry's life */
	assert_non_null(get(1, 11999));
	assert_null(get(1, 12000));
	assert_int_equal(cache.count, 0);
	assert_int_equal(cache.evictions[KB_EVICT_TTL], 1);
	assert_memory_equal(dek, zero, 32);
	/* peek still sees an expired entry, and leaves it */
	{
		uint8_t d[KB_DIGEST_LEN];

		put(2, 0, 100, 0);
		digest_of(2, d);
		assert_non_null(kb_cache_peek(&cache, d));
		assert_non_null(kb_cache_peek(&cache, d));
		assert_int_equal(cache.count, 1);
	}
}

static void cache_over_capacity_drops_the_least_recently_used(void **state)
{
	for (int n = 0; n < 4; n++)
		assert_non_null(put(n, 0, 60000, 0));
	assert_non_null(get(0, 1)); /* 0 is now the most recent; 1 the least */
	assert_non_null(put(4, 0, 60000, 2));
	assert_int_equal(cache.count, 4);
	assert_null(get(1, 3));
	assert_non_null(get(0, 3));
	assert_non_null(get(2, 3));
	assert_non_null(get(3, 3));
	assert_non_null(get(4, 3));
	assert_int_equal(cache.evictions[KB_EVICT_LRU], 1);
	assert_int_equal(cache.evictions[KB_EVICT_TTL], 0);
	/* now 0 is least recent again after 2, 3, 4 were read */
	assert_non_null(put(5, 0, 60000, 4));
	assert_null(get(0, 5));
	assert_int_equal(cache.evictions[KB_EVICT_LRU], 2);
}

static void cache_lru_eviction_zeroes_the_dek(void **state)
{
	kb_cache_entry *e;
	uint8_t *dek;
	uint8_t d[KB_DIGEST_LEN];
	static const uint8_t small[3] = { 1, 2, 3 };

	for (int n = 0; n < 4; n++)
		put(n, 0, 60000, 0);
	e = kb_cache_peek(&cache, (digest_of(0, d), d));
	dek = e->dek;
	/* the new DEK is shorter than the old: nothing of the old may remain */
	digest_of(9, d);
	e = kb_cache_put(&cache, d, 0, "v1", small, sizeof(small), 60000, 1);
	assert_ptr_equal(e->dek, dek); /* the freed slot is the one handed out again */
	assert_memory_equal(dek, small, 3);
	assert_memory_equal(dek + 3, zero, 32 - 3);
}

static void cache_flush_zeroes_every_dek(void **state)
{
	uint8_t *deks[4];

	for (int n = 0; n < 4; n++)
		deks[n] = put(n, n % 2, 60000, 0)->dek;
	assert_int_equal(kb_cache_flush(&cache, -1), 4);
	assert_int_equal(cache.count, 0);
	for (int n = 0; n < 4; n++)
		assert_memory_equal(deks[n], zero, 32);
}

static void cache_flush_by_key_evicts_only_that_keys_entries(void **state)
{
	uint8_t *deks[4];

	for (int n = 0; n < 4; n++)
		deks[n] = put(n, n % 2, 60000, 0)->dek;
	assert_int_equal(kb_cache_flush(&cache, 1), 2);
	assert_int_equal(cache.count, 2);
	assert_non_null(get(0, 1));
	assert_null(get(1, 1));
	assert_non_null(get(2, 1));
	assert_null(get(3, 1));
	assert_memory_equal(deks[1], zero, 32);
	assert_memory_equal(deks[3], zero, 32);
	assert_int_equal(deks[0][0], 0x10);
	assert_int_equal(kb_cache_flush(&cache, 7), 0);
	assert_int_equal(kb_cache_flush(&cache, -1), 2);
	assert_int_equal(cache.evictions[KB_EVICT_FLUSH], 4);
}

static void cache_put_of_the_same_blob_replaces_its_entry(void **state)
{
	uint8_t d[KB_DIGEST_LEN];
	static const uint8_t fresh[16] = { 0xee, 0xee };
	kb_cache_entry *e;

	put(1, 0, 1000, 0);
	put(2, 0, 1000, 0);
	digest_of(1, d);
	e = kb_cache_put(&cache, d, 0, "v2", fresh, sizeof(fresh), 5000, 500);
	assert_non_null(e);
	assert_int_equal(cache.count, 2);
	assert_int_equal(cache.evictions[KB_EVICT_REPLACE], 1);
	e = get(1, 4000);
	assert_non_null(e);
	assert_string_equal(e->version, "v2");
	assert_int_equal(e->deklen, 16);
	assert_memory_equal(e->dek, fresh, 16);
	assert_memory_equal(e->dek + 16, zero, 16); /* nothing left of the 32-byte one */
	assert_int_equal(e->expires_ms, 5500);
}

static void cache_sweep_evicts_only_expired_entries(void **state)
{
	uint8_t *dek1;

	put(0, 0, 1000, 0);
	dek1 = put(1, 0, 2000, 0)->dek;
	put(2, 0, 3000, 0);
	assert_int_equal(kb_cache_sweep(&cache, 999), 0);
	assert_int_equal(kb_cache_sweep(&cache, 2000), 2);
	assert_int_equal(cache.count, 1);
	assert_memory_equal(dek1, zero, 32);
	assert_non_null(get(2, 2500));
	assert_int_equal(cache.evictions[KB_EVICT_TTL], 2);
}

static void cache_eviction_counters_count_each_cause(void **state)
{
	uint8_t d[KB_DIGEST_LEN];

	for (int n = 0; n < 5; n++)   /* 1 lru */
		put(n, 0, 1000, 0);
	put(4, 0, 1000, 0);           /* 1 replace */
	assert_null(get(2, 1000));    /* 1 ttl */
	kb_cache_sweep(&cache, 1000); /* 3 ttl: 1, 3 and 4 */
	put(7, 3, 1000, 2000);
	kb_cache_flush(&cache, -1);   /* 1 flush */
	assert_int_equal(cache.evictions[KB_EVICT_LRU], 1);
	assert_int_equal(cache.evictions[KB_EVICT_REPLACE], 1);
	assert_int_equal(cache.evictions[KB_EVICT_TTL], 4);
	assert_int_equal(cache.evictions[KB_EVICT_FLUSH], 1);
	assert_int_equal(cache.count, 0);
	digest_of(4, d);
	assert_null(kb_cache_peek(&cache, d));
}

static void cache_refuses_a_dek_over_1024_bytes(void **state)
{
	uint8_t d[KB_DIGEST_LEN];
	static const uint8_t big[KB_SECRET_MAX + 1];

	digest_of(1, d);
	assert_null(kb_cache_put(&cache, d, 0, "v1", big, sizeof(big), 1000, 0));
	assert_int_equal(cache.count, 0);
	assert_non_null(kb_cache_put(&cache, d, 0, "v1", big, KB_SECRET_MAX, 1000, 0));
}

static void cache_survives_many_puts_gets_and_evictions(void **state)
{
	/* every entry that get returns is the DEK that was put under that digest */
	for (int i = 0; i < 5000; i++) {
		int n = (i * 7919) % 11;
		kb_cache_entry *e = get(n, i);

		if (e) {
			uint8_t dek[32];
			dek_of(n, dek);
			assert_memory_equal(e->dek, dek, 32);
		} else {
			put(n, n % 3, 50, i);
		}
		if (i % 97 == 0)
			kb_cache_flush(&cache, i % 3);
		assert_true(cache.count <= 4);
	}
}

/* put_len puts a DEK of len bytes, all 0x10 + n, under n's digest */
static void cache_grace_keeps_an_expired_entry_for_stale_use_only(void **state)
{
	uint8_t d[KB_DIGEST_LEN];
	kb_cache_entry *e = put(0, 0, 1000, 0);

	e->grace_ms = 500;
	digest_of(0, d);
	assert_null(kb_cache_stale(&cache, d, 999));     /* live: not stale */
	assert_null(get(0, 1000));                       /* past the TTL: never a plain hit */
	assert_ptr_equal(kb_cache_stale(&cache, d, 1000), e);
	assert_int_equal(kb_cache_sweep(&cache, 1499), 0);
	assert_ptr_equal(kb_cache_stale(&cache, d, 1499), e);
	assert_null(kb_cache_stale(&cache, d, 1500));    /* the grace is over: evicted, zeroed */
	assert_int_equal(cache.count, 0);
	e = put(1, 0, 1000, 0);
	e->grace_ms = 500;
	digest_of(1, d);
	kb_cache_drop(&cache, d);                        /* a refusal ends it at once */
	assert_null(kb_cache_stale(&cache, d, 1200));
	assert_int_equal(cache.count, 0);
	put(2, 0, 1000, 0)->grace_ms = 500;
	assert_int_equal(kb_cache_sweep(&cache, 1500), 1);
}

static void cache_ttl_jitter_cuts_each_ttl_within_its_fraction(void **state)
{
	uint64_t rng = 42;
	int64_t lo = INT64_MAX, hi = 0;

	assert_int_equal(kb_cache_jitter_ttl(10000, 0, &rng), 10000); /* no jitter: the TTL itself */
	for (int i = 0; i < 10000; i++) {
		int64_t t = kb_cache_jitter_ttl(10000, 0.2, &rng);

		lo = t < lo ? t : lo;
		hi = t > hi ? t : hi;
	}
	/* never longer than cache_ttl, never shorter than 80 % of it, and spread over that range */
	assert_true(hi <= 10000 && lo >= 8000);
	assert_true(hi - lo > 1900);
}

static kb_cache_entry *put_len(int n, size_t len, int64_t now)
{
	uint8_t d[KB_DIGEST_LEN], dek[KB_SECRET_MAX];

	digest_of(n, d);
	memset(dek, 0x10 + n, len);
	return kb_cache_put(&cache, d, 0, "v1", dek, len, 60000, now);
}

static void cache_full_class_evicts_its_own_least_recently_used(void **state)
{
	kb_cache_entry *e;
	uint8_t *big;

	/* capacity 4: four 32-byte slots, one slot in each larger class */
	assert_int_equal(cache.arena.cls[0].nslots, 4);
	assert_int_equal(cache.arena.cls[KB_CACHE_CLASSES - 1].nslots, 1);
	put_len(0, 32, 0);
	big = put_len(1, KB_SECRET_MAX, 1)->dek;
	put_len(2, 32, 2);
	/* a second DEK for the one 1024-byte slot: the older big one goes, not the older small one */
	e = put_len(3, 500, 3);
	assert_non_null(e);
	assert_ptr_equal(e->dek, big);
	assert_int_equal(cache.count, 3);
	assert_int_equal(cache.evictions[KB_EVICT_LRU], 1);
	assert_null(get(1, 4));
	assert_non_null(get(0, 4));
	assert_non_null(get(2, 4));
	e = get(3, 4);
	assert_int_equal(e->deklen, 500);
	assert_int_equal(e->dek[499], 0x13);
	/* nothing of the 1024-byte DEK is left past the 500 new bytes */
	assert_memory_equal(big + 500, zero, KB_SECRET_MAX - 500);
}

static void cache_over_capacity_evicts_the_oldest_entry_of_any_class(void **state)
{
	put_len(0, 64, 0);
	for (int n = 1; n < 4; n++)
		put_len(n, 32, n);
	/* full at 4 entries; the 32-byte class still has a slot, yet the oldest entry (64 bytes) goes */
	assert_non_null(put_len(4, 32, 4));
	assert_int_equal(cache.count, 4);
	assert_null(get(0, 5));
	assert_non_null(get(1, 5)); /* 2 is now the oldest */
	assert_non_null(put_len(5, 200, 6));
	assert_null(get(2, 7));
	for (int n = 3; n < 6; n++)
		assert_non_null(get(n, 7));
	assert_int_equal(cache.evictions[KB_EVICT_LRU], 2);
	assert_int_equal(cache.arena.cls[0].nslots - cache.arena.cls[0].nfree, 3);
}

/* fill_100000_under_8_mib: the default RLIMIT_MEMLOCK holds a cache of 100,000 256-bit DEKs */
static void fill_100000_under_8_mib(void)
{
	struct rlimit lim = { 8388608, 8388608 };
	kb_cache c;
	kb_err err = { 0 };
	uint8_t d[KB_DIGEST_LEN], dek[32];
	const int n = 100000;

	unit_lose_ipc_lock();
	if (setrlimit(RLIMIT_MEMLOCK, &lim) != 0)
		_exit(5);
	if (kb_cache_init(&c, n, false, &err) != KB_OK) {
		fprintf(stderr, "kb_cache_init: %s\n", err.msg);
		_exit(10);
	}
	fprintf(stderr, "100000 entries: %zu bytes locked\n", c.arena.locked_bytes);
	if (!c.arena.locked || c.arena.locked_bytes > 8388608)
		_exit(11);
	for (int i = 0; i < n; i++) {
		kb_sha256(&i, sizeof(i), d);
		memset(dek, 0, sizeof(dek));
		memcpy(dek, &i, sizeof(i));
		if (kb_cache_put(&c, d, 0, "v1", dek, sizeof(dek), 60000, 0) == NULL)
			_exit(12);
	}
	if (c.count != n || c.evictions[KB_EVICT_LRU] != 0)
		_exit(13);
	for (int i = 0; i < n; i++) {
		kb_cache_entry *e;

		kb_sha256(&i, sizeof(i), d);
		e = kb_cache_get(&c, d, 1);
		if (e == NULL || e->deklen != 32 || memcmp(e->dek, &i, sizeof(i)) != 0)
			_exit(14);
	}
	kb_cache_destroy(&c);
	_exit(0);
}

static void cache_of_100000_entries_holds_100000_256_bit_deks_in_8_mib(void **state)
{
	unit_expect_exit_0(unit_in_child(fill_100000_under_8_mib));
}

/* ---- single flight, refresh-ahead and TTL through the real dispatcher ----
 *
 * The key's backend is scripted: wrap copies the plaintext, unwrap copies the
 * ciphertext back, counts its calls and, while the gate is shut, waits, so
 * several requests can be in flight for one blob. The clock is injected at
 * link time: this file defines kb_now_us and kb_now_ms (clock.c is then not
 * linked in) as the monotonic clock plus an offset the tests move, so a TTL
 * passes without sleeping.
 */
static int64_t clock_offset_us;

int64_t kb_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + __atomic_load_n(&clock_offset_us, __ATOMIC_RELAXED);
}

int64_t kb_now_ms(void)
{
	return kb_now_us() / 1000;
}

static void advance_ms(int64_t ms)
{
	__atomic_add_fetch(&clock_offset_us, ms * 1000, __ATOMIC_RELAXED);
}

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool gate_shut;
	int unwraps;
	int waiting;
} script = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0 };

static kb_code s_open(kb_keyconf *kc, int nslots, void **state, kb_err *err)
{
	*state = kc;
	return KB_OK;
}

static void s_close(void *state)
{
}

static kb_code s_describe(void *s, int slot, kb_key_info *info, kb_err *err)
{
	return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE, "scripted: no describe");
}

static kb_code s_wrap(void *s, int slot, const char *v, kb_alg a, const uint8_t *pt, size_t n, uint8_t *ct,
		      size_t *ctlen, char vo[KB_VERSION_MAX + 1], kb_alg *ao, kb_err *err)
{
	memcpy(ct, pt, n);
	*ctlen = n;
	strcpy(vo, "01");
	*ao = a == KB_ALG_NONE ? KB_ALG_AES_KWP : a;
	return KB_OK;
}

static kb_code s_unwrap(void *s, int slot, const char *v, kb_alg a, const uint8_t *ct, size_t n, uint8_t *pt,
			size_t *ptlen, kb_err *err)
{
	pthread_mutex_lock(&script.lock);
	script.unwraps++;
	script.waiting++;
	pthread_cond_broadcast(&script.cond);
	while (script.gate_shut)
		pthread_cond_wait(&script.cond, &script.lock);
	script.waiting--;
	pthread_mutex_unlock(&script.lock);
	memcpy(pt, ct, n);
	*ptlen = n;
	return KB_OK;
}

static kb_code s_rotate(void *s, int slot, char vo[KB_VERSION_MAX + 1], kb_err *err)
{
	return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE, "scripted: no rotate");
}

static const kb_backend_ops scripted = {
	.name = "scripted", .open = s_open, .close = s_close, .describe = s_describe,
	.wrap = s_wrap, .unwrap = s_unwrap, .rotate = s_rotate,
};

const kb_backend_ops *kb_backend_find(const char *name)
{
	return strcmp(name, "scripted") == 0 ? &scripted : NULL;
}

static kb_broker broker;
static kb_conn *conn;
static int peer = -1;    /* the client's end of conn's socket */

static int flow_setup(void **state)
{
	kb_config *cfg;
	kb_keyset *ks;
	kb_err err = { 0 };
	int sv[2];

	memset(&broker, 0, sizeof(broker));
	script.unwraps = 0;
	script.gate_shut = false;
	clock_offset_us = 0;
	if (kb_config_parse_string("[broker]\nworkers = 2\ncache_capacity = 8\nallow_unlocked_memory = yes\n"
				   "[key:k]\nbackend = scripted\ncache_ttl = 10s\ncache_refresh_fraction = 0.5\n"
				   "[key:p]\nbackend = scripted\ncache_ttl = 10s\n",
				   "cache.conf", &cfg, &err) != KB_OK ||
	    kb_keyset_open(cfg, 2, &ks, &err) != KB_OK ||
	    kb_cache_init(&broker.cache, 8, true, &err) != KB_OK) {
		fprintf(stderr, "setup: %s\n", err.msg);
		return -1;
	}
	kb_broker_use_keyset(&broker, ks);
	broker.nflights = 16;
	broker.flights = calloc(broker.nflights, sizeof(*broker.flights));
	if (broker.flights == NULL || kb_pool_start(&broker, 2, &broker.pool, &err) != KB_OK ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	conn = calloc(1, sizeof(*conn));
	conn->fd = sv[0];
	conn->refs = 1;
	peer = sv[1];
	return 0;
}

static int flow_teardown(void **state)
{
	for (kb_job *j = kb_pool_stop(broker.pool), *next; j; j = next) {
		next = j->next;
		kb_job_finish(&broker, j);
	}
	kb_conn_unref(conn);
	close(peer);
	kb_cache_destroy(&broker.cache);
	return 0;
}

/* finish_jobs finishes n jobs as the loop would, waiting for each. */
static void finish_jobs(int n)
{
	while (n > 0) {
		struct pollfd pfd = { .fd = kb_pool_fd(broker.pool), .events = POLLIN };

		assert_int_equal(poll(&pfd, 1, 10000), 1);
		for (kb_job *j = kb_pool_take_done(broker.pool), *next; j; j = next) {
			next = j->next;
			kb_job_finish(&broker, j);
			n--;
		}
	}
}

/* request dispatches one line; answer reads the next answer line into a cJSON. */
static void request(const char *line)
{
	kb_ndjson_line(&broker, conn, line, strlen(line));
}

static cJSON *answer(void)
{
	static char buf[8192];
	static size_t len;
	char *nl;
	cJSON *j;

	while ((nl = memchr(buf, '\n', len)) == NULL) {
		ssize_t r = recv(peer, buf + len, sizeof(buf) - len, 0);

		assert_true(r > 0);
		len += (size_t)r;
	}
	j = cJSON_ParseWithLength(buf, (size_t)(nl - buf));
	len -= (size_t)(nl - buf) + 1;
	memmove(buf, nl + 1, len);
	assert_non_null(j);
	return j;
}

/* wrap_blob wraps 32 bytes of 0x5a under key and returns the blob (static). */
static const char *wrap_blob(const char *key)
{
	static char blob[512];
	char line[200];
	cJSON *a;

	snprintf(line, sizeof(line), "{\"id\":1,\"op\":\"wrap\",\"key\":\"%s\","
		 "\"plaintext\":\"WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=\"}", key);
	request(line);
	finish_jobs(1);
	a = answer();
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")));
	snprintf(blob, sizeof(blob), "%s", cJSON_GetStringValue(cJSON_GetObjectItem(a, "blob")));
	cJSON_Delete(a);
	return blob;
}

/* unwrap_request sends an unwrap of blob; answer_cached reads its answer, checks the plaintext and returns "cached". */
static void unwrap_request(const char *blob)
{
	char line[700];

	snprintf(line, sizeof(line), "{\"id\":2,\"op\":\"unwrap\",\"blob\":\"%s\"}", blob);
	request(line);
}

static bool answer_cached(void)
{
	cJSON *a = answer();
	bool cached;

	if (!cJSON_IsTrue(cJSON_GetObjectItem(a, "ok")))
		fail_msg("unwrap failed: %s", cJSON_PrintUnformatted(a));
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(a, "plaintext")),
			    "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=");
	cached = cJSON_IsTrue(cJSON_GetObjectItem(a, "cached"));
	cJSON_Delete(a);
	return cached;
}

static int unwraps(void)
{
	int n;

	pthread_mutex_lock(&script.lock);
	n = script.unwraps;
	pthread_mutex_unlock(&script.lock);
	return n;
}

static void cache_misses_of_one_blob_in_flight_together_make_one_backend_call(void **state)
{
	const char *blob = wrap_blob("p");

	pthread_mutex_lock(&script.lock);
	script.gate_shut = true;
	pthread_mutex_unlock(&script.lock);
	for (int i = 0; i < 3; i++)
		unwrap_request(blob);
	/* the first miss is at the backend; the other two joined it */
	pthread_mutex_lock(&script.lock);
	while (script.waiting == 0)
		pthread_cond_wait(&script.cond, &script.lock);
	script.gate_shut = false;
	pthread_cond_broadcast(&script.cond);
	pthread_mutex_unlock(&script.lock);
	finish_jobs(1);
	for (int i = 0; i < 3; i++)
		assert_false(answer_cached());
	assert_int_equal(unwraps(), 1);
	assert_int_equal(broker.counters.joins, 2);
	unwrap_request(blob);
	assert_true(answer_cached());
	assert_int_equal(unwraps(), 1);
}

static void cache_refresh_ahead_renews_an_entry_hit_late_in_its_life(void **state)
{
	const char *blob = wrap_blob("k");

	unwrap_request(blob);
	finish_jobs(1);
	assert_false(answer_cached());
	advance_ms(4000); /* first half of the 10 s TTL: a plain hit */
	unwrap_request(blob);
	assert_true(answer_cached());
	assert_int_equal(unwraps(), 1);
	advance_ms(2000); /* 6 s: last half, the hit starts one refresh */
	unwrap_request(blob);
	assert_true(answer_cached());
	unwrap_request(blob);
	assert_true(answer_cached());
	finish_jobs(1);
	assert_int_equal(unwraps(), 2);
	assert_int_equal(broker.counters.refreshes, 1);
	/*
	 * 10.5 s: past the first expiry, inside the renewed one (6 + 10) and
	 * before its own last half (11 s), so this hit starts no refresh of its own
	 */
	advance_ms(4500);
	unwrap_request(blob);
	assert_true(answer_cached());
	assert_int_equal(unwraps(), 2);
	assert_int_equal(broker.counters.refreshes, 1);
}

static void cache_entry_is_a_hit_until_its_ttl_then_a_miss(void **state)
{
	/* key p has no refresh-ahead, so the hits do not renew it */
	const char *blob = wrap_blob("p");

	unwrap_request(blob);
	finish_jobs(1);
	assert_false(answer_cached());
	advance_ms(9990);
	unwrap_request(blob);
	assert_true(answer_cached());
	advance_ms(10); /* 10 s: the TTL is the revocation point */
	unwrap_request(blob);
	finish_jobs(1);
	assert_false(answer_cached());
	assert_int_equal(unwraps(), 2);
}


static const struct CMUnitTest tests[] = {
	CASE_WITH(cache_get_after_put_returns_the_dek, cache_setup, cache_teardown, "cache - get after put returns the DEK"),
	CASE_WITH(cache_entry_expires_exactly_at_its_ttl, cache_setup, cache_teardown, "cache - entry expires exactly at its TTL"),
	CASE_WITH(cache_over_capacity_drops_the_least_recently_used, cache_setup, cache_teardown, "cache - over capacity drops the least recently used"),
	CASE_WITH(cache_lru_eviction_zeroes_the_dek, cache_setup, cache_teardown, "cache - LRU eviction zeroes the DEK"),
	CASE_WITH(cache_flush_zeroes_every_dek, cache_setup, cache_teardown, "cache - flush zeroes every DEK"),
	CASE_WITH(cache_flush_by_key_evicts_only_that_keys_entries, cache_setup, cache_teardown, "cache - flush by key evicts only the entries of that key"),
	CASE_WITH(cache_put_of_the_same_blob_replaces_its_entry, cache_setup, cache_teardown, "cache - put of the same blob replaces its entry"),
	CASE_WITH(cache_sweep_evicts_only_expired_entries, cache_setup, cache_teardown, "cache - sweep evicts only expired entries"),
	CASE_WITH(cache_eviction_counters_count_each_cause, cache_setup, cache_teardown, "cache - eviction counters count each cause"),
	CASE_WITH(cache_grace_keeps_an_expired_entry_for_stale_use_only, cache_setup, cache_teardown, "cache - grace keeps an expired entry for stale use only"),
	CASE_WITH(cache_ttl_jitter_cuts_each_ttl_within_its_fraction, cache_setup, cache_teardown, "cache - ttl_jitter cuts each TTL within its fraction"),
	CASE_WITH(cache_refuses_a_dek_over_1024_bytes, cache_setup, cache_teardown, "cache - refuses a DEK over 1024 bytes"),
	CASE_WITH(cache_survives_many_puts_gets_and_evictions, cache_setup, cache_teardown, "cache - survives many puts, gets and evictions"),
	CASE_WITH(cache_full_class_evicts_its_own_least_recently_used, cache_setup, cache_teardown, "cache - full class evicts its own least recently used"),
	CASE_WITH(cache_over_capacity_evicts_the_oldest_entry_of_any_class, cache_setup, cache_teardown, "cache - over capacity evicts the oldest entry of any class"),
	CASE_WITH(cache_misses_of_one_blob_in_flight_together_make_one_backend_call, flow_setup, flow_teardown, "cache - misses of one blob in flight together make one backend call"),
	CASE_WITH(cache_refresh_ahead_renews_an_entry_hit_late_in_its_life, flow_setup, flow_teardown, "cache - refresh-ahead renews an entry hit late in its life"),
	CASE_WITH(cache_entry_is_a_hit_until_its_ttl_then_a_miss, flow_setup, flow_teardown, "cache - entry is a hit until its TTL then a miss"),
	CASE(cache_of_100000_entries_holds_100000_256_bit_deks_in_8_mib, "cache - 100000 entries of 256-bit DEKs fit in 8 MiB"),
};

CASES_MAIN("cache", tests, NULL, NULL)
