/*
 * test_cache: the DEK cache on the arena: lookups, TTL expiry on the
 * caller's clock (every call takes now_ms, so the tests set the time), LRU
 * eviction per size class, flushes, and that every DEK leaving is zeroed.
 */
#include <stdbool.h>
#include <stdlib.h>

#include "cache.h"
#include "digest.h"
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

static const struct CMUnitTest tests[] = {
	CASE_WITH(cache_get_after_put_returns_the_dek, cache_setup, cache_teardown),
	CASE_WITH(cache_entry_expires_exactly_at_its_ttl, cache_setup, cache_teardown),
	CASE_WITH(cache_over_capacity_drops_the_least_recently_used, cache_setup, cache_teardown),
	CASE_WITH(cache_lru_eviction_zeroes_the_dek, cache_setup, cache_teardown),
	CASE_WITH(cache_flush_zeroes_every_dek, cache_setup, cache_teardown),
	CASE_WITH(cache_flush_by_key_evicts_only_that_keys_entries, cache_setup, cache_teardown),
	CASE_WITH(cache_put_of_the_same_blob_replaces_its_entry, cache_setup, cache_teardown),
	CASE_WITH(cache_sweep_evicts_only_expired_entries, cache_setup, cache_teardown),
	CASE_WITH(cache_eviction_counters_count_each_cause, cache_setup, cache_teardown),
	CASE_WITH(cache_refuses_a_dek_over_1024_bytes, cache_setup, cache_teardown),
	CASE_WITH(cache_survives_many_puts_gets_and_evictions, cache_setup, cache_teardown),
	CASE_WITH(cache_full_class_evicts_its_own_least_recently_used, cache_setup, cache_teardown),
	CASE_WITH(cache_over_capacity_evicts_the_oldest_entry_of_any_class, cache_setup, cache_teardown),
	CASE(cache_of_100000_entries_holds_100000_256_bit_deks_in_8_mib),
};

CASES_MAIN("cache", tests, NULL, NULL)
